import type { Plugin } from 'vite';
import { defineConfig } from 'vite';

// KaTeX's CSS offers every font as woff2, woff and ttf; every webview ImpChat targets reads woff2,
// so the fallbacks would only add ~0.8 MB to the app.
function katexWoff2Only(): Plugin {
  return {
    name: 'katex-woff2-only',
    enforce: 'pre',
    transform(code, id) {
      if (!id.endsWith('katex.min.css')) return null;
      return { code: code.replace(/,url\([^)]+\.(?:woff|ttf)\) format\("(?:woff|truetype)"\)/g, ''), map: null };
    },
  };
}

// Everything is bundled and served from the app's own origin: the shipped CSP forbids any other.
export default defineConfig({
  base: './',
  plugins: [katexWoff2Only()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 700,
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
});
