// Serves the built UI with `vite preview` under the app's real CSP, drives Debian Chromium with
// playwright-core, and installs the real @tauri-apps/api mocks plus the test backend in each page.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, crc32 } from 'node:zlib';
import { chromium } from 'playwright-core';
import { preview } from 'vite';

export const uiDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// Every run writes its screenshots here (gitignored); UPDATE_SCREENSHOTS=1 also refreshes the
// committed ones in assets/screenshots, so an ordinary test run leaves the git tree clean.
export const resultsDir = join(uiDir, 'test-results');
export const screenshotDir = join(uiDir, '..', 'assets', 'screenshots');

// The CSP the shipped app runs under (tauri.conf.json); any violation fails the test.
export const CSP =
  "default-src 'self'; img-src 'self' data: blob: asset: http://asset.localhost; style-src 'self' 'unsafe-inline'; script-src 'self'";

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

async function freePort() {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts the preview server and the browser once per test file. */
export async function startHarness() {
  const port = await freePort();
  const server = await preview({
    root: uiDir,
    configFile: join(uiDir, 'vite.config.ts'),
    logLevel: 'silent',
    preview: { host: '127.0.0.1', port, strictPort: true, headers: { 'Content-Security-Policy': CSP } },
  });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
  const url = `http://127.0.0.1:${port}/`;
  return {
    url,
    browser,
    /** Opens the app with a configured mock backend; returns the page and collected problems. */
    /** `mobile: true` emulates a phone: touch, a coarse pointer, no hover, a 3x screen. */
    async open(backend = {}, { width = 1200, height = 800, colorScheme = 'light', mobile = false } = {}) {
      const device = mobile ? { deviceScaleFactor: 3, isMobile: true, hasTouch: true } : {};
      const context = await browser.newContext({ viewport: { width, height }, colorScheme, reducedMotion: 'reduce', ...device });
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url.slice(0, -1) });
      context.setDefaultTimeout(8000);
      const page = await context.newPage();
      const problems = [];
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('console', (m) => {
        const text = m.text();
        if (/Content Security Policy|Refused to/i.test(text)) problems.push(`CSP: ${text}`);
      });
      await page.addInitScript({ path: join(uiDir, 'tests', 'mocks', 'dist', 'tauri-mocks.iife.js') });
      await page.addInitScript({ path: join(uiDir, 'tests', 'support', 'backend.js') });
      await page.addInitScript((cfg) => window.__installMockBackend(cfg), backend);
      await page.goto(url);
      await page.waitForSelector('.app');
      return { page, context, problems };
    },
    async close() {
      await browser.close();
      await new Promise((resolve) => server.httpServer.close(resolve));
    },
  };
}

/** Saves a screenshot as ui/test-results/ui-NAME.png, and to assets/screenshots/ with UPDATE_SCREENSHOTS=1. */
export async function screenshot(page, name) {
  mkdirSync(resultsDir, { recursive: true });
  const file = `ui-${name}.png`;
  await page.screenshot({ path: join(resultsDir, file) });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync(screenshotDir, { recursive: true });
    copyFileSync(join(resultsDir, file), join(screenshotDir, file));
  }
}

/** A real PNG file of the given size, encoded here so the tests need no fixture files. */
export function makePng(width, height) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      raw[row + 1 + x * 3] = (x * 255) / width;
      raw[row + 2 + x * 3] = (y * 255) / height;
      raw[row + 3 + x * 3] = 160;
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Emits a native drag-and-drop event the way the Tauri webview does. */
export async function emitDragDrop(page, type, paths = []) {
  const event = { enter: 'tauri://drag-enter', over: 'tauri://drag-over', drop: 'tauri://drag-drop', leave: 'tauri://drag-leave' }[type];
  const payload = type === 'leave' ? null : type === 'over' ? { position: { x: 200, y: 200 } } : { paths, position: { x: 200, y: 200 } };
  await page.evaluate(([event, payload]) => window.__TAURI_INTERNALS__.invoke('plugin:event|emit', { event, payload }), [event, payload]);
}

const axeSource = readFileSync(join(uiDir, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

/** Runs axe-core on the whole page and fails on any serious or critical violation. */
export async function axe(page, label) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 4) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${label}: serious/critical accessibility violations`);
}

export const calls = (page, cmd) => page.evaluate((c) => window.__calls.filter((x) => x.cmd === c), cmd);
