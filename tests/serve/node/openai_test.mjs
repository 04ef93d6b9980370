// The official `openai` npm client against `qmesh-cli serve` on a real mesh (node_test.sh starts
// it): models.list, chat completions with and without streaming, completions, errors as the
// client's own classes, and an abort mid-stream that frees the worker's llama-server slot.
import test from 'node:test';
import assert from 'node:assert/strict';
import { serveUrl, apiKey, workers, requireModule, waitFor, busyWorkers, cancelsLogged } from './lib.mjs';

const OpenAI = requireModule('openai');
const client = new OpenAI({ baseURL: `${serveUrl}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
const MODEL = 'qmesh-synth-tiny';
const ids = workers.map((w) => w.id);

test('models.list lists the model the two workers serve', async () => {
  const seen = [];
  for await (const m of client.models.list()) seen.push(m);
  const m = seen.find((x) => x.id === MODEL);
  assert.ok(m, `model ${MODEL} listed: ${JSON.stringify(seen)}`);
  assert.equal(m.object, 'model');
  assert.equal(m.owned_by, 'qmesh');
  assert.equal(m.workers, 2);
});

test('chat completion, not streamed', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, max_tokens: 8, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(c.message.content.length > 0, 'some text');
  assert.equal(c.finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat completion, streamed chunk by chunk, with usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'auto', max_tokens: 12, stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Tell me a story' }],
  });
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'), 'every chunk is a chat.completion.chunk');
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one id for the whole stream');
  assert.equal(chunks[0].choices[0].delta.role, 'assistant', 'the first chunk carries the role');
  // How many tokens share a chunk is serve's to choose (a fast worker's pieces may come together);
  // that the text streams before the end is the abort test's to show.
  const pieces = chunks.flatMap((c) => c.choices).map((c) => c.delta?.content).filter((t) => t);
  assert.ok(pieces.join('').length > 0, 'some text');
  console.log(`chat stream: ${chunks.length} chunks, ${pieces.length} with text`);
  const finishes = chunks.flatMap((c) => c.choices).filter((c) => c.finish_reason);
  assert.equal(finishes.length, 1, 'one chunk has a finish_reason');
  assert.equal(finishes[0].finish_reason, 'length');
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
  assert.equal(last.usage.completion_tokens, 12);
  assert.equal(last.model, MODEL);
});

test('completions (a prompt string), streamed and not', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 6 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 6);
  const s = await client.completions.create({ model: MODEL, prompt: 'In the beginning', max_tokens: 6, stream: true });
  let text = '', n = 0, finish = null;
  for await (const ch of s) {
    for (const c of ch.choices) { if (c.text) { text += c.text; n++; } if (c.finish_reason) finish = c.finish_reason; }
  }
  assert.ok(n >= 1 && text.length > 0, `streamed text (${n} chunks)`);
  assert.equal(finish, 'length');
});

test('an unknown model is the client\'s NotFoundError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError, `NotFoundError, got ${e.constructor.name}: ${e.message}`);
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      assert.match(e.message, /no-such-model/);
      return true;
    });
});

test('a wrong API key is the client\'s AuthenticationError; n > 1 a BadRequestError naming n', async () => {
  const wrong = new OpenAI({ baseURL: `${serveUrl}/v1`, apiKey: apiKey + 'x', maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, n: 2, messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'n');
});

test('aborting a stream mid-answer frees the worker\'s llama-server slot', async () => {
  assert.deepEqual(await waitFor(async () => (await busyWorkers()).length === 0 && [], 30), [], 'every slot idle before');
  const before = workers.map(cancelsLogged);
  const ac = new AbortController();
  const stream = await client.chat.completions.create(
    { model: MODEL, max_tokens: 4000, stream: true, messages: [{ role: 'user', content: 'Count slowly to ten thousand' }] },
    { signal: ac.signal });
  let pieces = 0, busy = [], finish = null;
  try {
    for await (const ch of stream) {   // the client ends the iteration quietly at an abort
      if (ch.choices[0]?.delta?.content) pieces++;
      if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
      if (pieces === 5 && !ac.signal.aborted) {
        busy = await busyWorkers();          // mid-answer: the answering worker's slot is busy
        ac.abort();
      }
    }
  } catch (e) {
    if (!(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError')) throw e;
  }
  assert.ok(ac.signal.aborted && pieces >= 5, `tokens streamed before the abort (${pieces})`);
  assert.equal(finish, null, 'the stream ended at the abort, not with a finish_reason');
  assert.equal(busy.length, 1, `one worker generating at the abort (${busy.map((w) => w.id.slice(0, 8))})`);
  const w = busy[0];
  const freed = await waitFor(async () => (await busyWorkers()).length === 0, 30);
  assert.ok(freed, `worker ${w.id.slice(0, 8)}'s slot is free again (4000 tokens were asked)`);
  const k = ids.indexOf(w.id);
  await waitFor(() => cancelsLogged(w) > before[k], 10);
  assert.equal(cancelsLogged(w), before[k] + 1, 'the worker logged the cancel');
  // ...and the mesh still answers.
  const r = await client.chat.completions.create({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'Still there?' }] });
  assert.equal(r.usage.completion_tokens, 4);
});
