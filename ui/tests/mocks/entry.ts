import { clearMocks, mockIPC, mockWindows } from '@tauri-apps/api/mocks';

declare global {
  interface Window {
    __TAURI_MOCKS__: { mockIPC: typeof mockIPC; mockWindows: typeof mockWindows; clearMocks: typeof clearMocks };
  }
}

window.__TAURI_MOCKS__ = { mockIPC, mockWindows, clearMocks };
