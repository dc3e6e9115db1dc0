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

const firstCard = (page) => page.locator('.catalog .card').first();

test('Download shows one progress bar with bytes, speed and time left, then Load uses the installed model', async () => {
  const { page, problems } = await h.open({ modelState: 'none', download: { steps: 6, stepMs: 150 } });
  const card = firstCard(page);
  await card.getByRole('button', { name: 'Download Imp v1 3B' }).click();

  const bar = card.getByRole('progressbar', { name: 'Downloading Imp v1 3B' });
  await bar.waitFor();
  await card.getByText(/of 6\.0 GB · 12 MB\/s · about \d+ (s|min) left/).waitFor();
  const now = Number(await bar.getAttribute('aria-valuenow'));
  assert.ok(now > 0 && now < 100, `aria-valuenow ${now}`);
  assert.equal(await page.getByRole('progressbar').count(), 1, 'one bar for the one download');
  // Only one download at a time: the other cards wait.
  assert.equal(await page.getByRole('button', { name: 'Download Imp v1.5 2B (Qwen1.5)' }).isDisabled(), true);

  const load = card.getByRole('button', { name: 'Load Imp v1 3B' });
  await load.waitFor();
  await card.getByText(/Installed · commit 0123456789/).waitFor();
  assert.deepEqual(
    (await calls(page, 'download_model')).map((c) => [c.args.id, c.args.quant]),
    [['imp-v1-3b', 'q4_k_m']],
  );
  await load.click();
  await page.getByRole('heading', { name: 'What shall we look at?' }).waitFor();
  assert.deepEqual((await calls(page, 'load_model')).map((c) => c.args.path), ['/data/models/imp-v1-3b/imp-v1-3b-Q4_K_M.gguf']);
  assert.deepEqual(problems, []);
});

test('the chosen format is what gets downloaded', async () => {
  const { page } = await h.open({ modelState: 'none', download: { steps: 1, stepMs: 10 } });
  const card = firstCard(page);
  await card.getByLabel('Format').selectOption('f16');
  await card.getByText(/needs 6\.7 GB memory at 2048 tokens/).waitFor();
  await card.getByRole('button', { name: 'Download Imp v1 3B' }).click();
  await card.getByRole('button', { name: 'Load Imp v1 3B' }).waitFor();
  assert.deepEqual((await calls(page, 'download_model')).map((c) => c.args.quant), ['f16']);
});

test('Cancel stops the download, says what was kept, and Resume continues', async () => {
  const { page } = await h.open({ modelState: 'none', download: { steps: 8, stepMs: 200 } });
  const card = firstCard(page);
  await card.getByRole('button', { name: 'Download Imp v1 3B' }).click();
  await card.getByRole('progressbar').waitFor();
  await card.getByRole('button', { name: 'Cancel the download of Imp v1 3B' }).click();
  await card.getByRole('status').getByText(/cancelled; the part downloaded so far is kept/).waitFor();
  assert.equal(await card.getByRole('progressbar').count(), 0);
  assert.deepEqual((await calls(page, 'cancel_download')).map((c) => c.args.id), ['imp-v1-3b']);

  await card.getByRole('button', { name: 'Resume the download of Imp v1 3B' }).click();
  await card.getByRole('button', { name: 'Load Imp v1 3B' }).waitFor({ timeout: 10_000 });
  assert.equal((await calls(page, 'download_model')).length, 2);
});

test('a download interrupted earlier offers to resume with the kept size', async () => {
  const catalog = [
    { id: 'imp-v1.5-3b-196', name: 'Imp v1.5 3B 196px', repo: 'MILVLG/Imp-v1.5-3B-196', family: 'phi2', params: '3.2B', imageSize: 196, visualTokens: 196, license: 'Apache-2.0', goodAt: 'Phones', downloadBytes: 6_000_000_000, ramBytes: 7_000_000_000, fits: 'yes', partialBytes: 2_500_000_000, suggested: true },
  ];
  const { page } = await h.open({ modelState: 'none', catalog });
  const card = firstCard(page);
  await card.getByText('Suggested for this device').waitFor();
  await card.getByRole('button', { name: 'Resume the download of Imp v1.5 3B 196px' }).getByText('Resume download (2.3 GB kept)').waitFor();
});

for (const [what, failure] of [
  ['offline', { kind: 'download', message: 'the model server could not be reached (connection refused); check the internet connection and press Retry' }],
  ['a missing file', { kind: 'not_found', message: 'the model server has no config.json in MILVLG/imp-v1-3b (HTTP 404)' }],
  ['a full disk', { kind: 'io', message: 'the disk is full: /data/models/.staging/imp-v1-3b/model.part could not be written; free 6.4 GB or more and press Retry' }],
  ['a damaged file', { kind: 'download', message: 'model-00001-of-00002.safetensors arrived damaged (its SHA-256 does not match the server\'s) and was deleted; press Retry to download it again' }],
]) {
  test(`${what} is explained and Retry downloads again`, async () => {
    const { page } = await h.open({ modelState: 'none', download: { steps: 2, stepMs: 20, errors: [failure] } });
    const card = firstCard(page);
    await card.getByRole('button', { name: 'Download Imp v1 3B' }).click();
    await card.getByRole('alert').getByText(failure.message).waitFor();
    assert.equal(await card.getByRole('progressbar').count(), 0);
    await card.getByRole('button', { name: 'Retry the download of Imp v1 3B' }).click();
    await card.getByRole('button', { name: 'Load Imp v1 3B' }).waitFor();
    assert.equal(await card.getByRole('alert').count(), 0);
  });
}
