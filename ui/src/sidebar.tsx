import type { JSX, RefObject } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { Icon } from './icons';
import type { ConversationSummary, SearchHit } from './ipc';
import { api, errorText } from './ipc';

interface SidebarProps {
  conversations: ConversationSummary[];
  listError: string | null;
  activeId: string | null;
  searchRef: RefObject<HTMLInputElement | null>;
  onSelect: (id: string, messageId?: string | null) => void;
  onNew: () => void;
  onRename: (id: string, title: string) => void;
  onPin: (id: string, pinned: boolean) => void;
  onDelete: (c: ConversationSummary) => void;
  onClose: () => void;
  /** Touch screens have no Ctrl+K to advertise. */
  touch: boolean;
}

export function Sidebar(props: SidebarProps): JSX.Element {
  const [query, setQuery] = useState('');
  const [hits, setHits] = useState<SearchHit[] | null>(null);
  const [searchError, setSearchError] = useState<string | null>(null);

  useEffect(() => {
    const q = query.trim();
    if (q === '') {
      setHits(null);
      setSearchError(null);
      return;
    }
    let current = true;
    const timer = setTimeout(() => {
      api
        .search(q)
        .then((h) => {
          if (!current) return;
          setHits(h);
          setSearchError(null);
        })
        .catch((e: unknown) => {
          if (current) setSearchError(errorText(e));
        });
    }, 180);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [query]);

  const pinned = props.conversations.filter((c) => c.pinned && !c.deleted);
  const recent = props.conversations.filter((c) => !c.pinned && !c.deleted);

  return (
    <nav class="sidebar" aria-label="Conversations">
      <div class="sidebar-top">
        <div class="brand">
          <span class="brand-mark" aria-hidden="true">
            <Icon name="chip" size={16} />
          </span>
          ImpChat
        </div>
        <button type="button" class="icon-btn drawer-close" aria-label="Close conversation list" onClick={props.onClose}>
          <Icon name="close" />
        </button>
      </div>
      <button type="button" class="btn btn-primary new-chat" onClick={props.onNew} aria-keyshortcuts="Control+N">
        <Icon name="plus" /> New chat
      </button>
      <div class="search">
        <Icon name="search" size={16} />
        <input
          ref={props.searchRef}
          type="search"
          placeholder={props.touch ? 'Search chats' : 'Search chats (Ctrl+K)'}
          aria-label="Search conversations"
          aria-keyshortcuts="Control+K"
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Escape' && query !== '') {
              e.stopPropagation();
              setQuery('');
            }
          }}
        />
      </div>
      <div class="conv-scroll">
        {hits !== null || searchError !== null ? (
          <SearchResults hits={hits ?? []} error={searchError} onSelect={props.onSelect} />
        ) : (
          <>
            {props.listError !== null && (
              <p class="inline-error" role="alert">
                {props.listError}
              </p>
            )}
            {pinned.length > 0 && <ConvSection title="Pinned" items={pinned} {...props} />}
            <ConvSection title="Recent" items={recent} {...props} />
            {recent.length === 0 && pinned.length === 0 && props.listError === null && (
              <p class="muted small empty-list">No conversations yet.</p>
            )}
          </>
        )}
      </div>
    </nav>
  );
}

function SearchResults(p: {
  hits: SearchHit[];
  error: string | null;
  onSelect: (id: string, messageId?: string | null) => void;
}): JSX.Element {
  return (
    <section aria-label="Search results">
      <h2 class="section-title">Search results</h2>
      <p class="sr-only" role="status">
        {p.error ?? `${p.hits.length} result${p.hits.length === 1 ? '' : 's'}`}
      </p>
      {p.error !== null && <p class="inline-error">{p.error}</p>}
      {p.error === null && p.hits.length === 0 && <p class="muted small empty-list">Nothing matches.</p>}
      <ul class="conv-list">
        {p.hits.map((h) => (
          <li key={`${h.conversationId}:${h.messageId ?? ''}`}>
            <button type="button" class="hit" onClick={() => p.onSelect(h.conversationId, h.messageId)}>
              <span class="conv-title">{h.title}</span>
              <span class="hit-snippet">
                <Snippet text={h.snippet} />
              </span>
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** Renders the backend's \u0001…\u0002 match markers as <mark>, everything else as plain text. */
function Snippet({ text }: { text: string }): JSX.Element {
  const parts: JSX.Element[] = [];
  // eslint-disable-next-line no-control-regex -- the backend's match markers are control characters
  const re = /\u0001([^\u0002]*)\u0002/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) parts.push(<span key={parts.length}>{text.slice(last, m.index)}</span>);
    parts.push(<mark key={parts.length}>{m[1]}</mark>);
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(<span key={parts.length}>{text.slice(last)}</span>);
  return <>{parts}</>;
}

function ConvSection(p: SidebarProps & { title: string; items: ConversationSummary[] }): JSX.Element | null {
  if (p.items.length === 0) return null;
  const id = `sec-${p.title.toLowerCase()}`;
  return (
    <section aria-labelledby={id}>
      <h2 class="section-title" id={id}>
        {p.title}
      </h2>
      <ul class="conv-list">
        {p.items.map((c) => (
          <ConvItem key={c.id} conv={c} active={c.id === p.activeId} {...p} />
        ))}
      </ul>
    </section>
  );
}

function ConvItem(p: SidebarProps & { conv: ConversationSummary; active: boolean }): JSX.Element {
  const { conv } = p;
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(conv.title);
  const inputRef = useRef<HTMLInputElement>(null);
  const renameRef = useRef<HTMLButtonElement>(null);

  useEffect(() => {
    if (editing) inputRef.current?.select();
  }, [editing]);

  // Enter/Escape end editing, and the input's removal then blurs it: finish only once.
  const finished = useRef(false);
  const startEditing = () => {
    finished.current = false;
    setDraft(conv.title);
    setEditing(true);
  };
  const finish = (save: boolean) => {
    if (finished.current) return;
    finished.current = true;
    setEditing(false);
    const title = draft.trim();
    if (save && title !== '' && title !== conv.title) p.onRename(conv.id, title);
    else setDraft(conv.title);
    requestAnimationFrame(() => renameRef.current?.focus());
  };

  const title = conv.title.trim() === '' ? 'Untitled chat' : conv.title;
  return (
    <li class={`conv-item${p.active ? ' active' : ''}`}>
      {editing ? (
        <input
          ref={inputRef}
          class="rename-input"
          aria-label={`New title for ${title}`}
          value={draft}
          maxLength={200}
          onInput={(e) => setDraft(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') finish(true);
            if (e.key === 'Escape') {
              e.stopPropagation();
              finish(false);
            }
          }}
          onBlur={() => finish(true)}
        />
      ) : (
        <button
          type="button"
          class="conv-open"
          aria-current={p.active ? 'page' : undefined}
          onClick={() => p.onSelect(conv.id)}
          onDblClick={startEditing}
        >
          {conv.pinned && (
            <span class="pin-mark" aria-hidden="true">
              <Icon name="pin" size={13} />
            </span>
          )}
          <span class="conv-title">{title}</span>
        </button>
      )}
      {!editing && (
        <span class="conv-actions">
          <button
            ref={renameRef}
            type="button"
            class="icon-btn sm"
            aria-label={`Rename ${title}`}
            title="Rename"
            onClick={startEditing}
          >
            <Icon name="edit" size={15} />
          </button>
          <button
            type="button"
            class={`icon-btn sm${conv.pinned ? ' on' : ''}`}
            aria-label={conv.pinned ? `Unpin ${title}` : `Pin ${title}`}
            aria-pressed={conv.pinned}
            title={conv.pinned ? 'Unpin' : 'Pin'}
            onClick={() => p.onPin(conv.id, !conv.pinned)}
          >
            <Icon name="pin" size={15} />
          </button>
          <button
            type="button"
            class="icon-btn sm danger"
            aria-label={`Delete ${title}`}
            title="Delete"
            onClick={() => p.onDelete(conv)}
          >
            <Icon name="trash" size={15} />
          </button>
        </span>
      )}
    </li>
  );
}
