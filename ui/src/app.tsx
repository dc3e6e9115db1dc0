import type { JSX } from 'preact';
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { SentenceChunker } from './announcer';
import type { StagedItem } from './composer';
import { Composer, Dialog, PreviewDialog } from './composer';
import { Icon } from './icons';
import { baseName, checkImageFile, checkImagePath } from './images';
import type { AppSettings, Conversation, ConversationSummary, ImageRef, Message, MessageStatus, ModelInfo, ModelStatus, StagedImage, StreamEvent, Theme } from './ipc';
import { ExportMenu } from './export';
import { api, errorText, onFileDragDrop, onModelStatus, onStoreNotice } from './ipc';
import { MessageList, StoredImage } from './messages';
import { useTouchScreen } from './pointer';
import { SettingsPanel } from './settings';
import { SetupScreen } from './setup';
import { Sidebar } from './sidebar';

type View = 'chat' | 'settings' | 'setup';
interface Toast {
  id: number;
  text: string;
  action?: { label: string; run: () => void };
}
interface Live {
  conversationId: string;
  messages: Message[];
}

let nextKey = 1;
const key = () => nextKey++;

function applyTheme(theme: Theme): void {
  document.documentElement.dataset.theme = theme;
}

function draftMessage(role: 'user' | 'assistant', content: string, parentId: string | null, images: ImageRef[] = []): Message {
  return {
    id: `pending-${role}-${key()}`,
    parentId,
    role,
    content,
    status: role === 'user' ? 'complete' : 'streaming',
    createdAt: Date.now(),
    images,
    stats: null,
    provenance: null,
    error: null,
    siblingIds: [],
  };
}

export function App(): JSX.Element {
  const [model, setModel] = useState<ModelStatus | null>(null);
  const [modelError, setModelError] = useState<string | null>(null);
  const [settings, setSettings] = useState<AppSettings | null>(null);
  const [settingsError, setSettingsError] = useState<string | null>(null);
  const [conversations, setConversations] = useState<ConversationSummary[]>([]);
  const [listError, setListError] = useState<string | null>(null);
  const [activeId, setActiveId] = useState<string | null>(null);
  const [conv, setConv] = useState<Conversation | null>(null);
  const [convError, setConvError] = useState<string | null>(null);
  const [live, setLive] = useState<Live | null>(null);
  const [phase, setPhase] = useState<string | null>(null);
  const [view, setView] = useState<View>('chat');
  const [drawer, setDrawer] = useState(false);
  const [toasts, setToasts] = useState<Toast[]>([]);
  const [announcement, setAnnouncement] = useState('');
  const [dragging, setDragging] = useState(false);
  const [text, setText] = useState('');
  const [staged, setStaged] = useState<StagedItem[]>([]);
  const [notices, setNotices] = useState<string[]>([]);
  // The store's start-up notices arrive both as an event and from take_store_notices; each is shown once.
  const [storeNotices, setStoreNotices] = useState<string[]>([]);
  const addStoreNotices = useCallback((list: string[]) => setStoreNotices((n) => [...n, ...list.filter((x) => !n.includes(x))]), []);
  // Several files can fail at once: keep each message (the newest three), each said once.
  const addNotice = useCallback((text: string) => setNotices((n) => [...n.filter((x) => x !== text), text].slice(-3)), []);
  const [previewKey, setPreviewKey] = useState<string | null>(null);
  const [lightbox, setLightbox] = useState<ImageRef | null>(null);
  const searchRef = useRef<HTMLInputElement>(null);
  const inputRef = useRef<HTMLTextAreaElement>(null);
  const scrollRef = useRef<HTMLDivElement>(null);
  const busy = live !== null;
  const touch = useTouchScreen();

  const toast = useCallback((text: string, action?: Toast['action']) => {
    const id = key();
    setToasts((t) => [...t.slice(-2), { id, text, action }]);
    setTimeout(() => setToasts((t) => t.filter((x) => x.id !== id)), action ? 8000 : 4000);
  }, []);

  const refreshList = useCallback(async () => {
    try {
      setConversations(await api.listConversations());
      setListError(null);
    } catch (e) {
      setListError(`Conversations could not be listed: ${errorText(e)}`);
    }
  }, []);

  // Start-up: every call is independent, and each failure is shown where it matters.
  useEffect(() => {
    api
      .modelStatus()
      .then(setModel)
      .catch((e: unknown) => setModelError(errorText(e)));
    api
      .getSettings()
      .then((s) => {
        setSettings(s);
        applyTheme(s.theme);
      })
      .catch((e: unknown) => setSettingsError(errorText(e)));
    void refreshList();
    const unlisten = onStoreNotice((message) => addStoreNotices([message]));
    const unlistenModel = onModelStatus(setModel);
    api
      .takeStoreNotices()
      .then(addStoreNotices)
      .catch((e: unknown) => addStoreNotices([`Could not check the conversation database's start-up report: ${errorText(e)}`]));
    return () => {
      void unlisten.then((u) => u());
      void unlistenModel.then((u) => u());
    };
  }, [refreshList, addStoreNotices]);

  // While the backend reports "loading" (e.g. the last model at start-up), poll until it settles.
  useEffect(() => {
    if (model?.state !== 'loading') return;
    const timer = setInterval(() => {
      api
        .modelStatus()
        .then(setModel)
        .catch((e: unknown) => setModelError(errorText(e)));
    }, 1000);
    return () => clearInterval(timer);
  }, [model?.state]);

  // Only the newest request may fill the chat view when the user clicks through chats quickly.
  const openRequest = useRef(0);
  const openConversation = useCallback(async (id: string, messageId?: string | null) => {
    const request = ++openRequest.current;
    setActiveId(id);
    setView('chat');
    setDrawer(false);
    setConvError(null);
    try {
      const c = await api.getConversation(id);
      if (request !== openRequest.current) return;
      setConv(c);
      if (messageId) requestAnimationFrame(() => document.querySelector(`[data-message-id="${CSS.escape(messageId)}"]`)?.scrollIntoView({ block: 'center' }));
    } catch (e) {
      if (request !== openRequest.current) return;
      setConv(null);
      setConvError(`This conversation could not be opened: ${errorText(e)}`);
    }
  }, []);

  const newChat = useCallback(() => {
    openRequest.current += 1;
    setActiveId(null);
    setConv(null);
    setConvError(null);
    setView('chat');
    setDrawer(false);
    requestAnimationFrame(() => inputRef.current?.focus());
  }, []);

  const stop = useCallback(() => {
    api.stopGeneration().catch((e: unknown) => toast(`Could not stop: ${errorText(e)}`));
  }, [toast]);

  // ---- images ---------------------------------------------------------------
  const stage = useCallback((name: string, work: () => Promise<StagedImage>) => {
    const k = `img-${key()}`;
    setStaged((s) => [...s, { key: k, name, image: null, preview: null, previewError: null }]);
    work()
      .then((image) => {
        setStaged((s) => s.map((x) => (x.key === k ? { ...x, image } : x)));
        api
          .imagePreview(image.token)
          .then((preview) => setStaged((s) => s.map((x) => (x.key === k ? { ...x, preview } : x))))
          .catch((e: unknown) => setStaged((s) => s.map((x) => (x.key === k ? { ...x, previewError: errorText(e) } : x))));
      })
      .catch((e: unknown) => {
        setStaged((s) => s.filter((x) => x.key !== k));
        addNotice(errorText(e)); // the backend's message names the file
      });
  }, [addNotice]);

  const addFiles = useCallback(
    (files: File[]) => {
      for (const file of files) {
        const name = file.name === '' ? 'pasted image' : file.name;
        const problem = checkImageFile(name, file.size, file.type);
        if (problem !== null) {
          addNotice(problem);
          continue;
        }
        stage(name, async () => api.stageImageBytes(new Uint8Array(await file.arrayBuffer()), name));
      }
    },
    [stage, addNotice],
  );

  const addPaths = useCallback(
    (paths: string[]) => {
      for (const path of paths) {
        const problem = checkImagePath(path);
        if (problem !== null) {
          addNotice(problem);
          continue;
        }
        stage(baseName(path), () => api.stageImagePath(path));
      }
    },
    [stage, addNotice],
  );

  // Where a drop lands depends on the screen shown when it happens, not when the listener was made.
  const dropTarget = useRef<'composer' | 'settings' | 'setup'>('composer');
  useEffect(() => {
    const unlisten = onFileDragDrop((u) => {
      if (u.kind === 'enter' || u.kind === 'over') setDragging(true);
      else setDragging(false);
      if (u.kind !== 'drop') return;
      if (dropTarget.current === 'setup') {
        toast('Load a model first; then drop images into the chat.');
        return;
      }
      if (dropTarget.current === 'settings') setView('chat');
      addPaths(u.paths);
    });
    return () => void unlisten.then((f) => f());
  }, [addPaths, toast]);

  useEffect(() => {
    const onPaste = (e: ClipboardEvent) => {
      const files = Array.from(e.clipboardData?.files ?? []);
      if (files.length === 0) return;
      e.preventDefault();
      addFiles(files);
    };
    document.addEventListener('paste', onPaste);
    return () => document.removeEventListener('paste', onPaste);
  }, [addFiles]);

  // ---- streaming --------------------------------------------------------------
  const runStream = useCallback(
    async (
      conversationId: string,
      prefix: Message[],
      user: Message | null,
      draft: Message,
      start: (onEvent: (e: StreamEvent) => void) => Promise<MessageStatus>,
      onEarlyFailure: (message: string) => void,
    ) => {
      let userMsg = user;
      let answer = draft;
      // Mutated from the event callback, so kept in an object rather than narrowed locals.
      const flags: { started: boolean; timer: ReturnType<typeof setTimeout> | null } = { started: false, timer: null };
      const chunker = new SentenceChunker();
      const publish = () => {
        flags.timer = null;
        setLive({ conversationId, messages: [...prefix, ...(userMsg ? [userMsg] : []), answer] });
      };
      const schedule = () => {
        flags.timer ??= setTimeout(publish, 30);
      };
      const say = (parts: string[]) => {
        if (parts.length > 0) setAnnouncement(parts.join(' '));
      };
      publish();
      setPhase(null);
      const onEvent = (e: StreamEvent) => {
        switch (e.event) {
          case 'started':
            flags.started = true;
            void refreshList(); // the store may have just titled the chat after this message
            if (userMsg) userMsg = { ...userMsg, id: e.data.userMessageId };
            answer = { ...answer, id: e.data.assistantMessageId, parentId: userMsg?.id ?? answer.parentId };
            break;
          case 'image_encoded':
            setPhase(`Looking at image ${e.data.index + 1}…`);
            break;
          case 'prompt_processed':
            setPhase('Thinking…');
            break;
          case 'token':
            answer = { ...answer, content: answer.content + e.data.text };
            say(chunker.push(e.data.text));
            break;
          case 'done':
            answer = { ...answer, stats: e.data.stats, status: e.data.status };
            break;
          case 'error':
            answer = { ...answer, status: 'error', error: e.data.message };
            break;
        }
        schedule();
      };
      let failure: string | null = null;
      try {
        const status = await start(onEvent);
        if (answer.status === 'streaming') answer = { ...answer, status };
      } catch (e) {
        failure = errorText(e);
        answer = { ...answer, status: 'error', error: failure };
      }
      if (flags.timer !== null) clearTimeout(flags.timer);
      setPhase(null);
      const rest = chunker.flush();
      if (failure !== null && !flags.started) {
        setLive(null);
        onEarlyFailure(failure);
        setAnnouncement(`Not sent: ${failure}`);
        return;
      }
      say(rest === '' ? [] : [rest]);
      if (answer.status === 'stopped') setAnnouncement('Answer stopped.');
      if (answer.stats?.stopReason === 'context_full') setAnnouncement('The answer was cut off: the context is full.');
      if (answer.status === 'error') setAnnouncement(`The answer failed: ${answer.error ?? 'unknown error'}`);
      try {
        const fresh = await api.getConversation(conversationId);
        setConv((c) => (c !== null && c.id === conversationId ? fresh : c));
        setLive(null);
      } catch {
        // Keep what was streamed on screen rather than losing it.
        const messages = [...prefix, ...(userMsg ? [userMsg] : []), answer];
        setConv((c) => (c !== null && c.id === conversationId ? { ...c, messages } : c));
        setLive(null);
      }
      void refreshList();
    },
    [refreshList],
  );

  const send = useCallback(async () => {
    const body = text.trim();
    const images = staged.flatMap((s) => (s.image ? [s.image] : []));
    if (body === '' && images.length === 0) return;
    if (busy) return;
    let conversation = conv;
    const previousText = text;
    const previousStaged = staged;
    setText('');
    setStaged([]);
    setNotices([]);
    if (conversation === null) {
      try {
        // Untitled: the store names the chat after its first message.
        const created = await api.createConversation();
        conversation = { ...created, systemPrompt: null, settings: null, messages: [] };
        setConv(conversation);
        setActiveId(created.id);
        void refreshList();
      } catch (e) {
        setText(previousText);
        setStaged(previousStaged);
        addNotice(`Could not start a new chat: ${errorText(e)}`);
        return;
      }
    }
    const prefix = conversation.messages;
    const last = prefix[prefix.length - 1];
    const refs: ImageRef[] = images.map(({ sha256, mime, width, height, bytes }) => ({ sha256, mime, width, height, bytes }));
    const user = draftMessage('user', body, last?.id ?? null, refs);
    const answer = draftMessage('assistant', '', user.id);
    const id = conversation.id;
    await runStream(id, prefix, user, answer, (onEvent) => api.sendMessage(id, body, images.map((i) => i.token), onEvent), (message) => {
      setText(previousText);
      setStaged(previousStaged);
      addNotice(`Not sent: ${message}`);
    });
  }, [text, staged, busy, conv, runStream, refreshList, addNotice]);

  const regenerate = useCallback(
    (m: Message) => {
      if (!conv || busy) return;
      const at = conv.messages.findIndex((x) => x.id === m.id);
      const prefix = conv.messages.slice(0, at < 0 ? conv.messages.length : at);
      const id = conv.id;
      void runStream(id, prefix, null, draftMessage('assistant', '', m.parentId), (onEvent) => api.regenerate(id, m.id, onEvent), (message) =>
        toast(`Could not regenerate: ${message}`),
      );
    },
    [conv, busy, runStream, toast],
  );

  const continueMessage = useCallback(
    (m: Message) => {
      if (!conv || busy) return;
      const at = conv.messages.findIndex((x) => x.id === m.id);
      const prefix = conv.messages.slice(0, at < 0 ? conv.messages.length : at);
      const id = conv.id;
      const draft: Message = { ...m, status: 'streaming', stats: null, error: null };
      void runStream(id, prefix, null, draft, (onEvent) => api.continueMessage(id, m.id, onEvent), (message) => toast(`Could not continue: ${message}`));
    },
    [conv, busy, runStream, toast],
  );

  const edit = useCallback(
    (m: Message, newText: string) => {
      if (!conv || busy) return;
      const at = conv.messages.findIndex((x) => x.id === m.id);
      const prefix = conv.messages.slice(0, at < 0 ? conv.messages.length : at);
      const user = { ...draftMessage('user', newText, m.parentId, m.images) };
      const id = conv.id;
      void runStream(id, prefix, user, draftMessage('assistant', '', user.id), (onEvent) => api.editAndResend(id, m.id, newText, onEvent), (message) =>
        toast(`Could not resend: ${message}`),
      );
    },
    [conv, busy, runStream, toast],
  );

  const switchBranch = useCallback(
    (messageId: string) => {
      if (!conv) return;
      api
        .switchBranch(conv.id, messageId)
        .then(setConv)
        .catch((e: unknown) => toast(`Could not switch versions: ${errorText(e)}`));
    },
    [conv, toast],
  );

  // ---- conversation list actions ---------------------------------------------
  const rename = (id: string, title: string) => {
    setConversations((list) => list.map((c) => (c.id === id ? { ...c, title } : c)));
    if (conv?.id === id) setConv({ ...conv, title });
    api
      .renameConversation(id, title)
      .then(refreshList)
      .catch((e: unknown) => {
        toast(`Rename failed: ${errorText(e)}`);
        void refreshList();
      });
  };
  const pin = (id: string, pinned: boolean) => {
    api
      .pinConversation(id, pinned)
      .then(refreshList)
      .catch((e: unknown) => toast(`Could not ${pinned ? 'pin' : 'unpin'}: ${errorText(e)}`));
  };
  const remove = (c: ConversationSummary) => {
    api
      .deleteConversation(c.id)
      .then(() => {
        setConversations((list) => list.filter((x) => x.id !== c.id));
        if (activeId === c.id) newChat();
        toast(`Deleted “${c.title || 'Untitled chat'}”.`, {
          label: 'Undo',
          run: () => {
            api
              .restoreConversation(c.id)
              .then(() => {
                toast('Conversation restored.');
                return refreshList();
              })
              .catch((e: unknown) => toast(`Could not restore: ${errorText(e)}`));
          },
        });
      })
      .catch((e: unknown) => toast(`Could not delete: ${errorText(e)}`));
  };

  // On phones the list is a drawer: move focus into it when it opens and back when it closes.
  const drawerToggle = useRef<HTMLButtonElement>(null);
  const drawerWasOpen = useRef(false);
  // Layout effect: runs before the browser drops focus from the now hidden drawer.
  useLayoutEffect(() => {
    const sidebar = document.querySelector<HTMLElement>('.sidebar');
    if (drawer && window.matchMedia('(max-width: 760px)').matches) {
      requestAnimationFrame(() => sidebar?.querySelector<HTMLElement>('.new-chat')?.focus());
    } else if (!drawer && drawerWasOpen.current && sidebar?.contains(document.activeElement)) {
      drawerToggle.current?.focus();
    }
    drawerWasOpen.current = drawer;
  }, [drawer]);

  // ---- keyboard ---------------------------------------------------------------
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const mod = e.ctrlKey || e.metaKey;
      if (mod && !e.shiftKey && !e.altKey && e.key.toLowerCase() === 'n') {
        e.preventDefault();
        newChat();
      } else if (mod && !e.shiftKey && !e.altKey && e.key.toLowerCase() === 'k') {
        e.preventDefault();
        setDrawer(true);
        setView((v) => (v === 'settings' ? 'chat' : v));
        requestAnimationFrame(() => searchRef.current?.focus());
      } else if (e.key === 'Escape') {
        if (busy) {
          e.preventDefault();
          stop();
        } else if (drawer) setDrawer(false);
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [busy, drawer, newChat, stop]);

  // Follow the answer as it streams, unless the reader has scrolled up.
  const liveMessages = live !== null && live.conversationId === (conv?.id ?? activeId) ? live.messages : null;
  const messages = liveMessages ?? conv?.messages ?? [];
  const lastContent = messages[messages.length - 1]?.content.length ?? 0;
  useEffect(() => {
    const el = scrollRef.current;
    if (!el) return;
    if (el.scrollHeight - el.scrollTop - el.clientHeight < 160 || liveMessages === null) el.scrollTop = el.scrollHeight;
  }, [messages.length, lastContent, liveMessages === null]);

  const modelReady = model?.state === 'ready';
  // Without a model, the set-up screen replaces the empty chat; existing chats stay readable.
  const showSetup = view === 'setup' || (view === 'chat' && activeId === null && !modelReady && (model !== null || modelError !== null));
  dropTarget.current = view === 'settings' ? 'settings' : showSetup ? 'setup' : 'composer';
  const previewItem = staged.find((s) => s.key === previewKey) ?? null;

  const onLoaded = (info: ModelInfo) => {
    setModel({ state: 'ready', model: info, error: null, idle: false });
    setModelError(null);
    setView('chat');
    toast(`${info.name} is ready.`);
    requestAnimationFrame(() => inputRef.current?.focus());
  };

  let main: JSX.Element;
  if (view === 'settings') {
    main =
      settings !== null ? (
        <SettingsPanel
          settings={settings}
          model={model?.model ?? null}
          conversation={conv}
          onSaved={(s) => {
            setSettings(s);
            applyTheme(s.theme);
          }}
          onChatSaved={setConv}
          onThemePreview={applyTheme}
          onChangeModel={() => {
            applyTheme(settings.theme);
            setView('setup');
          }}
          onClose={() => {
            applyTheme(settings.theme); // drop an unsaved theme preview
            setView('chat');
          }}
        />
      ) : (
        <div class="center-note">
          <p class="inline-error" role="alert">
            Settings could not be read: {settingsError ?? 'still loading'}
          </p>
          <button type="button" class="btn" onClick={() => setView('chat')}>
            Back to chat
          </button>
        </div>
      );
  } else if (showSetup) {
    main = (
      <SetupScreen
        status={model}
        statusError={modelError === null ? null : `The model status could not be read: ${modelError}`}
        lastModelPath={settings?.lastModelPath ?? null}
        onLoaded={onLoaded}
        onCancel={view === 'setup' && modelReady ? () => setView('chat') : null}
      />
    );
  } else if (model === null && modelError === null) {
    main = (
      <div class="center-note">
        <span class="spinner" aria-hidden="true" /> Starting…
      </div>
    );
  } else {
    main = (
      <div class="chat">
        <div class="chat-scroll" ref={scrollRef}>
          {convError !== null && (
            <p class="inline-error chat-error" role="alert">
              {convError}
            </p>
          )}
          {!modelReady && (
            <p class="banner">
              No model is loaded, so this chat is read-only.{' '}
              <button type="button" class="link-btn" onClick={() => setView('setup')}>
                Set up a model
              </button>
            </p>
          )}
          {messages.length === 0 && convError === null ? (
            <div class="empty">
              <h2>What shall we look at?</h2>
              <p class="muted">
                {touch ? 'Attach an image or take a photo, then ask about it. Everything stays on this device.' : 'Drop, paste or attach an image, then ask about it. Everything stays on this computer.'}
              </p>
            </div>
          ) : (
            <MessageList
              messages={messages}
              phase={phase}
              busy={busy}
              onRegenerate={regenerate}
              onContinue={continueMessage}
              onEdit={edit}
              onSwitch={switchBranch}
              onOpenImage={setLightbox}
              onNotice={(t) => toast(t)}
            />
          )}
        </div>
        <Composer
          text={text}
          onText={setText}
          staged={staged}
          notices={notices}
          onDismissNotices={() => setNotices([])}
          busy={busy}
          disabled={!modelReady}
          inputRef={inputRef}
          onSend={() => void send()}
          onStop={stop}
          onFiles={addFiles}
          onRemove={(k) => setStaged((s) => s.filter((x) => x.key !== k))}
          onPreview={setPreviewKey}
          touch={touch}
        />
      </div>
    );
  }

  const title = view === 'settings' ? 'Settings' : showSetup ? 'Model set-up' : (conv?.title ?? '') || 'New chat';

  return (
    <div class={`app${drawer ? ' drawer-open' : ''}`}>
      <Sidebar
        conversations={conversations}
        listError={listError}
        activeId={activeId}
        searchRef={searchRef}
        onSelect={(id, messageId) => void openConversation(id, messageId)}
        onNew={newChat}
        onRename={rename}
        onPin={pin}
        onDelete={remove}
        onClose={() => setDrawer(false)}
        touch={touch}
      />
      <div class="scrim" aria-hidden="true" onClick={() => setDrawer(false)} />
      <main class="main">
        <header class="topbar">
          <button ref={drawerToggle} type="button" class="icon-btn drawer-toggle" aria-label="Show conversations" aria-expanded={drawer} onClick={() => setDrawer(!drawer)}>
            <Icon name="menu" />
          </button>
          <h1 class="title">{title}</h1>
          {model?.model && model.state === 'ready' && (
            <button
              type="button"
              class={model.idle ? 'model-pill idle' : 'model-pill'}
              onClick={() => setView('setup')}
              title={model.idle ? 'Unloaded to free memory; it loads again with the next message.' : undefined}
              aria-label={`Model: ${model.model.name}${model.idle ? ', unloaded to free memory until the next message' : ''}. Change model`}
            >
              <span class="dot" aria-hidden="true" />
              <span class="model-name">{model.model.name}</span>
            </button>
          )}
          {view === 'chat' && !showSetup && conv !== null && <ExportMenu conversationId={conv.id} onResult={(outcome) => toast(outcome.text)} />}
          <button type="button" class="icon-btn" aria-label="Settings" aria-pressed={view === 'settings'} onClick={() => setView(view === 'settings' ? 'chat' : 'settings')}>
            <Icon name="settings" />
          </button>
        </header>
        {storeNotices.length > 0 && (
          <div class="inline-error store-notice">
            <ul class="notice-list" role="alert">
              {storeNotices.map((n) => (
                <li key={n}>{n}</li>
              ))}
            </ul>
            <button type="button" class="icon-btn sm" aria-label="Dismiss the database notice" onClick={() => setStoreNotices([])}>
              <Icon name="close" size={14} />
            </button>
          </div>
        )}
        {main}
      </main>
      {/* Drops only come from a desktop file manager; a phone never drags files in. */}
      {dragging && !touch && (
        <div class="drop-overlay" aria-hidden="true">
          <div class="drop-card">
            <Icon name="image" size={40} />
            <p>{showSetup ? 'Load a model first to chat about images' : 'Drop images to attach them'}</p>
          </div>
        </div>
      )}
      <div class="toasts" aria-live="polite">
        {toasts.map((t) => (
          <div class="toast" key={t.id}>
            <span>{t.text}</span>
            {t.action && (
              <button
                type="button"
                class="btn btn-ghost sm"
                onClick={() => {
                  t.action?.run();
                  setToasts((list) => list.filter((x) => x.id !== t.id));
                }}
              >
                {t.action.label}
              </button>
            )}
          </div>
        ))}
      </div>
      <div class="sr-only" aria-live="polite" aria-atomic="true" id="answer-announcer">
        {announcement}
      </div>
      {previewItem !== null && <PreviewDialog item={previewItem} onClose={() => setPreviewKey(null)} />}
      {lightbox !== null && (
        <Dialog label="Image" onClose={() => setLightbox(null)} wide>
          <div class="lightbox">
            <StoredImage image={lightbox} thumbnail={false} alt={`Attached image, ${lightbox.width}×${lightbox.height}`} />
          </div>
        </Dialog>
      )}
    </div>
  );
}
