// Typed client for the IPC contract in docs/ipc.md. Every backend call the UI makes goes through here.
import { Channel, invoke } from '@tauri-apps/api/core';
import type { UnlistenFn } from '@tauri-apps/api/event';
import { listen } from '@tauri-apps/api/event';
import { getCurrentWebview } from '@tauri-apps/api/webview';

export type Role = 'system' | 'user' | 'assistant';
export type ExportFormat = 'markdown' | 'zip';
export type MessageStatus = 'streaming' | 'complete' | 'stopped' | 'interrupted' | 'error';

export interface ConversationSummary {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  pinned: boolean;
  modelId: string | null;
  deleted: boolean;
}
export interface Conversation extends ConversationSummary {
  systemPrompt: string | null;
  settings: ChatSettings | null;
  /** The active branch, oldest first. */
  messages: Message[];
}
export interface ImageRef {
  sha256: string;
  mime: string;
  width: number;
  height: number;
  bytes: number;
}
export interface Message {
  id: string;
  parentId: string | null;
  role: Role;
  content: string;
  status: MessageStatus;
  createdAt: number;
  images: ImageRef[];
  stats: GenerationStats | null;
  provenance: Provenance | null;
  error: string | null;
  /** Other versions of this message (edits / regenerations). */
  siblingIds: string[];
}
export type StopReason = 'end_of_turn' | 'stop_string' | 'max_tokens' | 'context_full' | 'cancelled';
export interface GenerationStats {
  images: number;
  imageEncodeMs: number;
  promptTokens: number;
  promptTokensComputed: number;
  promptMs: number;
  timeToFirstTokenMs: number;
  generatedTokens: number;
  decodeMs: number;
  decodeTokensPerS: number;
  stopReason: StopReason | null;
}
export interface Provenance {
  modelId: string;
  modelFileHash: string | null;
  quantization: string;
  imageSize: number;
  sampling: ChatSettings;
  seed: number;
}
export interface ChatSettings {
  temperature: number;
  topP: number | null;
  topK: number | null;
  maxTokens: number;
  repetitionPenalty: number;
  seed: number | null;
}
export interface SearchHit {
  conversationId: string;
  messageId: string | null;
  title: string;
  /** Plain text with each match wrapped in \u0001 ... \u0002 markers. */
  snippet: string;
  rank: number;
}
export type ModelState = 'none' | 'loading' | 'ready' | 'error';
export interface ModelStatus {
  state: ModelState;
  model: ModelInfo | null;
  error: string | null;
  /** "ready" but out of memory: unloaded while idle (or in the background); the next message loads it again. */
  idle: boolean;
}
export type ImageAspect = 'square' | 'pad';
export interface ModelInfo {
  id: string;
  name: string;
  family: 'phi2' | 'qwen2' | 'phi3';
  path: string;
  imageSize: number;
  visualTokens: number;
  contextLength: number;
  quantization: string;
  imageAspect: ImageAspect;
}
export type MemoryFit = 'yes' | 'tight' | 'no';
export interface CatalogEntry {
  id: string;
  name: string;
  repo: string;
  family: string;
  params: string;
  imageSize: number;
  visualTokens: number;
  license: string;
  goodAt: string;
  downloadBytes: number;
  ramBytes: number;
  fits: MemoryFit;
  /** Branch or commit the catalog asks for; an installed model records the commit it got. */
  revision: string;
  quantizations: QuantOption[];
  /** The format to offer first on this device (4-bit on phones). */
  defaultQuant: Quant;
  /** The model to suggest first on this device (the 196 px checkpoint on phones). */
  suggested: boolean;
  installed: InstalledModel | null;
  /** Bytes kept from an interrupted download; the next download resumes from them. */
  partialBytes: number;
  downloading: boolean;
}
/** Weight formats: "f16" keeps the published files, the others are converted after download. */
export type Quant = 'f16' | 'q8_0' | 'q4_k_m' | 'q4_0';
export interface QuantOption {
  quant: Quant;
  recommended: boolean;
  fileBytes: number;
  ramBytes: number;
  contextTokens: number;
  fits: MemoryFit;
}
export interface InstalledModel {
  id: string;
  catalogId: string | null;
  path: string;
  /** What to give load_model: the GGUF when the download was converted, else the folder. */
  loadPath: string;
  sizeOnDisk: number;
  repo: string | null;
  revision: string | null;
  /** The commit the hub resolved the revision to when the model was downloaded. */
  commit: string | null;
  installedAt: number;
}
export type Theme = 'light' | 'dark' | 'system';
export interface AppSettings {
  theme: Theme;
  threads: number | null;
  systemPrompt: string | null;
  defaults: ChatSettings;
  dataDir: string;
  lastModelPath: string | null;
  /** Unload the model after this many idle minutes (5, 15 or 60); null keeps it loaded. */
  idleUnloadMinutes: number | null;
}
/** An image validated by the backend and held there until it is sent. */
export interface StagedImage {
  token: string;
  sha256: string;
  mime: string;
  width: number;
  height: number;
  bytes: number;
  thumbnailDataUrl: string;
}
/** What the model will see for one staged image. */
export interface ImagePreview {
  pngDataUrl: string;
  size: number;
  visualTokens: number;
  aspect: ImageAspect;
}

export type StreamEvent =
  | { event: 'started'; data: { userMessageId: string; assistantMessageId: string } }
  | { event: 'image_encoded'; data: { index: number; ms: number; cached: boolean } }
  | { event: 'prompt_processed'; data: { tokens: number; ms: number } }
  | { event: 'token'; data: { text: string } }
  | { event: 'done'; data: { stats: GenerationStats; status: MessageStatus } }
  | { event: 'error'; data: { message: string } };

export interface AppError {
  kind: string;
  message: string;
}

export interface ImportResult {
  imported: number;
  skipped: number;
}

/** Turns whatever a rejected call threw into one readable sentence. */
export function errorText(err: unknown): string {
  if (typeof err === 'string') return err;
  if (err && typeof err === 'object') {
    const message = (err as { message?: unknown }).message;
    if (typeof message === 'string' && message.length > 0) return message;
  }
  return 'Something went wrong talking to the ImpChat backend. Restart the app and try again.';
}

class BackendMissing extends Error implements AppError {
  readonly kind = 'no_backend';
  constructor() {
    super('The ImpChat backend is not running. Start ImpChat from its app, not from a web browser.');
  }
}

export async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  // Outside the Tauri shell there is no IPC at all; say so instead of failing obscurely.
  if (!('__TAURI_INTERNALS__' in window)) {
    throw new BackendMissing();
  }
  return invoke<T>(command, args);
}

/** Runs a streaming command: `onEvent` receives every StreamEvent in order. */
async function stream(
  command: string,
  args: Record<string, unknown>,
  onEvent: (e: StreamEvent) => void,
): Promise<MessageStatus> {
  if (!('__TAURI_INTERNALS__' in window)) return call<MessageStatus>(command, args);
  const channel = new Channel<StreamEvent>();
  channel.onmessage = onEvent;
  return call<MessageStatus>(command, { ...args, onEvent: channel });
}

export const api = {
  listConversations: (includeDeleted = false) =>
    call<ConversationSummary[]>('list_conversations', { includeDeleted }),
  createConversation: (title?: string) => call<ConversationSummary>('create_conversation', { title }),
  getConversation: (id: string) => call<Conversation>('get_conversation', { id }),
  renameConversation: (id: string, title: string) => call<null>('rename_conversation', { id, title }),
  pinConversation: (id: string, pinned: boolean) => call<null>('pin_conversation', { id, pinned }),
  deleteConversation: (id: string) => call<null>('delete_conversation', { id }),
  restoreConversation: (id: string) => call<null>('restore_conversation', { id }),
  purgeConversation: (id: string) => call<null>('purge_conversation', { id }),
  search: (query: string) => call<SearchHit[]>('search', { query }),
  exportConversation: (id: string | null, format: ExportFormat, path: string) =>
    call<string>('export_conversation', { id, format, path }),
  /** Asks where to save (native dialog) and exports there; resolves to the path written, or null when cancelled. */
  saveExport: (id: string | null, format: ExportFormat) => call<string | null>('save_export', { id, format }),
  importArchive: (path: string) => call<ImportResult>('import_archive', { path }),
  setChatSettings: (id: string, systemPrompt: string | null, settings: ChatSettings | null) =>
    call<null>('set_chat_settings', { id, systemPrompt, settings }),
  stageImagePath: (path: string) => call<StagedImage>('stage_image_path', { path }),
  stageImageBytes: async (bytes: Uint8Array, fileName: string): Promise<StagedImage> => {
    if (!('__TAURI_INTERNALS__' in window)) return call<StagedImage>('stage_image_bytes');
    // Raw body: the bytes travel as-is, not as a JSON array. Header values must be ASCII.
    return invoke<StagedImage>('stage_image_bytes', bytes, {
      headers: { 'x-file-name': encodeURIComponent(fileName) },
    });
  },
  imagePreview: (token: string) => call<ImagePreview>('image_preview', { token }),
  getImage: (sha256: string, thumbnail = false) => call<ArrayBuffer>('get_image', { sha256, thumbnail }),
  sendMessage: (conversationId: string, text: string, imageTokens: string[], onEvent: (e: StreamEvent) => void) =>
    stream('send_message', { conversationId, text, imageTokens }, onEvent),
  regenerate: (conversationId: string, messageId: string, onEvent: (e: StreamEvent) => void) =>
    stream('regenerate', { conversationId, messageId }, onEvent),
  editAndResend: (conversationId: string, messageId: string, text: string, onEvent: (e: StreamEvent) => void) =>
    stream('edit_and_resend', { conversationId, messageId, text }, onEvent),
  continueMessage: (conversationId: string, messageId: string, onEvent: (e: StreamEvent) => void) =>
    stream('continue_message', { conversationId, messageId }, onEvent),
  switchBranch: (conversationId: string, messageId: string) =>
    call<Conversation>('switch_branch', { conversationId, messageId }),
  stopGeneration: () => call<null>('stop_generation', {}),
  modelStatus: () => call<ModelStatus>('model_status', {}),
  loadModel: (path: string) => call<ModelInfo>('load_model', { path }),
  unloadModel: () => call<null>('unload_model', {}),
  pickModelPath: (kind: 'folder' | 'file') => call<string | null>('pick_model_path', { kind }),
  modelCatalog: () => call<CatalogEntry[]>('model_catalog', {}),
  getSettings: () => call<AppSettings>('get_settings', {}),
  setSettings: (settings: AppSettings) => call<null>('set_settings', { settings }),
  openDataDir: () => call<null>('open_data_dir', {}),
  /** Start-up notices from the store (e.g. a damaged database moved aside), each given once. */
  takeStoreNotices: () => call<string[]>('take_store_notices', {}),
};

export type DragDropKind = 'enter' | 'over' | 'leave' | 'drop';
export interface DragDropUpdate {
  kind: DragDropKind;
  paths: string[];
}

/** Native file drag-and-drop on the window (desktop only). Resolves to a no-op outside Tauri. */
export async function onFileDragDrop(handler: (u: DragDropUpdate) => void): Promise<UnlistenFn> {
  try {
    return await getCurrentWebview().onDragDropEvent((event) => {
      const p = event.payload;
      handler({ kind: p.type, paths: p.type === 'enter' || p.type === 'drop' ? p.paths : [] });
    });
  } catch {
    return () => undefined;
  }
}

/** The store's start-up notice (a damaged database was moved aside). */
/** Every change of the model status the backend makes by itself (idle unload, reload). */
export async function onModelStatus(handler: (status: ModelStatus) => void): Promise<UnlistenFn> {
  try {
    return await listen<ModelStatus>('model-status', (e) => handler(e.payload));
  } catch {
    return () => undefined;
  }
}

export async function onStoreNotice(handler: (message: string) => void): Promise<UnlistenFn> {
  try {
    return await listen<{ message: string }>('store-notice', (e) => handler(e.payload.message));
  } catch {
    return () => undefined;
  }
}
