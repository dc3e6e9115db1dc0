import type { JSX } from 'preact';
import './downloads.css';
import { useState } from 'preact/hooks';
import type { DownloadProgress } from './downloads';
import { cancelDownload, downloadModel, percentDone, progressText } from './downloads';
import { formatBytes } from './format';
import type { CatalogEntry, InstalledModel, Quant } from './ipc';
import { errorText } from './ipc';

const QUANT_LABEL: Record<Quant, string> = {
  f16: '16-bit (published files)',
  q8_0: '8-bit',
  q4_k_m: '4-bit (Q4_K_M)',
  q4_0: '4-bit (Q4_0)',
};

type Run =
  | { kind: 'idle' }
  | { kind: 'running'; progress: DownloadProgress | null; cancelling: boolean }
  | { kind: 'cancelled'; message: string }
  | { kind: 'failed'; message: string };

interface DownloadControlProps {
  entry: CatalogEntry;
  /** Another model is downloading: only one at a time. */
  blocked: boolean;
  loading: boolean;
  onBusy: (busy: boolean) => void;
  onInstalled: (installed: InstalledModel) => void;
  onLoad: (path: string) => void;
}

/** Download, progress, cancel, errors with Retry, and Load once installed, for one catalog card. */
export function DownloadControl(p: DownloadControlProps): JSX.Element {
  const { entry } = p;
  const [quant, setQuant] = useState<Quant>(entry.defaultQuant);
  const [run, setRun] = useState<Run>({ kind: 'idle' });
  const title = entry.name;

  const start = async () => {
    setRun({ kind: 'running', progress: null, cancelling: false });
    p.onBusy(true);
    try {
      const installed = await downloadModel(entry.id, quant, (progress) =>
        setRun((r) => (r.kind === 'running' ? { ...r, progress } : r)),
      );
      setRun({ kind: 'idle' });
      p.onInstalled(installed);
    } catch (e) {
      const kind = (e as { kind?: unknown } | null)?.kind;
      setRun({ kind: kind === 'cancelled' ? 'cancelled' : 'failed', message: errorText(e) });
    } finally {
      p.onBusy(false);
    }
  };

  const cancel = async () => {
    setRun((r) => (r.kind === 'running' ? { ...r, cancelling: true } : r));
    try {
      await cancelDownload(entry.id);
    } catch (e) {
      setRun({ kind: 'failed', message: errorText(e) });
    }
  };

  if (entry.installed !== null) {
    const installed = entry.installed;
    return (
      <div class="download">
        <p class="download-installed small">
          Installed{installed.commit !== null && <> · commit <code title={installed.commit}>{installed.commit.slice(0, 10)}</code></>}
          {' · '}
          {formatBytes(installed.sizeOnDisk)}
        </p>
        <button
          type="button"
          class="btn btn-primary"
          disabled={p.loading}
          aria-label={`Load ${title}`}
          onClick={() => p.onLoad(installed.loadPath)}
        >
          Load
        </button>
      </div>
    );
  }

  if (run.kind === 'running' || (entry.downloading && run.kind === 'idle')) {
    const progress = run.kind === 'running' ? run.progress : null;
    const percent = progress === null ? 0 : percentDone(progress);
    return (
      <div class="download">
        <div
          class="progress"
          role="progressbar"
          aria-label={`Downloading ${title}`}
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={percent}
          aria-valuetext={progress === null ? 'Starting' : `${percent}%, ${progressText(progress)}`}
        >
          <div class="progress-fill" style={{ width: `${percent}%` }} />
        </div>
        <p class="download-text small" aria-live="polite">
          {progress === null ? 'Starting the download…' : progressText(progress)}
        </p>
        <button
          type="button"
          class="btn"
          disabled={run.kind === 'running' && run.cancelling}
          aria-label={`Cancel the download of ${title}`}
          onClick={() => void cancel()}
        >
          {run.kind === 'running' && run.cancelling ? 'Cancelling…' : 'Cancel'}
        </button>
      </div>
    );
  }

  const kept = entry.partialBytes;
  const resume = kept > 0 || run.kind === 'cancelled';
  const chosen = entry.quantizations.find((q) => q.quant === quant);
  const selectId = `quant-${entry.id}`;
  return (
    <div class="download">
      {run.kind === 'failed' && (
        <p class="inline-error" role="alert">
          {run.message}
        </p>
      )}
      {run.kind === 'cancelled' && (
        <p class="download-text small" role="status">
          {run.message}
        </p>
      )}
      {entry.quantizations.length > 0 && (
        <div class="download-format">
          <label for={selectId} class="small">
            Format
          </label>
          <select id={selectId} value={quant} disabled={p.blocked} onChange={(e) => setQuant(e.currentTarget.value as Quant)}>
            {entry.quantizations.map((q) => (
              <option key={q.quant} value={q.quant}>
                {QUANT_LABEL[q.quant]}
                {q.recommended ? ' – recommended' : ''}
              </option>
            ))}
          </select>
          {chosen !== undefined && (
            <span class="small muted">
              needs {formatBytes(chosen.ramBytes)} memory at {chosen.contextTokens} tokens
            </span>
          )}
        </div>
      )}
      <button
        type="button"
        class="btn btn-primary"
        disabled={p.blocked}
        aria-label={`${run.kind === 'failed' ? 'Retry the download of' : resume ? 'Resume the download of' : 'Download'} ${title}`}
        onClick={() => void start()}
      >
        {run.kind === 'failed'
          ? 'Retry'
          : resume
            ? `Resume download${kept > 0 ? ` (${formatBytes(kept)} kept)` : ''}`
            : `Download (${formatBytes(entry.downloadBytes)})`}
      </button>
    </div>
  );
}
