import { defineConfig } from 'vite';

// Everything is bundled and served from the app's own origin: the shipped CSP forbids any other.
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 700,
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
});
