import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { calls, emitDragDrop, makePng, startHarness } from './support/harness.mjs';

let h;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

const notice = (page) => page.locator('.composer-notice');

test('dropping an image shows the overlay, then a chip with the model preview', async () => {
  const { page, problems } = await h.open();
  await emitDragDrop(page, 'enter', ['/home/u/cat.png']);
  const overlay = page.locator('.drop-overlay');
  await overlay.waitFor();
  assert.match(await overlay.innerText(), /Drop images to attach them/);
  await emitDragDrop(page, 'over');
  await emitDragDrop(page, 'drop', ['/home/u/cat.png']);
  await overlay.waitFor({ state: 'detached' });

  const chip = page.locator('.chip', { hasText: 'cat.png' });
  await chip.locator('.chip-sub', { hasText: '729 visual tokens' }).waitFor();
  assert.deepEqual((await calls(page, 'stage_image_path')).map((c) => c.args.path), ['/home/u/cat.png']);
  assert.ok((await calls(page, 'image_preview')).length >= 1);

  await page.getByRole('button', { name: 'What the model sees for cat.png' }).click();
  const dialog = page.getByRole('dialog', { name: 'What the model sees: cat.png' });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /640×480 → 384×384, padded to a square, 729 visual tokens/);
  const size = await dialog.locator('img').evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  assert.deepEqual(size, [384, 384], 'the preview image is the real model input');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });

  // Sending carries the staged token, and the message shows the stored image as a thumbnail.
  await page.getByLabel('Message', { exact: true }).fill('What is this?');
  await page.keyboard.press('Enter');
  await page.locator('.stats').waitFor();
  const sent = (await calls(page, 'send_message'))[0].args;
  assert.equal(sent.imageTokens.length, 1);
  assert.equal(await page.locator('.chip').count(), 0, 'chips are cleared after sending');
  await page.locator('.msg-user .thumb-btn img').waitFor();
  assert.match(await page.locator('.stats').innerText(), /image encode 412 ms/);
  assert.deepEqual(problems, []);
});

test('a drag that leaves the window hides the overlay without staging anything', async () => {
  const { page } = await h.open();
  await emitDragDrop(page, 'enter', ['/home/u/cat.png']);
  await page.locator('.drop-overlay').waitFor();
  await emitDragDrop(page, 'leave');
  await page.locator('.drop-overlay').waitFor({ state: 'detached' });
  assert.equal((await calls(page, 'stage_image_path')).length, 0);
});

test('pasting an image from the clipboard stages its bytes', async () => {
  const { page } = await h.open();
  const png = [...makePng(32, 24)];
  await page.getByLabel('Message', { exact: true }).focus();
  await page.evaluate((bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'clip.png', { type: 'image/png' }));
    const ev = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
    document.activeElement.dispatchEvent(ev);
  }, png);
  await page.locator('.chip', { hasText: 'clip.png' }).locator('.chip-sub', { hasText: 'visual tokens' }).waitFor();
  const staged = await calls(page, 'stage_image_bytes');
  assert.equal(staged.length, 1);
  assert.equal(staged[0].args.byteLength, png.length, 'the raw file bytes are sent, unchanged');
  assert.equal(await page.getByLabel('Message', { exact: true }).inputValue(), '', 'no text was pasted');
});

test('the file picker stages several images, and a chip can be removed', async () => {
  const { page } = await h.open();
  await page.setInputFiles('#file-input', [
    { name: 'a.png', mimeType: 'image/png', buffer: makePng(20, 20) },
    { name: 'b.png', mimeType: 'image/png', buffer: makePng(30, 10) },
  ]);
  await page.locator('.chip[data-state="ready"]').nth(1).waitFor();
  assert.equal(await page.locator('.chip').count(), 2);
  await page.getByRole('button', { name: 'Remove a.png' }).click();
  assert.deepEqual(await page.locator('.chip-name').allInnerTexts(), ['b.png']);
});

test('a PDF is rejected before upload with a clear message', async () => {
  const { page } = await h.open();
  await page.setInputFiles('#file-input', { name: 'report.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.7 fake') });
  await notice(page).getByText('report.pdf: This is a PDF document, not an image. Take a screenshot of the page or export it as PNG, and try again.').waitFor();
  assert.equal((await calls(page, 'stage_image_bytes')).length, 0);
  assert.equal(await page.locator('.chip').count(), 0);
  // Dropped PDFs are caught by name before the backend is asked.
  await emitDragDrop(page, 'drop', ['/home/u/scan.pdf']);
  await notice(page).getByText('scan.pdf: This is a PDF document, not an image.', { exact: false }).waitFor();
  await emitDragDrop(page, 'drop', ['/home/u/notes.txt']);
  await notice(page).getByText('notes.txt: This file is not an image ImpChat recognises (it reads JPEG, PNG, WebP, GIF, BMP and TIFF).', { exact: false }).waitFor();
  assert.equal((await calls(page, 'stage_image_path')).length, 0);
});

test('an empty file is rejected, and the app keeps working', async () => {
  const { page } = await h.open();
  await page.setInputFiles('#file-input', { name: 'empty.png', mimeType: 'image/png', buffer: Buffer.alloc(0) });
  await notice(page).getByText('empty.png: The file is empty (0 bytes). Pick the image again; if it was downloading, wait for it to finish.').waitFor();
  assert.equal((await calls(page, 'stage_image_bytes')).length, 0);
  await page.getByRole('button', { name: 'Dismiss message' }).click();
  assert.equal(await notice(page).innerText(), '');
  await page.getByLabel('Message', { exact: true }).fill('still fine');
  await page.keyboard.press('Enter');
  await page.locator('.stats').waitFor();
});

test('backend rejections of dropped files are shown inline', async () => {
  const { page } = await h.open();
  await emitDragDrop(page, 'drop', ['/home/u/huge.png', '/home/u/empty.png']);
  await notice(page).getByText('huge.png: The file is 200 MiB; ImpChat accepts images up to 64 MiB. Shrink or re-compress it and try again.').waitFor();
  await notice(page).getByText('empty.png: The file is empty (0 bytes).', { exact: false }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.chip').length === 0);
  assert.equal((await calls(page, 'stage_image_path')).length, 2);
});

test('a stored image opens in a keyboard-accessible lightbox', async () => {
  const img = { sha256: 'abc', mime: 'image/png', width: 640, height: 480, bytes: 1000 };
  const { page } = await h.open({
    conversations: [{ id: 'c1', title: 'Photo', messages: [{ role: 'user', content: 'Look', images: [img] }, { role: 'assistant', content: 'A gradient.' }] }],
  });
  await page.locator('.conv-open', { hasText: 'Photo' }).click();
  const thumb = page.getByRole('button', { name: 'Open image 1 of 1 (640×480)' });
  await thumb.locator('img').waitFor();
  await thumb.focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Image' });
  await dialog.locator('img').waitFor();
  assert.deepEqual(await dialog.locator('img').evaluate((i) => [i.naturalWidth, i.naturalHeight]), [640, 480]);
  assert.ok(await page.evaluate(() => document.activeElement?.closest('[role=dialog]') !== null), 'focus moves into the lightbox');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Open image 1 of 1 (640×480)', 'focus returns to the thumbnail');
  const gets = await calls(page, 'get_image');
  assert.ok(gets.some((c) => c.args.thumbnail === true) && gets.some((c) => c.args.thumbnail === false));
});

test('an image over the size limit is rejected before upload', async () => {
  const { page } = await h.open();
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(65 * 1024 * 1024)], 'huge.png', { type: 'image/png' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  });
  await notice(page).getByText('huge.png: The file is 65 MiB; ImpChat accepts images up to 64 MiB. Shrink or re-compress it and try again.').waitFor();
  assert.equal((await calls(page, 'stage_image_bytes')).length, 0);
});
