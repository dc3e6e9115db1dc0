import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startHarness } from './support/harness.mjs';

let h;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

async function ask(page, question) {
  await page.getByLabel('Message', { exact: true }).fill(question);
  await page.keyboard.press('Enter');
  await page.locator('.stats').waitFor();
  return page.locator('.msg-assistant .markdown').last();
}

test('model text cannot run script: HTML is shown as text and javascript: links are dropped', async () => {
  const evil = [
    'Look: <img src=x onerror="window.__pwned=1"> and <script>window.__pwned=1</script>',
    '',
    '[click me](javascript:window.__pwned=1) <a href="javascript:window.__pwned=1">raw link</a>',
    '',
    '<svg onload="window.__pwned=1"></svg> <iframe src="javascript:window.__pwned=1"></iframe>',
  ].join('\n');
  const { page, problems } = await h.open({ answer: evil, tokenDelayMs: 2 });
  const answer = await ask(page, 'Say something nasty');
  await page.waitForTimeout(200);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  const text = await answer.innerText();
  assert.match(text, /<img src=x onerror="window.__pwned=1">/, 'the tag is visible as text');
  assert.match(text, /<script>window.__pwned=1<\/script>/);
  assert.equal(await answer.locator('img, script, svg, iframe').count(), 0, 'no element came from model text');
  const hrefs = await answer.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.ok(hrefs.every((href) => href === null || !/^javascript:/i.test(href)), `no javascript: link: ${hrefs}`);
  // Clicking what is left does not execute or navigate.
  const url = page.url();
  for (const a of await answer.locator('a').all()) await a.click();
  assert.equal(page.url(), url);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(problems, []);
});

test('a fenced code block is highlighted and its Copy button copies the code', async () => {
  const code = 'def add(a, b):\n    return a + b  # sum';
  const { page } = await h.open({ answer: 'Here:\n\n```python\n' + code + '\n```\n', tokenDelayMs: 2 });
  const answer = await ask(page, 'Write add()');
  const block = answer.locator('.code-block');
  assert.equal(await block.locator('.code-lang').innerText(), 'python');
  assert.ok((await block.locator('.hljs-keyword').count()) >= 2, 'keywords are highlighted');
  await block.getByRole('button', { name: 'Copy python code' }).click();
  await block.getByRole('button', { name: 'Copy python code' }).filter({ hasText: 'Copied' }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), code + '\n');
});

test('KaTeX renders inline and display maths', async () => {
  const { page, problems } = await h.open({ answer: 'Euler: $e^{i\\pi} + 1 = 0$ and\n\n$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n', tokenDelayMs: 2 });
  const answer = await ask(page, 'Maths please');
  assert.equal(await answer.locator('.katex').count(), 2);
  assert.equal(await answer.locator('.katex-display').count(), 1);
  assert.equal(await answer.locator('.katex .mfrac').count(), 1, 'the fraction is typeset');
  assert.ok(!(await answer.innerText()).includes('$$'), 'no raw delimiters remain');
  // KaTeX's fonts come from the app itself, under the CSP.
  const fontOk = await page.evaluate(async () => {
    await document.fonts.ready;
    return [...document.fonts].some((f) => f.family.replace(/"/g, '') === 'KaTeX_Main' && f.status === 'loaded');
  });
  assert.ok(fontOk, 'KaTeX font loaded');
  assert.deepEqual(problems, []);
});

test('links in answers are never opened inside the app window', async () => {
  const { page } = await h.open({ answer: 'See [the docs](https://example.org/docs).', tokenDelayMs: 2 });
  const answer = await ask(page, 'Link?');
  const url = page.url();
  await answer.getByRole('link', { name: 'the docs' }).click();
  await page.getByText('Link copied: https://example.org/docs').waitFor();
  assert.equal(page.url(), url);
  assert.equal(page.context().pages().length, 1);
});
