// Cuts a token stream into sentence-sized pieces for a polite live region,
// so screen readers hear whole sentences instead of every token.
const SENTENCE_END = /[.!?…:;](?=\s)|\n/g;
const MAX_CHUNK = 240;

export class SentenceChunker {
  private pending = '';

  /** Adds streamed text; returns the complete sentences that are now ready to announce. */
  push(delta: string): string[] {
    this.pending += delta;
    const out: string[] = [];
    let cut = -1;
    for (const m of this.pending.matchAll(SENTENCE_END)) cut = m.index + m[0].length;
    if (cut > 0) {
      out.push(...split(this.pending.slice(0, cut)));
      this.pending = this.pending.slice(cut);
    } else if (this.pending.length > MAX_CHUNK) {
      const space = this.pending.lastIndexOf(' ');
      const at = space > 0 ? space : this.pending.length;
      out.push(...split(this.pending.slice(0, at)));
      this.pending = this.pending.slice(at);
    }
    return out;
  }

  /** Whatever is left when the stream ends. */
  flush(): string {
    const rest = split(this.pending)[0] ?? '';
    this.pending = '';
    return rest;
  }
}

/** Drops Markdown and TeX punctuation that a screen reader would otherwise read aloud. */
function speakable(text: string): string {
  return text.replace(/```[\w-]*|[*_`#>$~|\\]+/g, ' ');
}

function split(text: string): string[] {
  const trimmed = speakable(text).replace(/\s+/g, ' ').trim();
  return trimmed === '' ? [] : [trimmed];
}
