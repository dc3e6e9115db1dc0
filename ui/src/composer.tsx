import type { JSX, RefObject } from 'preact';
import { useLayoutEffect, useRef } from 'preact/hooks';
import { Icon } from './icons';
import type { ImagePreview, StagedImage } from './ipc';

export interface StagedItem {
  key: string;
  name: string;
  image: StagedImage | null;
  preview: ImagePreview | null;
  previewError: string | null;
}

interface ComposerProps {
  text: string;
  onText: (t: string) => void;
  staged: StagedItem[];
  notices: string[];
  onDismissNotices: () => void;
  busy: boolean;
  disabled: boolean;
  inputRef: RefObject<HTMLTextAreaElement | null>;
  onSend: () => void;
  onStop: () => void;
  onFiles: (files: File[]) => void;
  onRemove: (key: string) => void;
  onPreview: (key: string) => void;
  /** On touch screens a second button opens the camera. */
  touch: boolean;
}

export function Composer(p: ComposerProps): JSX.Element {
  const fileRef = useRef<HTMLInputElement>(null);
  const cameraRef = useRef<HTMLInputElement>(null);
  const uploading = p.staged.some((s) => s.image === null);
  const canSend = !p.busy && !p.disabled && !uploading && (p.text.trim() !== '' || p.staged.length > 0);

  useLayoutEffect(() => {
    const el = p.inputRef.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [p.text]);

  const pick = (input: HTMLInputElement) => {
    const files = Array.from(input.files ?? []);
    input.value = '';
    if (files.length > 0) p.onFiles(files);
  };

  return (
    <form
      class="composer"
      aria-label="Write a message"
      onSubmit={(e) => {
        e.preventDefault();
        if (canSend) p.onSend();
      }}
    >
      <div class="composer-notice" aria-live="polite" role="status">
        {p.notices.length > 0 && (
          <div class="inline-error">
            <ul class="notice-list">
              {p.notices.map((n) => (
                <li key={n}>{n}</li>
              ))}
            </ul>
            <button type="button" class="icon-btn sm" aria-label={p.notices.length > 1 ? 'Dismiss messages' : 'Dismiss message'} onClick={p.onDismissNotices}>
              <Icon name="close" size={14} />
            </button>
          </div>
        )}
      </div>
      {p.staged.length > 0 && (
        <ul class="chips" aria-label="Images to send">
          {p.staged.map((s) => (
            <li class="chip" key={s.key} data-state={s.image === null ? 'uploading' : 'ready'}>
              {s.image !== null ? <img src={s.image.thumbnailDataUrl} alt="" /> : <span class="chip-spinner" aria-hidden="true" />}
              <span class="chip-text">
                <span class="chip-name">{s.name}</span>
                <span class="chip-sub">
                  {s.image === null
                    ? 'Checking…'
                    : s.preview !== null
                      ? `${s.preview.visualTokens} visual tokens`
                      : s.previewError !== null
                        ? 'Preview unavailable'
                        : `${s.image.width}×${s.image.height}`}
                </span>
              </span>
              {s.image !== null && (
                <button type="button" class="icon-btn sm" aria-label={`What the model sees for ${s.name}`} title="What the model sees" onClick={() => p.onPreview(s.key)}>
                  <Icon name="eye" size={15} />
                </button>
              )}
              <button type="button" class="icon-btn sm" aria-label={`Remove ${s.name}`} title="Remove" onClick={() => p.onRemove(s.key)}>
                <Icon name="close" size={15} />
              </button>
            </li>
          ))}
        </ul>
      )}
      <div class="composer-row">
        <input ref={fileRef} id="file-input" class="sr-only" type="file" accept="image/*" multiple tabIndex={-1} aria-hidden="true" onChange={(e) => pick(e.currentTarget)} />
        <button type="button" class="icon-btn attach" aria-label="Attach images" title="Attach images" onClick={() => fileRef.current?.click()}>
          <Icon name="image" />
        </button>
        {p.touch && (
          <>
            <input ref={cameraRef} id="camera-input" class="sr-only" type="file" accept="image/*" capture="environment" tabIndex={-1} aria-hidden="true" onChange={(e) => pick(e.currentTarget)} />
            <button type="button" class="icon-btn attach" aria-label="Take photo" title="Take photo" onClick={() => cameraRef.current?.click()}>
              <Icon name="camera" />
            </button>
          </>
        )}
        <textarea
          ref={p.inputRef}
          id="composer-input"
          rows={1}
          aria-label="Message"
          aria-description="Enter sends, Shift+Enter starts a new line"
          placeholder={p.disabled ? 'Load a model to start chatting' : 'Ask about an image…'}
          value={p.text}
          onInput={(e) => p.onText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              if (canSend) p.onSend();
            }
          }}
        />
        {p.busy ? (
          <button type="button" class="btn btn-stop" onClick={p.onStop} aria-keyshortcuts="Escape">
            <Icon name="stop" size={16} /> Stop
          </button>
        ) : (
          <button type="submit" class="btn btn-primary send" disabled={!canSend} aria-label="Send message">
            <Icon name="send" size={18} />
          </button>
        )}
      </div>
    </form>
  );
}

export function PreviewDialog(p: { item: StagedItem; onClose: () => void }): JSX.Element {
  const { item } = p;
  return (
    <Dialog label={`What the model sees: ${item.name}`} onClose={p.onClose}>
      <h2 class="dialog-title">What the model sees</h2>
      {item.preview !== null ? (
        <>
          <img class="preview-img" src={item.preview.pngDataUrl} alt={`Model input for ${item.name}`} width={item.preview.size} height={item.preview.size} />
          <p class="muted">
            {item.name}: {item.image ? `${item.image.width}×${item.image.height} → ` : ''}
            {item.preview.size}×{item.preview.size}
            {item.preview.aspect === 'pad' ? ', padded to a square' : ', resized to a square'}, {item.preview.visualTokens} visual tokens.
          </p>
        </>
      ) : (
        <p class="inline-error">{item.previewError ?? 'The preview is still being prepared.'}</p>
      )}
    </Dialog>
  );
}

/** Modal dialog: traps Tab, closes on Esc and on a backdrop click, gives focus back on close. */
export function Dialog(p: { label: string; onClose: () => void; children: JSX.Element | JSX.Element[] | (JSX.Element | false | null)[]; wide?: boolean }): JSX.Element {
  const ref = useRef<HTMLDivElement>(null);
  useLayoutEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    ref.current?.querySelector<HTMLElement>('[data-autofocus], button')?.focus();
    return () => previous?.focus();
  }, []);
  return (
    <div
      class="backdrop"
      onClick={(e) => {
        if (e.target === e.currentTarget) p.onClose();
      }}
    >
      <div
        ref={ref}
        class={`dialog${p.wide ? ' wide' : ''}`}
        role="dialog"
        aria-modal="true"
        aria-label={p.label}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.stopPropagation();
            p.onClose();
          } else if (e.key === 'Tab') trapTab(e, ref.current);
        }}
      >
        <button type="button" class="icon-btn dialog-close" aria-label="Close" onClick={p.onClose}>
          <Icon name="close" />
        </button>
        {p.children}
      </div>
    </div>
  );
}

function trapTab(e: KeyboardEvent, root: HTMLElement | null): void {
  if (!root) return;
  const focusable = Array.from(root.querySelectorAll<HTMLElement>('button, [href], input, textarea, select, [tabindex]:not([tabindex="-1"])')).filter(
    (el) => !el.hasAttribute('disabled'),
  );
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  if (!first || !last) return;
  if (e.shiftKey && document.activeElement === first) {
    e.preventDefault();
    last.focus();
  } else if (!e.shiftKey && document.activeElement === last) {
    e.preventDefault();
    first.focus();
  }
}
