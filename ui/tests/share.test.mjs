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

const story = { id: 'c1', title: 'Story', messages: [{ role: 'user', content: 'Tell a story' }, { role: 'assistant', content: 'Once upon a time.' }] };

/** A WebView with the Web Share API (as iOS has): records what was shared; `refuse` makes it fail. */
function shareSheet(refuse) {
  window.__shared = [];
  navigator.canShare = (data) => Array.isArray(data?.files);
  navigator.share = async (data) => {
    if (refuse) throw new DOMException('not allowed', 'NotAllowedError');
    for (const f of data.files) window.__shared.push({ name: f.name, type: f.type, text: await f.text() });
  };
}

async function exportStory(page) {
  const drawer = page.getByRole('button', { name: 'Show conversations' });
  if (await drawer.isVisible()) await drawer.click();
  await page.locator('.conv-open', { hasText: 'Story' }).click();
  await page.locator('.msg-assistant').waitFor();
  await page.getByRole('button', { name: 'Export conversation' }).click();
  await page.getByRole('menuitem', { name: 'Export as Markdown…' }).click();
}

test('on a phone whose WebView can share files, an export goes to the share sheet', async () => {
  const { page, context } = await h.open({ conversations: [story] }, { width: 390, height: 800, mobile: true });
  await context.addInitScript(shareSheet, false);
  await page.reload();
  await exportStory(page);
  await page.locator('.toast', { hasText: 'Shared.' }).waitFor();
  assert.deepEqual(await page.evaluate(() => window.__shared), [{ name: 'Story.md', type: 'text/markdown', text: '# Story\n' }]);
  assert.equal((await calls(page, 'save_export')).length, 0);
});

test('where sharing is missing or refused, the export falls back to the save dialog', async () => {
  const refused = await h.open({ conversations: [story], savePath: '/sdcard/Download/Story.md' }, { width: 390, height: 800, mobile: true });
  await refused.context.addInitScript(shareSheet, true);
  await refused.page.reload();
  await exportStory(refused.page);
  await refused.page.locator('.toast', { hasText: 'Saved to /sdcard/Download/Story.md' }).waitFor();

  // A desktop never uses the share sheet, even where the engine has one.
  const desktop = await h.open({ conversations: [story] });
  await desktop.context.addInitScript(shareSheet, false);
  await desktop.page.reload();
  await exportStory(desktop.page);
  await desktop.page.locator('.toast', { hasText: 'Saved to' }).waitFor();
  assert.equal((await calls(desktop.page, 'export_bytes')).length, 0);
});
