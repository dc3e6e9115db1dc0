import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { calls, emitDragDrop, startHarness } from './support/harness.mjs';

let h;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

test('with no model, the set-up screen lists the catalog with memory-fit badges', async () => {
  const { page, problems } = await h.open({ modelState: 'none' });
  await page.getByRole('heading', { name: 'Set up a model' }).waitFor();
  const cards = page.locator('.catalog .card');
  await cards.first().waitFor();
  assert.equal(await cards.count(), 3);
  assert.match(await cards.nth(0).innerText(), /Imp v1 3B[\s\S]*Fits in memory[\s\S]*6\.0 GB/);
  assert.match(await cards.nth(2).innerText(), /Tight fit/);
  assert.equal(await page.locator('#composer-input').count(), 0, 'no composer until a model is loaded');
  assert.deepEqual(problems, []);
});

test('"Use a model folder…" picks a folder, loads it and opens the chat', async () => {
  const { page } = await h.open({ modelState: 'none' });
  await page.getByRole('button', { name: 'Use a model folder…' }).click();
  await page.getByText(/Loading \/models\/imp-v1-3b/).waitFor();
  await page.getByRole('heading', { name: 'What shall we look at?' }).waitFor();
  assert.deepEqual((await calls(page, 'pick_model_path')).map((c) => c.args.kind), ['folder']);
  assert.deepEqual((await calls(page, 'load_model')).map((c) => c.args.path), ['/models/imp-v1-3b']);
  await page.getByRole('button', { name: 'Model: Imp v1 3B. Change model' }).waitFor();
  await page.locator('.toast', { hasText: 'Imp v1 3B is ready.' }).waitFor();
});

test('"Use a GGUF file…" and the typed path both load the chosen model', async () => {
  const { page } = await h.open({ modelState: 'none' });
  await page.getByRole('button', { name: 'Use a GGUF file…' }).click();
  await page.getByRole('heading', { name: 'What shall we look at?' }).waitFor();
  assert.deepEqual((await calls(page, 'load_model')).map((c) => c.args.path), ['/models/imp-v1-3b-q4.gguf']);

  const other = await h.open({ modelState: 'none' });
  await other.page.getByRole('button', { name: 'Load', exact: true }).click();
  await other.page.getByText('Type the path of a model folder or a .gguf file first').waitFor();
  await other.page.getByLabel('Or type a path').fill('/data/imp-v1.5-2b');
  await other.page.getByLabel('Or type a path').press('Enter');
  await other.page.getByRole('heading', { name: 'What shall we look at?' }).waitFor();
  assert.deepEqual((await calls(other.page, 'load_model')).map((c) => c.args.path), ['/data/imp-v1.5-2b']);
});

test('a failed load shows the reason and lets the user try again', async () => {
  const reason = 'The folder /models/imp-v1-3b has no model.safetensors. Download the model again or choose another folder.';
  const { page } = await h.open({ modelState: 'none', fail: { load_model: reason } });
  await page.getByRole('button', { name: 'Use a model folder…' }).click();
  const alert = page.getByRole('alert');
  await alert.getByText(reason).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Use a model folder…' }).isEnabled(), true);
  assert.equal(await page.getByRole('heading', { name: 'Set up a model' }).count(), 1);
});

test('a model in the error state shows its error on the set-up screen', async () => {
  const { page } = await h.open({ modelState: 'error' });
  await page.getByRole('alert').getByText(/has no config\.json/).waitFor();
});

test('the app still renders, with readable errors, when every backend call fails', async () => {
  const { page, problems } = await h.open({ failAll: true });
  await page.getByRole('heading', { name: 'Set up a model' }).waitFor();
  await page.getByText(/The model status could not be read: The backend failed \(model_status\)/).waitFor();
  await page.getByText(/Conversations could not be listed: The backend failed \(list_conversations\)/).waitFor();
  await page.getByText(/The model list could not be read/).waitFor();
  assert.deepEqual(problems, []);
});

test('opened outside the app shell, the page explains that the backend is missing', async () => {
  const context = await h.browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(h.url);
  await page.getByText(/The ImpChat backend is not running/).first().waitFor();
  await page.getByRole('heading', { name: 'Set up a model' }).waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test('settings save sampling, threads, prompts and theme, and open the data folder', async () => {
  const { page } = await h.open({ conversations: [{ id: 'c1', title: 'Trip', messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] }] });
  await page.locator('.conv-open', { hasText: 'Trip' }).click();
  await page.getByRole('button', { name: 'Settings' }).click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  assert.equal(await page.locator('.data-dir code').innerText(), '/home/user/.local/share/app.impchat');
  await page.getByRole('button', { name: 'Open data folder' }).click();
  assert.equal((await calls(page, 'open_data_dir')).length, 1);

  await page.getByLabel(/Temperature/).fill('0.7');
  await page.getByLabel('Top-p').fill('0.8');
  await page.getByLabel('Max tokens').fill('0');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByText('Max tokens must be a whole number from 1 to 32768.').waitFor();
  assert.equal((await calls(page, 'set_settings')).length, 0, 'invalid settings are not sent');

  await page.getByLabel('Max tokens').fill('1024');
  await page.getByLabel('CPU threads').fill('2');
  await page.getByLabel('System prompt for new chats').fill('Be brief.');
  await page.getByLabel('System prompt for this chat').fill('Answer in French.');
  await page.getByRole('radio', { name: 'Dark' }).check();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark', 'the theme previews at once');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByText('Settings saved.').waitFor();
  const saved = (await calls(page, 'set_settings'))[0].args.settings;
  assert.equal(saved.theme, 'dark');
  assert.equal(saved.threads, 2);
  assert.equal(saved.systemPrompt, 'Be brief.');
  assert.deepEqual({ t: saved.defaults.temperature, p: saved.defaults.topP, m: saved.defaults.maxTokens }, { t: 0.7, p: 0.8, m: 1024 });
  assert.deepEqual((await calls(page, 'set_chat_settings')).map((c) => [c.args.id, c.args.systemPrompt]), [['c1', 'Answer in French.']]);
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(22, 24, 27)', 'dark colours are applied');
});

test('a theme previewed but not saved is undone on leaving settings', async () => {
  const { page } = await h.open();
  await page.getByRole('button', { name: 'Settings' }).click();
  await page.getByRole('radio', { name: 'Dark' }).check();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await page.getByRole('button', { name: 'Back to chat' }).click();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
  assert.equal((await calls(page, 'set_settings')).length, 0);
});

test('a model already loading at start-up shows progress, then the chat', async () => {
  const { page } = await h.open({ modelState: 'loading', loadingMs: 1500 });
  await page.getByText(/Loading \/models\/imp-v1-3b… this can take a minute/).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Use a model folder…' }).isDisabled(), true);
  await page.getByRole('heading', { name: 'What shall we look at?' }).waitFor({ timeout: 6000 });
  assert.ok((await calls(page, 'model_status')).length >= 2, 'the status was polled');
});

test('the store notice taken at start-up is shown as an alert until dismissed, and an event repeating it adds nothing', async () => {
  const message = 'The conversation database was damaged and has been moved to impchat.db.broken; a new one was started.';
  const { page, problems } = await h.open({ storeNotices: [message] });
  const alert = page.getByRole('alert').filter({ hasText: message });
  await alert.waitFor();
  assert.equal((await calls(page, 'take_store_notices')).length, 1);
  // The same notice also comes as the page-load event; it is not shown twice.
  await page.evaluate((m) => window.__TAURI_INTERNALS__.invoke('plugin:event|emit', { event: 'store-notice', payload: { message: m } }), message);
  const other = 'A second notice.';
  await page.evaluate((m) => window.__TAURI_INTERNALS__.invoke('plugin:event|emit', { event: 'store-notice', payload: { message: m } }), other);
  await page.getByRole('alert').filter({ hasText: other }).waitFor();
  assert.equal(await page.locator('.store-notice li', { hasText: message }).count(), 1);
  await page.getByRole('button', { name: 'Dismiss the database notice' }).click();
  assert.equal(await page.locator('.store-notice').count(), 0);
  assert.deepEqual(problems, []);
});

test('no notice at start-up shows no alert; a failing check says so', async () => {
  const { page } = await h.open({ fail: { take_store_notices: 'The database is locked.' } });
  await page.getByRole('alert').filter({ hasText: 'The database is locked.' }).waitFor();
  const quiet = await h.open();
  await quiet.page.locator('.empty').waitFor();
  assert.equal((await calls(quiet.page, 'take_store_notices')).length, 1);
  assert.equal(await quiet.page.locator('.store-notice').count(), 0);
});

test('images dropped on the set-up screen are not silently lost', async () => {
  const { page } = await h.open({ modelState: 'none' });
  await page.getByRole('heading', { name: 'Set up a model' }).waitFor();
  await emitDragDrop(page, 'enter', ['/home/u/cat.png']);
  await page.locator('.drop-overlay', { hasText: 'Load a model first' }).waitFor();
  await emitDragDrop(page, 'drop', ['/home/u/cat.png']);
  await page.locator('.toast', { hasText: 'Load a model first; then drop images into the chat.' }).waitFor();
  assert.equal((await calls(page, 'stage_image_path')).length, 0);
});
