import { Channel } from '@tauri-apps/api/core';
import { formatBytes } from './format';
import type { InstalledModel, Quant } from './ipc';
import { call } from './ipc';

export type DownloadPhase = 'resolving' | 'downloading' | 'verifying' | 'converting' | 'installing' | 'done';

/** One report over download_model's channel (docs/ipc.md). */
export interface DownloadProgress {
  phase: DownloadPhase;
  bytesDone: number;
  bytesTotal: number;
  bytesPerSecond: number;
  etaSeconds: number | null;
  /** Files while downloading, tensors while converting. */
  partsDone: number;
  partsTotal: number;
}

/** Downloads, verifies and installs a catalog model; resumes an interrupted one. */
export async function downloadModel(
  id: string,
  quant: Quant,
  onProgress: (p: DownloadProgress) => void,
): Promise<InstalledModel> {
  if (!('__TAURI_INTERNALS__' in window)) return call<InstalledModel>('download_model', { id, quant });
  const channel = new Channel<DownloadProgress>();
  channel.onmessage = onProgress;
  return call<InstalledModel>('download_model', { id, quant, onEvent: channel });
}

/** Stops the download of `id`, keeping what arrived; false when it was not downloading. */
export const cancelDownload = (id: string) => call<boolean>('cancel_download', { id });

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${minutes % 60} min`;
}

/** Whole percent done, for the progress bar. */
export function percentDone(p: DownloadProgress): number {
  if (p.phase === 'converting') return p.partsTotal > 0 ? Math.floor((p.partsDone * 100) / p.partsTotal) : 0;
  if (p.bytesTotal <= 0) return 0;
  return Math.min(100, Math.floor((p.bytesDone * 100) / p.bytesTotal));
}

/** The line under the bar: what is happening, how much, how fast, how long. */
export function progressText(p: DownloadProgress): string {
  switch (p.phase) {
    case 'resolving':
      return 'Asking the model server for file sizes…';
    case 'verifying':
      return `Checking the downloaded files (${formatBytes(p.bytesTotal)})…`;
    case 'converting':
      return p.partsTotal > 0 ? `Converting: ${p.partsDone} of ${p.partsTotal} tensors…` : 'Converting…';
    case 'installing':
      return 'Verified; installing…';
    case 'done':
      return 'Installed.';
    case 'downloading': {
      const parts = [`${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}`];
      if (p.bytesPerSecond > 0) parts.push(`${formatBytes(p.bytesPerSecond)}/s`);
      if (p.etaSeconds !== null) parts.push(`about ${formatDuration(p.etaSeconds)} left`);
      return parts.join(' · ');
    }
  }
}
