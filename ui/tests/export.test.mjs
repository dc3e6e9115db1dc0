import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { axe, calls, startHarness } from './support/harness.mjs';

let h;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

const story = { id: 'c1', title: 'Story', messages: [{ role: 'user', content: 'Tell a story' }, { role: 'assistant', content: 'Once upon a time.' }] };

async function openStory(backend) {
  const opened = await h.open({ conversations: [story], ...backend });
  await opened.page.locator('.conv-open', { hasText: 'Story' }).click();
  await opened.page.locator('.msg-assistant').waitFor();
  return opened;
}

test('the export menu saves the open conversation where the user chose, by keyboard too', async () => {
  const { page, problems } = await openStory({ savePath: '/home/user/Documents/Story.md' });
  const button = page.getByRole('button', { name: 'Export conversation' });
  assert.equal(await button.getAttribute('aria-expanded'), 'false');
  await button.click();
  const menu = page.getByRole('menu');
  await menu.waitFor();
  assert.equal(await button.getAttribute('aria-expanded'), 'true');
  assert.deepEqual(await menu.getByRole('menuitem').allInnerTexts(), ['Export as Markdown…', 'Export as archive (.zip)…']);
  await axe(page, 'export menu open');
  // Focus starts on the first item; arrows move it and wrap.
  await page.waitForFunction(() => document.activeElement?.getAttribute('role') === 'menuitem');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Export as Markdown…');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Export as archive (.zip)…');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Export as Markdown…');
  await page.keyboard.press('Enter');
  await page.locator('.toast', { hasText: 'Saved to /home/user/Documents/Story.md' }).waitFor();
  assert.equal(await menu.count(), 0);
  const [call] = await calls(page, 'save_export');
  assert.deepEqual(call.args, { id: 'c1', format: 'markdown' });
  assert.deepEqual(problems, []);
});

test('cancelling the save dialog does nothing; Escape closes the menu and returns focus', async () => {
  const { page } = await openStory({ savePath: null });
  const button = page.getByRole('button', { name: 'Export conversation' });
  // Escape closes the menu even before focus has moved into it.
  await button.click();
  await page.keyboard.press('Escape');
  assert.equal(await page.getByRole('menu').count(), 0);
  // The arrow key opens it from the button too.
  await button.focus();
  await page.keyboard.press('ArrowDown');
  await page.waitForFunction(() => document.activeElement?.getAttribute('role') === 'menuitem');
  await page.keyboard.press('Escape');
  assert.equal(await page.getByRole('menu').count(), 0);
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Export conversation');
  await button.click();
  await page.getByRole('menuitem', { name: 'Export as archive (.zip)…' }).click();
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === 'save_export'));
  await page.waitForTimeout(200);
  assert.equal(await page.locator('.toast').count(), 0, 'a cancelled export says nothing');
  const [call] = await calls(page, 'save_export');
  assert.deepEqual(call.args, { id: 'c1', format: 'zip' });
});

test('a failed export shows why', async () => {
  const reason = 'Could not write /media/usb/Story.zip: the disk is full. Free some space or choose another place.';
  const { page } = await openStory({ fail: { save_export: reason } });
  await page.getByRole('button', { name: 'Export conversation' }).click();
  await page.getByRole('menuitem', { name: 'Export as archive (.zip)…' }).click();
  await page.locator('.toast', { hasText: `Export failed: ${reason}` }).waitFor();
});

test('settings export every conversation, and report where', async () => {
  const { page } = await openStory({ savePath: '/home/user/all.zip' });
  await page.getByRole('button', { name: 'Settings' }).click();
  const group = page.getByRole('group', { name: 'Export all conversations' });
  await axe(page, 'settings with export buttons');
  await group.getByRole('button', { name: 'Export all as archive (.zip)…' }).click();
  await page.getByText('Saved to /home/user/all.zip').waitFor();
  const [call] = await calls(page, 'save_export');
  assert.deepEqual(call.args, { id: null, format: 'zip' });
});

test('no export button without an open conversation', async () => {
  const { page } = await h.open();
  await page.locator('.empty').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Export conversation' }).count(), 0);
});
