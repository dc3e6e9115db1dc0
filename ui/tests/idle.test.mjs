import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { calls, startHarness } from './support/harness.mjs';

let h;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

const model = { id: 'imp-v1-3b', name: 'Imp v1 3B', family: 'phi2', path: '/models/imp-v1-3b', imageSize: 384, visualTokens: 729, contextLength: 2048, quantization: 'f16', imageAspect: 'pad' };
const emitStatus = (page, status) =>
  page.evaluate((payload) => window.__TAURI_INTERNALS__.invoke('plugin:event|emit', { event: 'model-status', payload }), status);

test('the model pill follows the backend when it unloads an idle model and loads it again', async () => {
  const { page, problems } = await h.open({ modelState: 'ready' });
  await page.getByRole('button', { name: 'Model: Imp v1 3B. Change model' }).waitFor();

  await emitStatus(page, { state: 'ready', model, error: null, idle: true });
  await page.getByRole('button', { name: 'Model: Imp v1 3B, unloaded to free memory until the next message. Change model' }).waitFor();
  // Still "ready": the composer stays, and the next send reloads the model.
  assert.equal(await page.locator('#composer-input').count(), 1);

  await emitStatus(page, { state: 'ready', model, error: null, idle: false });
  await page.getByRole('button', { name: 'Model: Imp v1 3B. Change model' }).waitFor();
  assert.deepEqual(problems, []);
});

test('the idle-unload setting offers off, 5, 15 and 60 minutes and is saved', async () => {
  const { page } = await h.open({ modelState: 'ready' });
  await page.getByRole('button', { name: 'Settings' }).click();
  const select = page.getByLabel("Free the model's memory when idle");
  assert.equal(await select.inputValue(), 'off');
  assert.deepEqual(await select.locator('option').allInnerTexts(), ['Never', 'After 5 minutes idle', 'After 15 minutes idle', 'After 60 minutes idle']);
  await select.selectOption('15');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByText('Settings saved.').waitFor();
  assert.equal((await calls(page, 'set_settings'))[0].args.settings.idleUnloadMinutes, 15);

  await select.selectOption('off');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === 'set_settings').length === 2);
  assert.equal((await calls(page, 'set_settings'))[1].args.settings.idleUnloadMinutes, null);
});
