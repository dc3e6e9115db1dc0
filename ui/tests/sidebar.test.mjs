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

const three = {
  conversations: [
    { id: 'c1', title: 'Birds of Europe', updatedAt: 3, messages: [{ role: 'user', content: 'Which bird is this?' }, { role: 'assistant', content: 'A European robin.' }] },
    { id: 'c2', title: 'Receipt totals', updatedAt: 2, messages: [{ role: 'user', content: 'Add up this receipt' }, { role: 'assistant', content: 'The total is 23.40.' }] },
    { id: 'c3', title: 'Pinned plans', updatedAt: 1, pinned: true, messages: [] },
  ],
};
const titles = (page) => page.locator('.conv-open .conv-title').allInnerTexts();

test('pinned conversations are listed in their own section first', async () => {
  const { page } = await h.open(three);
  await page.locator('.conv-open').first().waitFor();
  assert.deepEqual(await page.locator('section[aria-labelledby="sec-pinned"] .conv-title').allInnerTexts(), ['Pinned plans']);
  assert.deepEqual(await page.locator('section[aria-labelledby="sec-recent"] .conv-title').allInnerTexts(), ['Birds of Europe', 'Receipt totals']);
  await page.getByRole('button', { name: 'Pin Receipt totals' }).click();
  await page.locator('section[aria-labelledby="sec-pinned"] .conv-title', { hasText: 'Receipt totals' }).waitFor();
  assert.deepEqual((await calls(page, 'pin_conversation')).map((c) => c.args), [{ id: 'c2', pinned: true }]);
});

test('delete moves a chat to the trash and Undo restores it', async () => {
  const { page } = await h.open(three);
  await page.locator('.conv-open', { hasText: 'Receipt totals' }).click();
  await page.locator('.messages').getByText('The total is 23.40.').waitFor();
  await page.getByRole('button', { name: 'Delete Receipt totals' }).click();
  const toast = page.locator('.toast', { hasText: 'Deleted “Receipt totals”.' });
  await toast.waitFor();
  assert.deepEqual(await titles(page), ['Pinned plans', 'Birds of Europe']);
  assert.equal(await page.locator('.messages').count(), 0, 'the deleted chat is closed');
  await toast.getByRole('button', { name: 'Undo' }).click();
  await page.locator('.conv-open', { hasText: 'Receipt totals' }).waitFor();
  assert.deepEqual((await calls(page, 'restore_conversation')).map((c) => c.args.id), ['c2']);
  assert.deepEqual(await titles(page), ['Pinned plans', 'Birds of Europe', 'Receipt totals']);
});

test('search finds messages, highlights the match and opens the chat', async () => {
  const { page } = await h.open(three);
  await page.getByRole('searchbox', { name: 'Search conversations' }).fill('robin');
  const results = page.getByRole('region', { name: 'Search results' });
  await results.locator('mark', { hasText: 'robin' }).waitFor();
  assert.equal(await results.locator('.hit').count(), 1);
  assert.match(await results.locator('.hit').innerText(), /Birds of Europe[\s\S]*A European robin\./);
  await results.locator('.hit').click();
  await page.locator('.messages').getByText('A European robin.').waitFor();
  assert.equal(await page.locator('.title').innerText(), 'Birds of Europe');
  await page.getByRole('searchbox', { name: 'Search conversations' }).fill('zebra');
  await results.getByText('Nothing matches.').waitFor();
  await page.getByRole('searchbox', { name: 'Search conversations' }).press('Escape');
  await page.locator('.conv-open').first().waitFor();
});

test('a conversation can be renamed inline', async () => {
  const { page } = await h.open(three);
  await page.getByRole('button', { name: 'Rename Birds of Europe' }).click();
  const input = page.getByLabel('New title for Birds of Europe');
  await input.fill('Garden birds');
  await input.press('Enter');
  await page.locator('.conv-open', { hasText: 'Garden birds' }).waitFor();
  assert.deepEqual((await calls(page, 'rename_conversation')).map((c) => c.args), [{ id: 'c1', title: 'Garden birds' }]);
  // Escape cancels without saving.
  await page.getByRole('button', { name: 'Rename Garden birds' }).click();
  await page.getByLabel('New title for Garden birds').fill('Nope');
  await page.getByLabel('New title for Garden birds').press('Escape');
  await page.locator('.conv-open', { hasText: 'Garden birds' }).waitFor();
  assert.equal((await calls(page, 'rename_conversation')).length, 1);
});

test('Ctrl+N starts a new chat and Ctrl+K focuses search', async () => {
  const { page } = await h.open(three);
  await page.locator('.conv-open', { hasText: 'Birds of Europe' }).click();
  await page.locator('.messages').waitFor();
  await page.keyboard.press('Control+k');
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label') === 'Search conversations');
  await page.keyboard.press('Control+n');
  await page.getByRole('heading', { name: 'What shall we look at?' }).waitFor();
  assert.equal(await page.locator('.title').innerText(), 'New chat');
  await page.waitForFunction(() => document.activeElement?.id === 'composer-input');
  // The new chat is created on first send, not before.
  assert.equal((await calls(page, 'create_conversation')).length, 0);
});

test('clicking through chats quickly shows the last one clicked', async () => {
  const { page } = await h.open({ ...three, slowConversation: 'c1' });
  await page.locator('.conv-open', { hasText: 'Birds of Europe' }).click();
  await page.locator('.conv-open', { hasText: 'Receipt totals' }).click();
  await page.locator('.messages').getByText('The total is 23.40.').waitFor();
  await page.waitForTimeout(600); // the slow answer for the first chat arrives now
  assert.equal(await page.locator('.title').innerText(), 'Receipt totals');
  assert.equal(await page.locator('.messages').getByText('A European robin.').count(), 0);
});
