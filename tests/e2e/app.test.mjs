// The real ImpChat app (WebKitGTK, Rust backend, SQLite, tiny random-weight Imp model):
// first run and set-up, asking about an image with a streamed answer, then a restart that
// must find everything again, search, and delete with undo. Run through ./run.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { remote } from 'webdriverio';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MODEL = join(root, 'tests/fixtures/models/imp-v1.5-3b-phi2');
const IMAGE = join(root, 'tests/fixtures/images/shapes.png');
const QUESTION = 'What is in this picture?';
const SLOW = 120_000; // a cold model load plus an answer on a busy 2-core machine

let browser = null;

async function startApp() {
  assert.ok(process.env.TAURI_APP, 'TAURI_APP must name the app binary (use ./run.sh)');
  return remote({
    hostname: '127.0.0.1',
    port: Number(process.env.E2E_PORT ?? 4444),
    logLevel: 'warn',
    connectionRetryTimeout: SLOW,
    capabilities: { 'tauri:options': { application: process.env.TAURI_APP } },
  });
}

async function restartApp() {
  await browser?.deleteSession(); // closing the session quits the app
  browser = await startApp();
}

/** Text of the first element matching `selector` once it has some. */
async function textOf(selector, timeout = SLOW) {
  const el = browser.$(selector);
  await el.waitUntil(async () => (await el.isExisting()) && (await el.getText()).trim() !== '', {
    timeout,
    timeoutMsg: `${selector} never showed text`,
  });
  return (await el.getText()).trim();
}

// Screenshots go to tests/e2e/test-results; UPDATE_SCREENSHOTS=1 also refreshes the committed
// copies in assets/screenshots (so a plain test run leaves the work tree clean).
async function screenshot(name) {
  const dirs = [join(root, 'tests/e2e/test-results')];
  if (process.env.UPDATE_SCREENSHOTS === '1') dirs.push(join(root, 'assets/screenshots'));
  for (const dir of dirs) {
    mkdirSync(dir, { recursive: true });
    await browser.saveScreenshot(join(dir, name));
  }
}

before(async () => {
  browser = await startApp();
});

after(async () => {
  await browser?.deleteSession();
});

test('first run shows model set-up, and loading the model opens the chat', async () => {
  const path = browser.$('#model-path');
  await path.waitForDisplayed({ timeout: SLOW });
  await path.setValue(MODEL);
  await browser.$('.path-form button[type="submit"]').click();
  const composer = browser.$('#composer-input');
  await composer.waitForDisplayed({ timeout: SLOW, timeoutMsg: 'the chat never opened after loading the model' });
  const status = await browser.execute(() => window.__TAURI_INTERNALS__.invoke('model_status', {}));
  assert.equal(status.state, 'ready');
  assert.equal(status.model.family, 'phi2');
  await screenshot('app-main.png');
});

test('asking about an attached image streams an answer with its statistics', async () => {
  await browser.$('.new-chat').click();
  // The real input is visually hidden behind the Attach button; WebDriver only types a path
  // into an input it can see, so show it for the moment of the upload.
  await browser.execute(() => document.getElementById('file-input').classList.remove('sr-only'));
  await browser.$('#file-input').setValue(IMAGE);
  await browser.execute(() => document.getElementById('file-input').classList.add('sr-only'));
  const chip = browser.$('.chip[data-state="ready"]');
  await chip.waitForExist({ timeout: SLOW, timeoutMsg: 'the attached image was never staged' });
  // The engine's preview of what the model will see: 56 px, 16 visual tokens for this model.
  await browser.waitUntil(async () => /16 visual tokens/.test(await chip.getText()), {
    timeout: SLOW,
    timeoutMsg: 'the attached image never showed what the model will see',
  });

  await browser.$('#composer-input').setValue(QUESTION);
  await browser.$('button.send').click();

  const answer = browser.$('li.msg-assistant[data-status="complete"]');
  await answer.waitForExist({ timeout: SLOW, timeoutMsg: 'the answer never completed' });
  const text = await textOf('li.msg-assistant .markdown');
  assert.ok(text.length > 0, 'the answer has text');
  const stats = await textOf('li.msg-assistant .stats');
  assert.match(stats, /tok/i, `stats: ${stats}`);
  assert.equal(await browser.$$('li.msg-user .msg-images img').length, 1);
  await screenshot('app-chat.png');
});

test('after a restart the conversation, its image and its answer are all still there', async () => {
  await restartApp();
  const entry = browser.$(`.conv-open*=${QUESTION.slice(0, 20)}`);
  await entry.waitForExist({ timeout: SLOW, timeoutMsg: 'the conversation is gone after a restart' });
  await entry.click();
  const image = browser.$('li.msg-user .msg-images img');
  await image.waitForExist({ timeout: SLOW, timeoutMsg: 'the image is gone after a restart' });
  await browser.waitUntil(async () => (await image.getProperty('naturalWidth')) > 0, {
    timeout: SLOW,
    timeoutMsg: 'the stored image never rendered',
  });
  assert.equal(await browser.$('li.msg-user .user-text').getText(), QUESTION);
  assert.ok((await textOf('li.msg-assistant .markdown')).length > 0);
  // The last model comes back by itself.
  await browser.waitUntil(
    async () => (await browser.execute(() => window.__TAURI_INTERNALS__.invoke('model_status', {}))).state === 'ready',
    { timeout: SLOW, timeoutMsg: 'the last model was not loaded again at start-up' },
  );
});

test('search finds the conversation by a word of the question', async () => {
  const search = browser.$('input[type="search"]');
  await search.setValue('pictu');
  const hit = browser.$('button.hit');
  await hit.waitForExist({ timeout: 10_000, timeoutMsg: 'search found nothing' });
  assert.match(await hit.getText(), /picture/);
  await search.setValue('zebra-crossing-nowhere');
  await browser.$('.empty-list=Nothing matches.').waitForExist({ timeout: 10_000 });
  // Escape in the search box clears it and brings the conversation list back.
  await search.click();
  await browser.keys(['Escape']);
  await browser.$('button.hit').waitForExist({ reverse: true, timeout: 10_000 });
});

test('deleting the conversation can be undone', async () => {
  const entry = () => browser.$(`.conv-open*=${QUESTION.slice(0, 20)}`);
  await entry().waitForExist({ timeout: 10_000 });
  await browser.$(`button[aria-label^="Delete ${QUESTION.slice(0, 20)}"]`).click();
  await entry().waitForExist({ reverse: true, timeout: 10_000, timeoutMsg: 'the deleted chat is still listed' });
  await browser.$('.toast').$('button=Undo').click();
  await entry().waitForExist({ timeout: 10_000, timeoutMsg: 'undo did not bring the chat back' });
  const list = await browser.execute(() => window.__TAURI_INTERNALS__.invoke('list_conversations', {}));
  assert.equal(list.length, 1);
  assert.equal(list[0].deleted, false);
});
