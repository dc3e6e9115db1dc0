// Exports on phones go to the system share sheet (Web Share API with files) where the WebView
// offers it (iOS WKWebView does; Android's System WebView does not), else to the save dialog.
import type { ExportFormat } from './ipc';
import { call } from './ipc';

const MIME: Record<ExportFormat, string> = { markdown: 'text/markdown', zip: 'application/zip' };

/** True on a touch device whose WebView can share files; desktops always save to a file. */
export function canShareFiles(): boolean {
  if (!window.matchMedia('(pointer: coarse)').matches) return false;
  if (typeof navigator.canShare !== 'function') return false;
  try {
    return navigator.canShare({ files: [new File([''], 'probe.md', { type: MIME.markdown })] });
  } catch {
    return false;
  }
}

/** Hands the export to the share sheet; 'cancelled' when the user closed it without sharing. */
export async function shareExport(id: string | null, format: ExportFormat): Promise<'shared' | 'cancelled'> {
  const [bytes, name] = await Promise.all([
    call<ArrayBuffer>('export_bytes', { id, format }),
    call<string>('export_file_name', { id, format }),
  ]);
  const file = new File([bytes], name, { type: MIME[format] });
  try {
    await navigator.share({ files: [file], title: name });
    return 'shared';
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') return 'cancelled';
    throw e;
  }
}
