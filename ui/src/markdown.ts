// Model text → safe HTML. Model output is untrusted: raw HTML is never parsed as markup
// (markdown-it `html: false`), and the rendered HTML still goes through DOMPurify.
import markdownItKatex from '@vscode/markdown-it-katex';
import DOMPurify from 'dompurify';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import cpp from 'highlight.js/lib/languages/cpp';
import css from 'highlight.js/lib/languages/css';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import MarkdownIt from 'markdown-it';

const languages = { bash, cpp, css, javascript, json, python, rust, sql, typescript, xml };
for (const [name, lang] of Object.entries(languages)) hljs.registerLanguage(name, lang);
hljs.registerAliases(['sh', 'shell', 'zsh'], { languageName: 'bash' });
hljs.registerAliases(['c', 'h', 'hpp', 'c++'], { languageName: 'cpp' });
hljs.registerAliases(['js', 'jsx', 'mjs'], { languageName: 'javascript' });
hljs.registerAliases(['ts', 'tsx'], { languageName: 'typescript' });
hljs.registerAliases(['py'], { languageName: 'python' });
hljs.registerAliases(['rs'], { languageName: 'rust' });
hljs.registerAliases(['html', 'svg'], { languageName: 'xml' });

const md = new MarkdownIt({ html: false, linkify: true, breaks: true, typographer: false });
// The plugin is CommonJS with `exports.default`; bundlers may hand us either the function or the module.
type KatexPlugin = typeof markdownItKatex;
const katexModule: unknown = markdownItKatex;
const katexPlugin = (typeof katexModule === 'function' ? katexModule : (katexModule as { default: KatexPlugin }).default) as KatexPlugin;
md.use(katexPlugin, { throwOnError: false, enableFencedBlocks: true });

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Fenced code: highlighted body plus a header with the language and a copy button
// (clicks are handled by delegation in the message view).
md.renderer.rules.fence = (tokens, idx) => {
  const token = tokens[idx];
  if (!token) return '';
  const lang = token.info.trim().split(/\s+/)[0] ?? '';
  const known = lang !== '' && hljs.getLanguage(lang) !== undefined;
  const body = known ? hljs.highlight(token.content, { language: lang, ignoreIllegals: true }).value : escapeHtml(token.content);
  const label = lang === '' ? 'code' : escapeHtml(lang);
  return (
    `<div class="code-block"><div class="code-head"><span class="code-lang">${label}</span>` +
    `<button type="button" class="copy-code" aria-label="Copy ${label} code">Copy</button></div>` +
    `<pre tabindex="0"><code class="hljs${known ? ` language-${escapeHtml(lang)}` : ''}">${body}</code></pre></div>`
  );
};

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  // Wide maths and tables scroll sideways; keyboard users must be able to reach them.
  if (node.classList.contains('katex-display') || node.tagName === 'TABLE') node.setAttribute('tabindex', '0');
  if (node.tagName === 'A') {
    node.setAttribute('rel', 'noopener noreferrer');
    node.setAttribute('target', '_blank');
  }
});

/** Renders untrusted Markdown (with $…$ / $$…$$ maths and fenced code) to sanitised HTML. */
export function renderMarkdown(source: string): string {
  const html = md.render(source);
  return DOMPurify.sanitize(html, {
    ADD_ATTR: ['target', 'aria-hidden', 'tabindex'],
    FORBID_TAGS: ['style', 'form', 'input', 'textarea', 'select'],
    // DOMPurify's default minus the rarer schemes: only http(s), mailto and scheme-less values survive.
    ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i,
  });
}
