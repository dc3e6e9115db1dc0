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

const answerText = (page) => page.locator('.msg-assistant .markdown').last().innerText();

test('a sent message streams token by token, then shows its stats', async () => {
  const { page, problems } = await h.open({ tokenDelayMs: 60 });
  // Record everything the polite live region says while the answer streams.
  await page.evaluate(() => {
    window.__spoken = [];
    const region = document.getElementById('answer-announcer');
    new MutationObserver(() => region.textContent && window.__spoken.push(region.textContent)).observe(region, { childList: true, subtree: true, characterData: true });
  });
  await page.getByLabel('Message', { exact: true }).fill('Describe the weather');
  await page.getByLabel('Message', { exact: true }).press('Enter');

  await page.locator('.msg-user').filter({ hasText: 'Describe the weather' }).waitFor();
  // Sample the answer while it streams: it must grow through several partial states.
  const seen = new Set();
  for (let i = 0; i < 200 && !(await page.locator('.stats').count()); i++) {
    const text = await page.locator('.msg-assistant .markdown').last().innerText().catch(() => '');
    if (text) seen.add(text);
    await page.waitForTimeout(20);
  }
  assert.ok(seen.size >= 4, `expected several partial answers while streaming, saw ${seen.size}: ${[...seen].join(' | ')}`);
  const partials = [...seen].sort((a, b) => a.length - b.length);
  const final = await answerText(page);
  assert.equal(final, 'Hello! This is a streamed answer. It has two sentences.');
  for (const p of partials) assert.ok(final.startsWith(p.trimEnd()), `partial "${p}" is a prefix of the answer`);
  assert.equal(await page.locator('.msg-assistant strong').last().innerText(), 'streamed', 'Markdown bold is rendered');

  const stats = await page.locator('.stats').innerText();
  assert.match(stats, /first token 1\.2 s/);
  assert.match(stats, /9\.1 tok\/s/);
  assert.match(stats, /10 tokens/);

  const sent = (await calls(page, 'send_message'))[0].args;
  assert.equal(sent.text, 'Describe the weather');
  assert.deepEqual(sent.imageTokens, []);
  assert.equal((await calls(page, 'create_conversation')).length, 1, 'the first message creates a conversation');
  // The new conversation appears in the sidebar with the derived title.
  await page.locator('.conv-open', { hasText: 'Describe the weather' }).waitFor();
  // The live region announced whole sentences, not single tokens, without Markdown symbols.
  assert.deepEqual(await page.evaluate(() => window.__spoken), ['Hello!', 'This is a streamed answer.', 'It has two sentences.']);
  assert.deepEqual(problems, []);
});

test('Shift+Enter adds a new line instead of sending', async () => {
  const { page } = await h.open();
  const box = page.getByLabel('Message', { exact: true });
  await box.type('line one');
  await box.press('Shift+Enter');
  await box.type('line two');
  assert.equal(await box.inputValue(), 'line one\nline two');
  assert.equal((await calls(page, 'send_message')).length, 0);
  await box.press('Enter');
  await page.locator('.msg-user').waitFor();
  assert.equal((await calls(page, 'send_message'))[0].args.text, 'line one\nline two');
});

test('the Stop button ends a stream early and marks the answer stopped', async () => {
  const { page } = await h.open({ tokenDelayMs: 120, answer: 'one two three four five six seven eight nine ten eleven twelve' });
  await page.getByLabel('Message', { exact: true }).fill('Count');
  await page.getByRole('button', { name: 'Send message' }).click();
  await page.locator('.msg-assistant .markdown', { hasText: 'two' }).waitFor();
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.locator('.msg-assistant .status-stopped').waitFor();
  assert.equal((await calls(page, 'stop_generation')).length, 1);
  const text = await answerText(page);
  assert.ok(!text.includes('twelve'), `answer stopped early: ${text}`);
  assert.match(await page.locator('.stats').innerText(), /tokens/);
  // The composer is ready again.
  await page.getByRole('button', { name: 'Send message' }).waitFor();
});

test('Esc stops a stream', async () => {
  const { page } = await h.open({ tokenDelayMs: 120, answer: 'alpha beta gamma delta epsilon zeta eta theta iota kappa' });
  await page.getByLabel('Message', { exact: true }).fill('Greek');
  await page.keyboard.press('Enter');
  await page.locator('.msg-assistant .markdown', { hasText: 'beta' }).waitFor();
  await page.keyboard.press('Escape');
  await page.locator('.msg-assistant .status-stopped').waitFor();
  assert.equal((await calls(page, 'stop_generation')).length, 1);
  assert.ok(!(await answerText(page)).includes('kappa'));
});

test('a failed send shows the error and keeps the text', async () => {
  const { page } = await h.open({ fail: { send_message: 'No model is loaded. Load a model first, then send again.' } });
  const box = page.getByLabel('Message', { exact: true });
  await box.fill('Will this work?');
  await box.press('Enter');
  const notice = page.locator('.composer-notice');
  await notice.getByText('Not sent: No model is loaded. Load a model first, then send again.').waitFor();
  assert.equal(await notice.getAttribute('aria-live'), 'polite');
  assert.equal(await box.inputValue(), 'Will this work?', 'the text is given back');
  assert.equal(await page.locator('.msg-user').count(), 0, 'no phantom message is left behind');
});

test('an error in the middle of a stream keeps the partial answer and shows an error badge', async () => {
  const { page } = await h.open({ fail: { midStream: 'The model ran out of memory. Close other apps or pick a smaller model.' } });
  await page.getByLabel('Message', { exact: true }).fill('Hi');
  await page.keyboard.press('Enter');
  const badge = page.locator('.status-error');
  await badge.waitFor();
  assert.match(await badge.innerText(), /Error: The model ran out of memory/);
  assert.match(await answerText(page), /streamed answer/);
});

test('regenerate adds a version and the branch switcher moves between versions', async () => {
  const { page } = await h.open({
    conversations: [{ id: 'c1', title: 'Cats', messages: [{ role: 'user', content: 'Tell me about cats' }, { role: 'assistant', content: 'Cats are small.' }] }],
  });
  await page.locator('.conv-open', { hasText: 'Cats' }).click();
  await page.locator('.messages').getByText('Cats are small.').waitFor();
  assert.equal(await page.getByRole('group', { name: 'Versions of this message' }).count(), 0, 'a single version has no switcher');
  await page.getByRole('button', { name: 'Regenerate answer' }).click();
  await page.locator('.messages').getByText('A regenerated answer.').waitFor();
  const switcher = page.getByRole('group', { name: 'Versions of this message' });
  await switcher.waitFor();
  assert.equal(await switcher.locator('.branch-pos').innerText(), '2/2');
  await switcher.getByRole('button', { name: 'Previous version' }).click();
  await page.locator('.messages').getByText('Cats are small.').waitFor();
  assert.equal(await switcher.locator('.branch-pos').innerText(), '1/2');
  assert.equal((await calls(page, 'switch_branch')).length, 1);
});

test('edit and resend replaces the question and streams a new answer', async () => {
  const { page } = await h.open({
    conversations: [{ id: 'c1', title: 'Dogs', messages: [{ role: 'user', content: 'Tell me about dgos' }, { role: 'assistant', content: 'Pardon?' }] }],
  });
  await page.locator('.conv-open', { hasText: 'Dogs' }).click();
  await page.getByRole('button', { name: 'Edit and resend' }).click();
  const edit = page.getByLabel('Edit your message');
  await edit.fill('Tell me about dogs');
  await page.getByRole('button', { name: 'Save and resend' }).click();
  await page.locator('.msg-user', { hasText: 'Tell me about dogs' }).waitFor();
  await page.locator('.stats').waitFor();
  const call = (await calls(page, 'edit_and_resend'))[0].args;
  assert.equal(call.text, 'Tell me about dogs');
  assert.equal(await page.locator('.msg-user .branch-pos').innerText(), '2/2');
});

test('copying an answer puts its text on the clipboard', async () => {
  const { page } = await h.open({
    conversations: [{ id: 'c1', title: 'Copy me', messages: [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'The answer is 42.' }] }],
  });
  await page.locator('.conv-open', { hasText: 'Copy me' }).click();
  await page.getByRole('button', { name: 'Copy answer' }).click();
  await page.getByText('Copied to the clipboard.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'The answer is 42.');
});

test('a stopped answer can be continued', async () => {
  const { page } = await h.open({
    answer: ' and then the rest.',
    conversations: [{ id: 'c1', title: 'Story', messages: [{ role: 'user', content: 'Tell a story' }, { role: 'assistant', content: 'Once upon a time', status: 'stopped' }] }],
  });
  await page.locator('.conv-open', { hasText: 'Story' }).click();
  await page.locator('.status-stopped', { hasText: 'Stopped by you' }).waitFor();
  const answerId = await page.locator('.msg-assistant').last().getAttribute('data-message-id');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.locator('.stats').waitFor();
  assert.equal(await answerText(page), 'Once upon a time and then the rest.');
  assert.equal(await page.locator('.status-stopped').count(), 0);
  // Continued in place: still one answer, the same message, no version switcher.
  assert.equal(await page.locator('.msg-assistant').count(), 1);
  assert.equal(await page.locator('.msg-assistant').last().getAttribute('data-message-id'), answerId);
  assert.equal(await page.getByRole('button', { name: 'Continue' }).count(), 0);
  const [call] = await calls(page, 'continue_message');
  assert.deepEqual({ conversationId: call.args.conversationId, messageId: call.args.messageId }, { conversationId: 'c1', messageId: answerId });
});
