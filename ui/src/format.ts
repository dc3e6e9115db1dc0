import type { GenerationStats } from './ipc';

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit] ?? 'TB'}`;
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** One line of human-readable figures for an answer. */
export function statsParts(stats: GenerationStats): string[] {
  const parts: string[] = [];
  if (stats.images > 0) parts.push(`image encode ${formatMs(stats.imageEncodeMs)}`);
  parts.push(`first token ${formatMs(stats.timeToFirstTokenMs)}`);
  parts.push(`${stats.decodeTokensPerS.toFixed(1)} tok/s`);
  parts.push(`${stats.generatedTokens} tokens`);
  if (stats.stopReason === 'max_tokens') parts.push('hit max tokens');
  if (stats.stopReason === 'context_full') parts.push('cut off: context full');
  return parts;
}
