import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { formatBytes } from './format';
import { Icon } from './icons';
import type { CatalogEntry, MemoryFit, ModelInfo, ModelStatus } from './ipc';
import { api, errorText } from './ipc';
import { DownloadControl } from './model-download';

interface SetupProps {
  status: ModelStatus | null;
  statusError: string | null;
  lastModelPath: string | null;
  onLoaded: (m: ModelInfo) => void;
  onCancel: (() => void) | null;
}

const FIT_LABEL: Record<MemoryFit, string> = {
  yes: 'Fits in memory',
  tight: 'Tight fit',
  no: 'Too large for this machine',
};

export function SetupScreen(p: SetupProps): JSX.Element {
  const [catalog, setCatalog] = useState<CatalogEntry[] | null>(null);
  const [catalogError, setCatalogError] = useState<string | null>(null);
  const [path, setPath] = useState(p.lastModelPath ?? '');
  const [ownLoad, setLoading] = useState<string | null>(null);
  // A load can also be under way in the backend already (the last model, at start-up).
  const loading = ownLoad ?? (p.status?.state === 'loading' ? (p.status.model?.path ?? 'the model') : null);
  const [error, setError] = useState<string | null>(null);
  const [downloading, setDownloading] = useState(false);
  const [announcement, setAnnouncement] = useState('');

  const readCatalog = () =>
    api
      .modelCatalog()
      .then((list) => {
        setCatalog(list);
        setCatalogError(null);
      })
      .catch((e: unknown) => setCatalogError(errorText(e)));

  useEffect(() => {
    void readCatalog();
  }, []);

  const load = async (target: string) => {
    const trimmed = target.trim();
    if (trimmed === '') {
      setError('Type the path of a model folder or a .gguf file first, or use one of the buttons above.');
      return;
    }
    setError(null);
    setLoading(trimmed);
    try {
      const info = await api.loadModel(trimmed);
      setLoading(null);
      p.onLoaded(info);
    } catch (e) {
      setLoading(null);
      setError(errorText(e));
    }
  };

  const pick = async (kind: 'folder' | 'file') => {
    setError(null);
    try {
      const chosen = await api.pickModelPath(kind);
      if (chosen !== null) {
        setPath(chosen);
        await load(chosen);
      }
    } catch (e) {
      setError(errorText(e));
    }
  };

  const shownError = error ?? (p.status?.state === 'error' ? p.status.error : null) ?? p.statusError;

  return (
    <div class="setup" aria-busy={loading !== null}>
      <div class="setup-inner">
        <h2 class="setup-title">Set up a model</h2>
        <p class="lead">
          ImpChat runs Imp vision-language models entirely on this computer. Point it at a downloaded model folder (with
          <code>config.json</code> and <code>.safetensors</code> files) or a single <code>.gguf</code> file.
        </p>

        <div class="setup-actions">
          <button type="button" class="btn btn-primary" disabled={loading !== null} onClick={() => void pick('folder')}>
            <Icon name="folder" /> Use a model folder…
          </button>
          <button type="button" class="btn" disabled={loading !== null} onClick={() => void pick('file')}>
            <Icon name="file" /> Use a GGUF file…
          </button>
          {p.onCancel !== null && (
            <button type="button" class="btn btn-ghost" onClick={p.onCancel}>
              Back to chat
            </button>
          )}
        </div>

        <form
          class="path-form"
          onSubmit={(e) => {
            e.preventDefault();
            void load(path);
          }}
        >
          <label for="model-path">Or type a path</label>
          <div class="path-row">
            <input
              id="model-path"
              type="text"
              spellcheck={false}
              autoComplete="off"
              placeholder="/home/you/models/imp-v1-3b"
              value={path}
              onInput={(e) => setPath(e.currentTarget.value)}
            />
            <button type="submit" class="btn" disabled={loading !== null}>
              Load
            </button>
          </div>
        </form>

        <div aria-live="polite" class="setup-status">
          {loading !== null && (
            <p class="loading-line">
              <span class="spinner" aria-hidden="true" /> Loading {loading}… this can take a minute on a slow disk.
            </p>
          )}
          {shownError !== null && loading === null && (
            <p class="inline-error" role="alert">
              {shownError}
            </p>
          )}
        </div>

        <p class="sr-only" role="status">
          {announcement}
        </p>
        <h3 class="section-heading">Imp models</h3>
        {catalogError !== null && <p class="inline-error">The model list could not be read: {catalogError}</p>}
        {catalog === null && catalogError === null && <p class="muted">Reading the model list…</p>}
        {catalog !== null && (
          <ul class="catalog">
            {catalog.map((c) => (
              <li class="card" key={c.id}>
                <div class="card-head">
                  <h4>{c.name}</h4>
                  <span class={`fit fit-${c.fits}`}>{FIT_LABEL[c.fits]}</span>
                </div>
                {c.suggested && <p class="badge">Suggested for this device</p>}
                <p class="card-good">{c.goodAt}</p>
                <dl class="card-facts">
                  <div>
                    <dt>Size</dt>
                    <dd>{c.params}</dd>
                  </div>
                  <div>
                    <dt>Download</dt>
                    <dd>{formatBytes(c.downloadBytes)}</dd>
                  </div>
                  <div>
                    <dt>Memory</dt>
                    <dd>{formatBytes(c.ramBytes)}</dd>
                  </div>
                  <div>
                    <dt>Image</dt>
                    <dd>
                      {c.imageSize}px · {c.visualTokens} tokens
                    </dd>
                  </div>
                </dl>
                <p class="card-repo small muted">
                  {c.repo} · {c.license}
                </p>
                <DownloadControl
                  entry={c}
                  blocked={downloading || loading !== null}
                  loading={loading !== null}
                  onBusy={setDownloading}
                  onInstalled={(installed) => {
                    setAnnouncement(`${c.name} is downloaded and installed. Press Load to use it.`);
                    setPath(installed.loadPath);
                    void readCatalog();
                  }}
                  onLoad={(target) => {
                    setPath(target);
                    void load(target);
                  }}
                />
              </li>
            ))}
          </ul>
        )}
      </div>
    </div>
  );
}
