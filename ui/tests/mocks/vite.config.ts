import { defineConfig } from 'vite';

// Bundles the real @tauri-apps/api mocks into one script the tests inject before the app starts.
export default defineConfig({
  root: 'tests/mocks',
  logLevel: 'warn',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    lib: { entry: 'entry.ts', formats: ['iife'], name: 'TauriMocks', fileName: () => 'tauri-mocks.iife.js' },
  },
});
