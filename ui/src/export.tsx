// "Export" menu: the backend asks where to save (native dialog) and writes the file;
// cancelling the dialog does nothing, and the outcome is reported through `onResult`.
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { Icon } from './icons';
import type { ExportFormat } from './ipc';
import { api, errorText } from './ipc';
import { canShareFiles, shareExport } from './share';

export interface ExportOutcome {
  ok: boolean;
  text: string;
}

/** Runs one export; `null` when the user cancelled the save dialog. */
export async function exportTo(id: string | null, format: ExportFormat): Promise<ExportOutcome | null> {
  if (canShareFiles()) {
    try {
      return (await shareExport(id, format)) === 'shared' ? { ok: true, text: 'Shared.' } : null;
    } catch {
      // The share sheet refused (e.g. a file type it will not take): save to a file instead.
    }
  }
  try {
    const path = await api.saveExport(id, format);
    return path === null ? null : { ok: true, text: `Saved to ${path}` };
  } catch (e) {
    return { ok: false, text: `Export failed: ${errorText(e)}` };
  }
}

const ITEMS: { format: ExportFormat; label: string }[] = [
  { format: 'markdown', label: 'Export as Markdown…' },
  { format: 'zip', label: 'Export as archive (.zip)…' },
];

/** A menu button for the open conversation (ARIA menu button pattern). */
export function ExportMenu(p: { conversationId: string; onResult: (outcome: ExportOutcome) => void }): JSX.Element {
  const [open, setOpen] = useState(false);
  const button = useRef<HTMLButtonElement>(null);
  const menu = useRef<HTMLUListElement>(null);
  const items = () => Array.from(menu.current?.querySelectorAll<HTMLButtonElement>('[role="menuitem"]') ?? []);

  useEffect(() => {
    if (!open) return;
    items()[0]?.focus();
    const onPointer = (e: PointerEvent) => {
      const target = e.target as Node;
      if (!menu.current?.contains(target) && !button.current?.contains(target)) setOpen(false);
    };
    document.addEventListener('pointerdown', onPointer);
    return () => document.removeEventListener('pointerdown', onPointer);
  }, [open]);

  const close = () => {
    setOpen(false);
    button.current?.focus();
  };
  const choose = (format: ExportFormat) => {
    close();
    void exportTo(p.conversationId, format).then((outcome) => outcome && p.onResult(outcome));
  };
  // On the wrapper, so keys work whether focus is still on the button or already in the menu.
  const onKeyDown = (e: KeyboardEvent) => {
    if (!open) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        setOpen(true);
      }
      return;
    }
    const list = items();
    const at = list.indexOf(document.activeElement as HTMLButtonElement);
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const step = e.key === 'ArrowDown' ? 1 : list.length - 1;
      list[(at + step) % list.length]?.focus();
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      list[e.key === 'Home' ? 0 : list.length - 1]?.focus();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      close();
    } else if (e.key === 'Tab') {
      setOpen(false);
    }
  };

  return (
    <div class="menu-wrap" onKeyDown={onKeyDown}>
      <button
        ref={button}
        type="button"
        class="icon-btn"
        id="export-button"
        aria-label="Export conversation"
        title="Export"
        aria-haspopup="menu"
        aria-expanded={open}
        aria-controls={open ? 'export-menu' : undefined}
        onClick={() => setOpen(!open)}
      >
        <Icon name="download" />
      </button>
      {open && (
        <ul ref={menu} class="menu" id="export-menu" role="menu" aria-labelledby="export-button">
          {ITEMS.map((item) => (
            <li role="none" key={item.format}>
              <button type="button" role="menuitem" tabIndex={-1} onClick={() => choose(item.format)}>
                {item.label}
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
