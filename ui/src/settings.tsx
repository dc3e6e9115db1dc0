import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { Icon } from './icons';
import { exportTo } from './export';
import type { AppSettings, ChatSettings, Conversation, ModelInfo, Theme } from './ipc';
import { api, errorText } from './ipc';

interface SettingsProps {
  settings: AppSettings;
  model: ModelInfo | null;
  conversation: Conversation | null;
  onSaved: (s: AppSettings) => void;
  onChatSaved: (c: Conversation) => void;
  onThemePreview: (t: Theme) => void;
  onChangeModel: () => void;
  onClose: () => void;
}

function numberOr(value: string, fallback: number | null): number | null {
  if (value.trim() === '') return fallback;
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

export function SettingsPanel(p: SettingsProps): JSX.Element {
  const [form, setForm] = useState<AppSettings>(p.settings);
  const [chatPrompt, setChatPrompt] = useState(p.conversation?.systemPrompt ?? '');
  const [status, setStatus] = useState<{ ok: boolean; text: string } | null>(null);

  const setDefaults = (patch: Partial<ChatSettings>) => setForm({ ...form, defaults: { ...form.defaults, ...patch } });

  const problems: string[] = [];
  const d = form.defaults;
  if (!(d.temperature >= 0 && d.temperature <= 2)) problems.push('Temperature must be between 0 and 2.');
  if (d.topP !== null && !(d.topP > 0 && d.topP <= 1)) problems.push('Top-p must be above 0 and at most 1.');
  if (!(Number.isInteger(d.maxTokens) && d.maxTokens >= 1 && d.maxTokens <= 32768)) problems.push('Max tokens must be a whole number from 1 to 32768.');
  if (form.threads !== null && !(Number.isInteger(form.threads) && form.threads >= 1 && form.threads <= 256))
    problems.push('Threads must be a whole number from 1 to 256, or empty for automatic.');

  const save = async () => {
    if (problems.length > 0) {
      setStatus({ ok: false, text: problems.join(' ') });
      return;
    }
    const next: AppSettings = { ...form, systemPrompt: form.systemPrompt?.trim() ? form.systemPrompt : null };
    try {
      await api.setSettings(next);
      if (p.conversation) {
        const prompt = chatPrompt.trim() === '' ? null : chatPrompt;
        if (prompt !== p.conversation.systemPrompt) {
          await api.setChatSettings(p.conversation.id, prompt, p.conversation.settings);
          p.onChatSaved({ ...p.conversation, systemPrompt: prompt });
        }
      }
      p.onSaved(next);
      setStatus({ ok: true, text: 'Settings saved.' });
    } catch (e) {
      setStatus({ ok: false, text: `Settings were not saved: ${errorText(e)}` });
    }
  };

  return (
    <div class="settings">
      <div class="settings-inner">
        <div class="settings-head">
          <p class="muted">Changes apply to new answers. Each chat can have its own system prompt.</p>
          <button type="button" class="btn btn-ghost" onClick={p.onClose}>
            Back to chat
          </button>
        </div>
        <form
          noValidate
          onSubmit={(e) => {
            e.preventDefault();
            void save();
          }}
        >
          <fieldset class="group">
            <legend>Model</legend>
            <p class="model-line">
              {p.model !== null ? (
                <>
                  <strong>{p.model.name}</strong>
                  <span class="muted small">
                    {' '}
                    {p.model.quantization} · {p.model.imageSize}px images · {p.model.contextLength} token context
                  </span>
                </>
              ) : (
                <span class="muted">No model loaded.</span>
              )}
            </p>
            <button type="button" class="btn" onClick={p.onChangeModel}>
              Change model…
            </button>
            <div class="field">
              <label for="s-idle">Free the model's memory when idle</label>
              <select
                id="s-idle"
                value={form.idleUnloadMinutes === null ? 'off' : String(form.idleUnloadMinutes)}
                onChange={(e) => {
                  const v = e.currentTarget.value;
                  setForm({ ...form, idleUnloadMinutes: v === 'off' ? null : Number(v) });
                }}
              >
                <option value="off">Never</option>
                <option value="5">After 5 minutes idle</option>
                <option value="15">After 15 minutes idle</option>
                <option value="60">After 60 minutes idle</option>
              </select>
              <p class="hint">The next message loads the model again, which takes a moment.</p>
            </div>
            <p class="muted small">Each model sees images at its own fixed resolution; for faster, lighter image reading choose the 196 px model (Imp v1.5 3B 196).</p>
          </fieldset>

          <fieldset class="group">
            <legend>Answers</legend>
            <div class="field">
              <label for="s-temp">
                Temperature <output for="s-temp">{d.temperature.toFixed(2)}</output>
              </label>
              <input id="s-temp" type="range" min="0" max="2" step="0.05" value={d.temperature} onInput={(e) => setDefaults({ temperature: Number(e.currentTarget.value) })} />
              <p class="hint">Lower is more focused, higher is more varied. 0 always picks the likeliest word.</p>
            </div>
            <div class="field-row">
              <div class="field">
                <label for="s-topp">Top-p</label>
                <input id="s-topp" type="number" min="0.01" max="1" step="0.01" placeholder="off" value={d.topP ?? ''} onInput={(e) => setDefaults({ topP: numberOr(e.currentTarget.value, null) })} />
              </div>
              <div class="field">
                <label for="s-max">Max tokens</label>
                <input id="s-max" type="number" min="1" max="32768" step="1" value={d.maxTokens} onInput={(e) => setDefaults({ maxTokens: numberOr(e.currentTarget.value, d.maxTokens) ?? d.maxTokens })} />
              </div>
              <div class="field">
                <label for="s-threads">CPU threads</label>
                <input id="s-threads" type="number" min="1" max="256" step="1" placeholder="auto" value={form.threads ?? ''} onInput={(e) => setForm({ ...form, threads: numberOr(e.currentTarget.value, null) })} />
              </div>
            </div>
            <div class="field">
              <label for="s-system">System prompt for new chats</label>
              <textarea id="s-system" rows={3} value={form.systemPrompt ?? ''} placeholder="The model's default instructions" onInput={(e) => setForm({ ...form, systemPrompt: e.currentTarget.value })} />
            </div>
            {p.conversation !== null && (
              <div class="field">
                <label for="s-chat-system">System prompt for this chat</label>
                <textarea id="s-chat-system" rows={3} value={chatPrompt} placeholder="Uses the default above when empty" onInput={(e) => setChatPrompt(e.currentTarget.value)} />
              </div>
            )}
          </fieldset>

          <fieldset class="group">
            <legend>Appearance</legend>
            <div class="segmented" role="radiogroup" aria-label="Theme">
              {(['system', 'light', 'dark'] as const).map((t) => (
                <label key={t} class={form.theme === t ? 'on' : ''}>
                  <input
                    type="radio"
                    name="theme"
                    value={t}
                    checked={form.theme === t}
                    onChange={() => {
                      setForm({ ...form, theme: t });
                      p.onThemePreview(t);
                    }}
                  />
                  {t === 'system' ? 'System' : t === 'light' ? 'Light' : 'Dark'}
                </label>
              ))}
            </div>
          </fieldset>

          <fieldset class="group">
            <legend>Data</legend>
            <p class="data-dir">
              <span class="muted small">Conversations and images are stored in</span>
              <code>{form.dataDir}</code>
            </p>
            <button
              type="button"
              class="btn"
              onClick={() => {
                api.openDataDir().catch((e: unknown) => setStatus({ ok: false, text: `Could not open the folder: ${errorText(e)}` }));
              }}
            >
              <Icon name="folder" /> Open data folder
            </button>
            <div class="export-all" role="group" aria-label="Export all conversations">
              {(['markdown', 'zip'] as const).map((format) => (
                <button
                  key={format}
                  type="button"
                  class="btn"
                  onClick={() => {
                    void exportTo(null, format).then((outcome) => outcome && setStatus(outcome));
                  }}
                >
                  <Icon name="download" /> {format === 'markdown' ? 'Export all as Markdown…' : 'Export all as archive (.zip)…'}
                </button>
              ))}
            </div>
          </fieldset>

          <div class="settings-foot">
            <button type="submit" class="btn btn-primary">
              <Icon name="check" /> Save settings
            </button>
            <p aria-live="polite" class={status?.ok === false ? 'inline-error' : 'ok-text'}>
              {status?.text ?? ''}
            </p>
          </div>
        </form>
      </div>
    </div>
  );
}
