import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { axe, emitDragDrop, screenshot, startHarness } from './support/harness.mjs';

let h;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

const photo = { sha256: 'photo-1', mime: 'image/png', width: 640, height: 480, bytes: 184_000 };
const stats = { images: 1, imageEncodeMs: 412, promptTokens: 812, promptTokensComputed: 812, promptMs: 950, timeToFirstTokenMs: 1234, generatedTokens: 96, decodeMs: 10_500, decodeTokensPerS: 9.1, stopReason: 'end_of_turn' };
const answer = [
  'This looks like a **European robin** (*Erithacus rubecula*) perched on a branch.',
  '',
  '- Orange-red face and breast',
  '- Olive-brown back, pale belly',
  '- Thin, pointed beak for insects',
  '',
  'Its wingspan is roughly $20$–$22$ cm. To count birds in a photo you could use:',
  '',
  '```python',
  'def count(labels):',
  '    return sum(1 for l in labels if l == "robin")',
  '```',
].join('\n');
const demo = {
  conversations: [
    { id: 'c1', title: 'Which bird is this?', updatedAt: 5, messages: [{ role: 'user', content: 'Which bird is this?', images: [photo] }, { role: 'assistant', content: answer, stats }] },
    { id: 'c2', title: 'Receipt totals', updatedAt: 4, messages: [{ role: 'user', content: 'Add up this receipt' }, { role: 'assistant', content: 'The total is 23.40.', status: 'stopped' }] },
    { id: 'c3', title: 'Whiteboard notes', updatedAt: 3, messages: [] },
    { id: 'c4', title: 'Plant diagnosis', updatedAt: 2, pinned: true, messages: [] },
    { id: 'c5', title: 'Chart explained', updatedAt: 1, messages: [] },
  ],
};

async function openDemoChat(theme, viewport) {
  const opened = await h.open({ ...demo, theme }, { ...viewport, colorScheme: theme });
  const { page } = opened;
  if (viewport?.width && viewport.width < 700) {
    await page.getByRole('button', { name: 'Show conversations' }).click();
  }
  await page.locator('.conv-open', { hasText: 'Which bird is this?' }).click();
  await page.locator('.msg-user .thumb-btn img').waitFor();
  await page.locator('.katex').first().waitFor();
  return opened;
}

async function noHorizontalScroll(page) {
  const overflow = await page.evaluate(() => {
    const wide = [];
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      if (style.visibility === 'hidden' || r.width === 0 || el.closest('.sidebar, pre, .katex-display, table')) continue;
      if (r.right > window.innerWidth + 1) wide.push(`${el.tagName}.${el.className}`);
    }
    return { doc: document.documentElement.scrollWidth - window.innerWidth, wide: wide.slice(0, 5) };
  });
  assert.equal(overflow.doc, 0, 'the page does not scroll sideways');
  assert.deepEqual(overflow.wide, [], 'nothing sticks out of the window');
}

test('chat screen: answer with an image, in light and dark, passes an axe scan', async () => {
  for (const theme of ['light', 'dark']) {
    const { page, problems } = await openDemoChat(theme, { width: 1280, height: 820 });
    await page.setInputFiles('#file-input', { name: 'robin-2.jpg', mimeType: 'image/jpeg', buffer: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]) });
    await page.locator('.chip .chip-sub', { hasText: 'visual tokens' }).waitFor();
    await page.getByLabel('Message', { exact: true }).fill('And how big does it get?');
    await axe(page, `chat ${theme}`);
    await page.evaluate(() => document.activeElement.blur());
    await screenshot(page, `chat-${theme}`);
    assert.deepEqual(problems, []);
  }
});

test('set-up screen and settings pass an axe scan in both themes', async () => {
  for (const theme of ['light', 'dark']) {
    const setup = await h.open({ modelState: 'none', theme }, { width: 1280, height: 820, colorScheme: theme });
    await setup.page.locator('.catalog .card').first().waitFor();
    await axe(setup.page, `setup ${theme}`);
    if (theme === 'light') await screenshot(setup.page, 'setup');

    const { page } = await openDemoChat(theme, { width: 1280, height: 820 });
    await page.getByRole('button', { name: 'Settings' }).click();
    await page.getByLabel('System prompt for this chat').waitFor();
    await axe(page, `settings ${theme}`);
    if (theme === 'light') await screenshot(page, 'settings');
  }
});

test('drop overlay covers the whole window', async () => {
  const { page } = await openDemoChat('light', { width: 1280, height: 820 });
  await emitDragDrop(page, 'enter', ['/home/u/cat.png']);
  const box = await page.locator('.drop-overlay').boundingBox();
  assert.deepEqual([box.x, box.y, box.width, box.height], [0, 0, 1280, 820]);
  await screenshot(page, 'drop');
});

test('at 360 px the sidebar is a drawer and nothing scrolls sideways', async () => {
  const { page, problems } = await h.open(demo, { width: 360, height: 740 });
  const sidebar = page.locator('.sidebar');
  await page.getByRole('heading', { name: 'What shall we look at?' }).waitFor();
  assert.equal(await sidebar.isVisible(), false, 'the drawer starts closed');
  await noHorizontalScroll(page);

  const toggle = page.getByRole('button', { name: 'Show conversations' });
  assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
  await toggle.click();
  await page.waitForFunction(() => getComputedStyle(document.querySelector('.sidebar')).transform === 'none');
  assert.equal(await sidebar.isVisible(), true);
  assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
  await page.waitForFunction(() => document.activeElement?.classList.contains('new-chat'));
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => getComputedStyle(document.querySelector('.sidebar')).visibility === 'hidden');
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label') === 'Show conversations');

  await toggle.click();
  await page.locator('.conv-open', { hasText: 'Which bird is this?' }).click();
  await page.locator('.katex').first().waitFor();
  await page.waitForFunction(() => getComputedStyle(document.querySelector('.sidebar')).visibility === 'hidden');
  await noHorizontalScroll(page);
  await axe(page, 'chat at 360 px');
  assert.deepEqual(problems, []);
});

test('keyboard only: Tab reaches every control in order, each with a focus ring', async () => {
  const { page } = await h.open({ ...demo, theme: 'light' }, { width: 1280, height: 820 });
  await page.locator('.conv-open').first().waitFor();
  const focused = () =>
    page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const ringOf = (e) => e && getComputedStyle(e).outlineStyle !== 'none' && parseFloat(getComputedStyle(e).outlineWidth) >= 2;
      return { name: el.getAttribute('aria-label') ?? el.textContent?.trim().slice(0, 30) ?? el.tagName, ring: ringOf(el) || ringOf(el.parentElement) };
    });
  const seen = [];
  // Find the conversation with Tab and open it with Enter, as a keyboard user would.
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press('Tab');
    const f = await focused();
    if (f) seen.push(f);
    if (f?.name === 'Which bird is this?') break;
  }
  await page.keyboard.press('Enter');
  await page.locator('.katex').first().waitFor();
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    const f = await focused();
    if (f) seen.push(f);
  }
  const names = seen.map((s) => s.name);
  const at = (label) => names.findIndex((n) => n.includes(label));
  const order = ['New chat', 'Search conversations', 'Which bird is this?', 'Settings', 'Open image 1 of 1', 'Copy python code', 'Copy answer', 'Regenerate answer', 'Attach images', 'Message'];
  for (const label of order) assert.ok(at(label) >= 0, `Tab reaches "${label}" (got ${names.join(', ')})`);
  for (let i = 1; i < order.length; i++) assert.ok(at(order[i - 1]) < at(order[i]), `"${order[i - 1]}" comes before "${order[i]}"`);
  assert.deepEqual(seen.filter((s) => !s.ring).map((s) => s.name), [], 'focused controls show a focus ring');
});
