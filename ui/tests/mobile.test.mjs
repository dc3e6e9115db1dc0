// The UI on phones (the Tauri Android/iOS build): Chromium's mobile emulation gives touch, a
// coarse pointer, no hover and a 3x screen. Everything here is driven with taps.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { axe, calls, emitDragDrop, makePng, screenshot, startHarness } from './support/harness.mjs';

let h;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

const PHONES = [
  { width: 360, height: 740 },
  { width: 390, height: 844 },
  { width: 430, height: 932 },
];
const photo = { sha256: 'photo-1', mime: 'image/png', width: 640, height: 480, bytes: 184_000 };
const stats = { images: 1, imageEncodeMs: 412, promptTokens: 812, promptTokensComputed: 812, promptMs: 950, timeToFirstTokenMs: 1234, generatedTokens: 96, decodeMs: 10_500, decodeTokensPerS: 9.1, stopReason: 'end_of_turn' };
const answer = ['This looks like a **European robin** perched on a branch.', '', '- Orange-red face and breast', '- Olive-brown back, pale belly', '', '```python', 'print("robin")', '```'].join('\n');
const demo = {
  conversations: [
    { id: 'c1', title: 'Which bird is this?', updatedAt: 5, messages: [{ role: 'user', content: 'Which bird is this?', images: [photo] }, { role: 'assistant', content: answer, stats }] },
    { id: 'c2', title: 'Receipt totals', updatedAt: 4, messages: [{ role: 'user', content: 'Add up this receipt' }, { role: 'assistant', content: 'The total is 23.40.', status: 'stopped' }] },
    { id: 'c3', title: 'Plant diagnosis', updatedAt: 2, pinned: true, messages: [] },
  ],
};

const openPhone = (backend, phone = PHONES[0]) => h.open(backend, { ...phone, mobile: true });
const drawerOpen = (page) => page.waitForFunction(() => getComputedStyle(document.querySelector('.sidebar')).transform === 'none');
const drawerClosed = (page) => page.waitForFunction(() => getComputedStyle(document.querySelector('.sidebar')).visibility === 'hidden');

async function openChatByTap(page, title) {
  await page.tap('button[aria-label="Show conversations"]');
  await drawerOpen(page);
  await page.locator('.conv-open', { hasText: title }).tap();
  await drawerClosed(page);
  await page.locator('.msg-assistant .stats, .msg-assistant .status-badge').first().waitFor();
}

/** Every visible button, link and form field smaller than 44×44 CSS px, named for the message. */
async function smallTargets(page) {
  return await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('button, a[href], input, select, textarea, [role="button"]')) {
      // Hidden file inputs are opened by their buttons; links inside running text are exempt (WCAG 2.5.8).
      if (el.closest('.sr-only') || el.closest('.markdown p, .markdown li')) continue;
      if (!el.checkVisibility({ visibilityProperty: true })) continue;
      const r = el.getBoundingClientRect();
      if (r.width < 44 || r.height < 44) {
        const name = el.getAttribute('aria-label') ?? (el.textContent?.trim() || el.getAttribute('type') || el.id || el.tagName);
        out.push(`${el.tagName.toLowerCase()} "${name}" ${Math.round(r.width)}×${Math.round(r.height)}`);
      }
    }
    return out;
  });
}

async function assertFits(page, label) {
  const overflow = await page.evaluate(() => {
    const wide = [];
    for (const el of document.querySelectorAll('body *')) {
      if (!el.checkVisibility({ visibilityProperty: true }) || el.closest('pre, .katex-display, table')) continue;
      const r = el.getBoundingClientRect();
      if (r.width > 0 && (r.right > window.innerWidth + 1 || r.left < -1)) wide.push(`${el.tagName.toLowerCase()}.${el.className}`);
    }
    return { doc: document.documentElement.scrollWidth - window.innerWidth, wide: wide.slice(0, 6) };
  });
  assert.equal(overflow.doc, 0, `${label}: the page does not scroll sideways`);
  assert.deepEqual(overflow.wide, [], `${label}: nothing sticks out of the screen`);
  const small = await smallTargets(page);
  assert.deepEqual(small, [], `${label}: targets under 44×44 px: ${small.join(', ')}`);
}

test('on 360, 390 and 430 px phones chat, drawer, set-up and settings fit the width with 44 px targets', async () => {
  for (const phone of PHONES) {
    const at = `${phone.width}×${phone.height}`;
    const { page, problems } = await openPhone(demo, phone);
    await openChatByTap(page, 'Which bird is this?');
    await page.setInputFiles('#file-input', { name: 'a-rather-long-photo-name-from-the-camera-roll.png', mimeType: 'image/png', buffer: makePng(64, 48) });
    await page.locator('.chip .chip-sub', { hasText: 'visual tokens' }).waitFor();
    await assertFits(page, `chat at ${at}`);
    if (phone.width === 390) {
      await page.evaluate(() => document.activeElement?.blur());
      await screenshot(page, 'mobile-chat');
    }

    // A stopped answer adds "Continue"; a second version adds the version switcher.
    await openChatByTap(page, 'Receipt totals');
    await page.getByRole('button', { name: 'Regenerate answer' }).tap();
    await page.getByRole('group', { name: 'Versions of this message' }).waitFor();
    await page.locator('.msg-assistant .stats').waitFor();
    await assertFits(page, `stopped chat with versions at ${at}`);

    await page.tap('button[aria-label="Show conversations"]');
    await drawerOpen(page);
    await assertFits(page, `drawer at ${at}`);
    if (phone.width === 390) await screenshot(page, 'mobile-drawer');
    await page.tap('button[aria-label="Close conversation list"]');
    await drawerClosed(page);

    await page.tap('button[aria-label="Settings"]');
    await page.getByLabel('System prompt for this chat').waitFor();
    await assertFits(page, `settings at ${at}`);
    if (phone.width === 390) await screenshot(page, 'mobile-settings');
    assert.deepEqual(problems, []);

    const setup = await openPhone({ modelState: 'none' }, phone);
    await setup.page.locator('.catalog .card').first().waitFor();
    await assertFits(setup.page, `set-up at ${at}`);
    if (phone.width === 390) await screenshot(setup.page, 'mobile-setup');
    assert.deepEqual(setup.problems, []);
  }
});

test('the drawer opens with a tap and closes with a tap on the scrim', async () => {
  const { page } = await openPhone(demo);
  const sidebar = page.locator('.sidebar');
  const toggle = page.getByRole('button', { name: 'Show conversations' });
  assert.equal(await sidebar.isVisible(), false, 'the drawer starts closed');
  await toggle.tap();
  await drawerOpen(page);
  assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
  const drawer = await sidebar.boundingBox();
  assert.ok(drawer.width < 360, 'the drawer leaves part of the chat (the scrim) to tap');
  // Tap the dimmed chat to the right of the drawer.
  await page.touchscreen.tap(drawer.width + (360 - drawer.width) / 2, 400);
  await drawerClosed(page);
  assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
  assert.equal(await page.locator('.scrim').isVisible(), false);
});

test('by touch: pick an image with the file picker, type, and send', async () => {
  const { page, problems } = await openPhone({}, PHONES[1]);
  const chooser = page.waitForEvent('filechooser');
  await page.getByRole('button', { name: 'Attach images' }).tap();
  const picker = await chooser;
  assert.equal(picker.isMultiple(), true, 'several images can be picked at once');
  assert.equal(await picker.element().getAttribute('accept'), 'image/*');
  await picker.setFiles({ name: 'street.png', mimeType: 'image/png', buffer: makePng(80, 60) });
  await page.locator('.chip', { hasText: 'street.png' }).locator('.chip-sub', { hasText: 'visual tokens' }).waitFor();

  await page.getByLabel('Message', { exact: true }).tap();
  await page.keyboard.type('What street is this?');
  await page.getByRole('button', { name: 'Send message' }).tap();
  await page.locator('.msg-user', { hasText: 'What street is this?' }).locator('.thumb-btn img').waitFor();
  await page.locator('.msg-assistant .stats').waitFor();
  const sent = (await calls(page, 'send_message'))[0].args;
  assert.equal(sent.text, 'What street is this?');
  assert.equal(sent.imageTokens.length, 1, 'the picked image is sent with the message');
  assert.equal(await page.locator('.chip').count(), 0, 'the composer is cleared');
  assert.deepEqual(problems, []);
});

test('"Take photo" opens the camera on touch screens only; drop hints are desktop-only', async () => {
  const { page } = await openPhone({});
  const camera = page.locator('#camera-input');
  assert.equal(await camera.getAttribute('capture'), 'environment');
  assert.equal(await camera.getAttribute('accept'), 'image/*');
  const chooser = page.waitForEvent('filechooser');
  await page.getByRole('button', { name: 'Take photo' }).tap();
  const picker = await chooser;
  assert.equal(await picker.element().getAttribute('id'), 'camera-input', 'the tap opens the camera input');
  await picker.setFiles({ name: 'photo.png', mimeType: 'image/png', buffer: makePng(40, 30) });
  await page.locator('.chip', { hasText: 'photo.png' }).waitFor();

  const empty = await page.locator('.empty').innerText();
  assert.doesNotMatch(empty, /drop/i, 'a phone is not told to drop files');
  assert.match(empty, /take a photo/i);
  await emitDragDrop(page, 'enter', ['/sdcard/a.png']);
  await page.waitForTimeout(100);
  assert.equal(await page.locator('.drop-overlay').count(), 0, 'no drop overlay on a touch screen');

  const desktop = await h.open({});
  await desktop.page.getByRole('button', { name: 'Attach images' }).waitFor();
  assert.equal(await desktop.page.getByRole('button', { name: 'Take photo' }).count(), 0, 'no camera button with a mouse');
  assert.equal(await desktop.page.locator('input[capture]').count(), 0);
  assert.match(await desktop.page.locator('.empty').innerText(), /Drop, paste or attach/);
});

test('message and conversation actions are visible without hover and work by tap', async () => {
  const { page } = await openPhone(demo);
  await openChatByTap(page, 'Which bird is this?');
  const copy = page.getByRole('button', { name: 'Copy answer' });
  const regenerate = page.getByRole('button', { name: 'Regenerate answer' });
  for (const action of [copy, regenerate, page.getByRole('button', { name: 'Copy your message' }), page.getByRole('button', { name: 'Edit and resend' })]) {
    assert.equal(await action.isVisible(), true);
    assert.equal(await action.evaluate((el) => getComputedStyle(el.parentElement).opacity), '1', 'shown without hovering');
  }
  await copy.tap();
  await page.getByText('Copied to the clipboard.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), answer);
  await regenerate.tap();
  await page.locator('.messages').getByText('A regenerated answer.').waitFor();

  await page.tap('button[aria-label="Show conversations"]');
  await drawerOpen(page);
  const pin = page.getByRole('button', { name: 'Pin Receipt totals' });
  assert.equal(await pin.evaluate((el) => getComputedStyle(el.parentElement).opacity), '1', 'row actions shown without hovering');
  await pin.tap();
  await page.getByRole('button', { name: 'Unpin Receipt totals' }).waitFor();
  assert.deepEqual((await calls(page, 'pin_conversation')).map((c) => c.args.pinned), [true]);
});

test('the composer stays on screen above the on-screen keyboard', async () => {
  const { page } = await openPhone(demo, PHONES[1]);
  await openChatByTap(page, 'Which bird is this?');
  await page.getByLabel('Message', { exact: true }).tap();
  // With interactive-widget=resizes-content the keyboard shrinks the viewport, as here.
  const keyboardUp = { width: 390, height: 844 - 336 };
  await page.setViewportSize(keyboardUp);
  await page.waitForFunction((h) => document.querySelector('.composer').getBoundingClientRect().bottom <= h, keyboardUp.height);
  const composer = await page.locator('.composer-row').boundingBox();
  const send = await page.getByRole('button', { name: 'Send message' }).boundingBox();
  assert.ok(composer.y >= 0 && composer.y + composer.height <= keyboardUp.height, `composer inside the visible ${keyboardUp.height} px: ${JSON.stringify(composer)}`);
  assert.ok(send.y + send.height <= keyboardUp.height, 'the send button is above the keyboard');
  const bar = await page.locator('.topbar').boundingBox();
  assert.equal(bar.y, 0, 'the top bar stays put');
  assert.equal(await page.evaluate(() => document.scrollingElement.scrollTop), 0, 'the page itself did not scroll');
});

test('safe-area insets keep the top bar, drawer and composer clear of the notch and home indicator', async () => {
  const { page } = await openPhone(demo, PHONES[1]);
  const cdp = await page.context().newCDPSession(page);
  const insets = { top: 47, bottom: 34, left: 0, right: 0 };
  await cdp.send('Emulation.setSafeAreaInsetsOverride', { insets });
  await page.waitForFunction(() => document.querySelector('.topbar').getBoundingClientRect().height > 60);
  const toggle = await page.getByRole('button', { name: 'Show conversations' }).boundingBox();
  assert.ok(toggle.y >= insets.top, `the drawer button is below the notch (y=${toggle.y})`);
  const row = await page.locator('.composer-row').boundingBox();
  assert.ok(row.y + row.height <= 844 - insets.bottom, `the composer is above the home indicator (bottom=${row.y + row.height})`);
  await page.tap('button[aria-label="Show conversations"]');
  await drawerOpen(page);
  const brand = await page.locator('.sidebar .drawer-close').boundingBox();
  assert.ok(brand.y >= insets.top, 'the drawer content starts below the notch');
});

test('at 360 px chat, drawer, set-up and settings pass an axe scan', async () => {
  const { page, problems } = await openPhone(demo);
  await openChatByTap(page, 'Which bird is this?');
  await axe(page, 'chat at 360 px');
  await page.tap('button[aria-label="Show conversations"]');
  await drawerOpen(page);
  await axe(page, 'drawer at 360 px');
  await page.touchscreen.tap(350, 400);
  await drawerClosed(page);
  await page.tap('button[aria-label="Settings"]');
  await page.getByLabel('System prompt for this chat').waitFor();
  await axe(page, 'settings at 360 px');
  const setup = await openPhone({ modelState: 'none' });
  await setup.page.locator('.catalog .card').first().waitFor();
  await axe(setup.page, 'set-up at 360 px');
  assert.deepEqual([...problems, ...setup.problems], []);
});
