import type { JSX } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { copyText } from './clipboard';
import { statsParts } from './format';
import { Icon } from './icons';
import { imageUrl } from './images';
import type { ImageRef, Message } from './ipc';
import { renderMarkdown } from './markdown';

export interface MessageActions {
  busy: boolean;
  onRegenerate: (m: Message) => void;
  onContinue: (m: Message) => void;
  onEdit: (m: Message, text: string) => void;
  onSwitch: (id: string) => void;
  onOpenImage: (img: ImageRef) => void;
  onNotice: (text: string) => void;
}

export function MessageList(p: MessageActions & { messages: Message[]; phase: string | null }): JSX.Element {
  const visible = p.messages.filter((m) => m.role !== 'system');
  return (
    <ol class="messages" aria-label="Messages">
      {visible.map((m, i) => (
        <MessageItem key={m.id} {...p} message={m} last={i === visible.length - 1} />
      ))}
    </ol>
  );
}

const STATUS_LABEL: Partial<Record<Message['status'], string>> = {
  stopped: 'Stopped',
  interrupted: 'Interrupted',
  error: 'Error',
};

function MessageItem(p: MessageActions & { message: Message; last: boolean; phase: string | null }): JSX.Element {
  const m = p.message;
  const [editing, setEditing] = useState(false);
  const streaming = m.status === 'streaming';
  const isUser = m.role === 'user';
  const badge = STATUS_LABEL[m.status];

  return (
    <li class={`msg msg-${m.role}${streaming ? ' is-streaming' : ''}`} data-message-id={m.id} data-status={m.status}>
      <h3 class="sr-only">{isUser ? 'You said' : 'ImpChat answered'}</h3>
      <div class="msg-body">
        {m.images.length > 0 && <MessageImages images={m.images} onOpen={p.onOpenImage} />}
        {editing ? (
          <EditBox
            initial={m.content}
            onCancel={() => setEditing(false)}
            onSave={(text) => {
              setEditing(false);
              p.onEdit(m, text);
            }}
          />
        ) : isUser ? (
          <div class="user-text">{m.content}</div>
        ) : (
          <Markdown source={m.content} onNotice={p.onNotice} />
        )}
        {streaming && m.content === '' && (
          <div class="typing" aria-hidden="true">
            <span />
            <span />
            <span />
            {p.phase !== null && <em>{p.phase}</em>}
          </div>
        )}
        {badge !== undefined && (
          <p class={`status-badge status-${m.status}`}>
            <strong>{badge}</strong>
            {m.error !== null && m.error !== '' ? `: ${m.error}` : m.status === 'stopped' ? ' by you' : ''}
          </p>
        )}
      </div>
      {!streaming && !editing && (
        <div class="msg-meta">
          {versionsOf(m).length > 1 && <BranchSwitcher message={m} busy={p.busy} onSwitch={p.onSwitch} />}
          <div class="msg-actions">
            <button
              type="button"
              class="icon-btn sm"
              aria-label={isUser ? 'Copy your message' : 'Copy answer'}
              title="Copy"
              onClick={() => {
                void copyText(m.content).then((ok) => p.onNotice(ok ? 'Copied to the clipboard.' : 'Copy failed: the clipboard is not available.'));
              }}
            >
              <Icon name="copy" size={15} />
            </button>
            {isUser ? (
              <button type="button" class="icon-btn sm" aria-label="Edit and resend" title="Edit and resend" disabled={p.busy} onClick={() => setEditing(true)}>
                <Icon name="edit" size={15} />
              </button>
            ) : (
              <>
                <button type="button" class="icon-btn sm" aria-label="Regenerate answer" title="Regenerate" disabled={p.busy} onClick={() => p.onRegenerate(m)}>
                  <Icon name="refresh" size={15} />
                </button>
                {(m.status === 'stopped' || m.status === 'interrupted' || m.stats?.stopReason === 'max_tokens') && p.last && (
                  <button type="button" class="btn btn-ghost sm" disabled={p.busy} onClick={() => p.onContinue(m)}>
                    Continue
                  </button>
                )}
              </>
            )}
          </div>
          {m.role === 'assistant' && m.stats?.stopReason === 'context_full' && (
            <p class="stats" role="note">
              Cut off: the context is full. Start a new chat to go on.
            </p>
          )}
          {m.stats !== null && m.role === 'assistant' && (
            <p class="stats" aria-label="Answer statistics">
              {statsParts(m.stats).map((part) => (
                <span key={part}>{part}</span>
              ))}
            </p>
          )}
        </div>
      )}
    </li>
  );
}

/** Every version of this message, oldest first. The store lists them all in siblingIds, the
 *  message itself included; should its own id be missing, it counts as the newest. */
function versionsOf(m: Message): string[] {
  return m.siblingIds.includes(m.id) ? m.siblingIds : [...m.siblingIds, m.id];
}

function BranchSwitcher(p: { message: Message; busy: boolean; onSwitch: (id: string) => void }): JSX.Element {
  const versions = versionsOf(p.message);
  const at = versions.indexOf(p.message.id);
  const prev = versions[at - 1];
  const next = versions[at + 1];
  return (
    <div class="branches" role="group" aria-label="Versions of this message">
      <button type="button" class="icon-btn sm" aria-label="Previous version" disabled={p.busy || prev === undefined} onClick={() => prev !== undefined && p.onSwitch(prev)}>
        <Icon name="left" size={14} />
      </button>
      <span class="branch-pos" aria-live="polite">
        {at + 1}/{versions.length}
      </span>
      <button type="button" class="icon-btn sm" aria-label="Next version" disabled={p.busy || next === undefined} onClick={() => next !== undefined && p.onSwitch(next)}>
        <Icon name="right" size={14} />
      </button>
    </div>
  );
}

function EditBox(p: { initial: string; onSave: (t: string) => void; onCancel: () => void }): JSX.Element {
  const [text, setText] = useState(p.initial);
  const ref = useRef<HTMLTextAreaElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <form
      class="edit-box"
      onSubmit={(e) => {
        e.preventDefault();
        if (text.trim() !== '') p.onSave(text.trim());
      }}
    >
      <textarea
        ref={ref}
        aria-label="Edit your message"
        value={text}
        rows={3}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.stopPropagation();
            p.onCancel();
          } else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            if (text.trim() !== '') p.onSave(text.trim());
          }
        }}
      />
      <div class="edit-actions">
        <button type="button" class="btn btn-ghost sm" onClick={p.onCancel}>
          Cancel
        </button>
        <button type="submit" class="btn btn-primary sm" disabled={text.trim() === ''}>
          Save and resend
        </button>
      </div>
    </form>
  );
}

function Markdown({ source, onNotice }: { source: string; onNotice: (t: string) => void }): JSX.Element {
  const html = useMemo(() => renderMarkdown(source), [source]);
  const onClick = (e: MouseEvent) => {
    const target = e.target as HTMLElement;
    const copy = target.closest('button.copy-code');
    if (copy) {
      const code = copy.closest('.code-block')?.querySelector('code')?.textContent ?? '';
      void copyText(code).then((ok) => {
        copy.textContent = ok ? 'Copied' : 'Copy failed';
        setTimeout(() => (copy.textContent = 'Copy'), 1500);
        onNotice(ok ? 'Code copied to the clipboard.' : 'Copy failed: the clipboard is not available.');
      });
      return;
    }
    const link = target.closest('a');
    if (link) {
      // ImpChat stays offline and never navigates its own window away: hand the address to the user.
      e.preventDefault();
      const href = link.getAttribute('href') ?? '';
      if (href.startsWith('#')) return;
      void copyText(href).then((ok) => onNotice(ok ? `Link copied: ${href}. Paste it into your browser to open it.` : `Link: ${href}`));
    }
  };
  // Safe: renderMarkdown escapes raw HTML and sanitises the result with DOMPurify.
  return <div class="markdown" onClick={onClick} dangerouslySetInnerHTML={{ __html: html }} />;
}

function MessageImages(p: { images: ImageRef[]; onOpen: (img: ImageRef) => void }): JSX.Element {
  return (
    <ul class="msg-images" aria-label="Attached images">
      {p.images.map((img, i) => (
        <li key={img.sha256}>
          <button type="button" class="thumb-btn" aria-label={`Open image ${i + 1} of ${p.images.length} (${img.width}×${img.height})`} onClick={() => p.onOpen(img)}>
            <StoredImage image={img} thumbnail alt="" />
          </button>
        </li>
      ))}
    </ul>
  );
}

export function StoredImage(p: { image: ImageRef; thumbnail: boolean; alt: string }): JSX.Element {
  const [src, setSrc] = useState<string | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let live = true;
    imageUrl(p.image.sha256, p.image.mime, p.thumbnail)
      .then((u) => live && setSrc(u))
      .catch(() => live && setFailed(true));
    return () => {
      live = false;
    };
  }, [p.image.sha256, p.thumbnail]);
  if (failed) return <span class="img-missing">Image unavailable</span>;
  if (src === null) return <span class="img-loading" aria-hidden="true" />;
  return <img src={src} alt={p.alt} width={p.image.width} height={p.image.height} />;
}
