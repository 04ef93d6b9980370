// The chat page (src/serve/chat.html) in Debian's chromium, headless, driven by puppeteer-core,
// against `qmesh-cli serve` on a real mesh (node_test.sh starts it): load /, give the API key,
// pick a model, ask, see the text stream in, press Stop (the worker's slot is freed), ask again
// and see it finish with the conversation sent whole. Screenshots go to QMESH_TEST_OUT.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { serveUrl, apiKey, outDir, workers, requireModule, waitFor, busyWorkers, cancelsLogged } from './lib.mjs';

const puppeteer = requireModule('puppeteer-core');
const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
const MODEL = 'qmesh-synth-tiny';
let browser, page;
const sent = [], received = [];   // the WebSocket frames, as chromium's DevTools saw them
const shots = [];

async function shot(name) {
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file });
  shots.push(file);
}
// The page's state for the last answer: data-state, its text, how many times its text changed.
const last = () => page.evaluate(() => {
  const a = [...document.querySelectorAll('.msg.assistant')].pop();
  return a && { state: a.dataset.state, text: a.querySelector('.text').textContent,
    meta: a.querySelector('.meta').textContent, err: a.querySelector('.err')?.textContent || '',
    updates: window.__updates, elements: a.querySelectorAll('.text *').length,
    stopShown: getComputedStyle(document.getElementById('stop')).display !== 'none' };
});
async function ask(text) {
  await page.evaluate(() => { window.__updates = 0; });
  await page.type('#prompt', text);
  await page.keyboard.press('Enter');
}
const asksSent = () => sent.filter((m) => m.type === 'ask');

test.before(async () => {
  assert.ok(chromium, 'chromium is installed (apt-get install chromium)');
  browser = await puppeteer.launch({ executablePath: chromium, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'] });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  page.on('pageerror', (e) => console.log('page error:', e.message));
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  const parse = (f) => { try { return JSON.parse(f.response.payloadData); } catch { return { raw: f.response.payloadData }; } };
  cdp.on('Network.webSocketFrameSent', (f) => sent.push(parse(f)));
  cdp.on('Network.webSocketFrameReceived', (f) => received.push(parse(f)));
  // Every change of an answer's text (one per streamed piece: the page appends to a text node).
  // With window.__stopAt set, the Stop button is clicked right at that update: the tiny model
  // writes faster than a round trip from here, and the stopped answer must stay short (it goes
  // back with the next ask, within the workers' context).
  await page.evaluateOnNewDocument(() => {
    window.__updates = 0;
    new MutationObserver((ms) => {
      for (const m of ms) if (m.type === 'characterData') window.__updates++;
      if (window.__stopAt && window.__updates >= window.__stopAt) {
        window.__stopAt = 0;
        window.__atStop = { updates: window.__updates, text: document.querySelector('.msg.assistant:last-child .text').textContent,
          state: document.querySelector('.msg.assistant:last-child').dataset.state,
          stopShown: getComputedStyle(document.getElementById('stop')).display !== 'none' };
        document.getElementById('stop').click();
      }
    }).observe(document, { subtree: true, characterData: true });
  });
});
test.after(async () => {
  if (browser) await browser.close();
  console.log(`screenshots: ${shots.join(' ')}`);
});

test('the page loads from / and asks for the API key', async () => {
  const r = await page.goto(`${serveUrl}/`, { waitUntil: 'load' });
  assert.equal(r.status(), 200);
  assert.match(r.headers()['content-type'], /text\/html/);
  assert.equal(await page.title(), 'QMesh chat');
  const notice = await page.waitForFunction(() => {
    const n = document.getElementById('notice');
    return n.classList.contains('show') && /API key/.test(n.textContent) && n.textContent;
  }, { timeout: 15000 });
  console.log('notice without a key:', await notice.jsonValue());
  assert.ok(await page.$eval('#settings', (e) => e.classList.contains('open')), 'the settings open for the key');
  await shot('1-needs-key');
});

test('with the key typed in, the models are listed and one is picked', async () => {
  await page.type('#key', apiKey);
  await page.keyboard.press('Tab');   // "change"
  await page.waitForSelector(`#model option[value="${MODEL}"]`, { timeout: 15000 });
  const options = await page.$$eval('#model option', (os) => os.map((o) => [o.value, o.textContent]));
  assert.equal(options[0][0], 'auto', 'auto comes first');
  assert.match(options.find((o) => o[0] === MODEL)[1], /2 workers/);
  await page.select('#model', MODEL);
  assert.equal(await page.$eval('#key', (e) => sessionStorage.getItem('qmesh.apiKey')), apiKey, 'the key is kept in sessionStorage');
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
  await page.waitForFunction(() => document.getElementById('conn').classList.contains('open'), { timeout: 15000 });
  await page.click('#gear');   // close the settings
});

test('an answer streams in, and Stop cancels it on the worker', async () => {
  const before = workers.map(cancelsLogged);
  await page.click('#gear');
  await page.$eval('#maxtok', (e) => { e.value = ''; });
  await page.type('#maxtok', '4000');   // up to the context's end: as long as the tiny model writes
  await page.keyboard.press('Tab');
  await page.click('#gear');
  await page.evaluate(() => { window.__stopAt = 3; });
  await ask('Tell me a <b>long</b> story');
  const streaming = await page.waitForFunction(() => window.__atStop, { polling: 10, timeout: 60000 }).then((h) => h.jsonValue());
  const first = received.filter((m) => m.type === 'delta' && m.id === asksSent()[0].id).map((m) => m.content.length);
  console.log(`at Stop: ${streaming.updates} updates, ${streaming.text.length} characters, state ${streaming.state}; deltas so far: ${first.length} (${first.slice(0, 12)}…)`);
  assert.equal(streaming.state, 'streaming', 'several DOM updates before the answer is done');
  assert.ok(streaming.stopShown, 'the Stop button shows while the answer streams');
  const stopped = await waitFor(async () => { const l = await last(); return l.state !== 'streaming' && l; }, 30);
  assert.equal(stopped.state, 'stopped', `stopped (${stopped.err})`);
  assert.match(stopped.meta, /stopped/);
  assert.equal(stopped.elements, 0, 'the answer is text, no elements');
  const id = asksSent()[0].id;
  assert.ok(sent.some((m) => m.type === 'cancel' && m.id === id), 'a cancel was sent for the ask');
  const end = received.find((m) => m.id === id && (m.type === 'error' || m.type === 'done'));
  assert.equal(end.type, 'error');
  assert.equal(end.status, 499);
  assert.ok(await waitFor(async () => (await busyWorkers()).length === 0, 15), 'every slot is free again');
  const cancels = () => workers.map((w, i) => cancelsLogged(w) - before[i]).sort().join();
  await waitFor(() => cancels() !== '0,0', 10);
  assert.equal(cancels(), '0,1', 'the worker that answered logged the cancel');
  // The user's text is shown as text, not HTML.
  const user = await page.$$eval('.msg.user .bubble', (bs) => bs.map((b) => [b.textContent, b.children.length]));
  assert.deepEqual(user[0], ['Tell me a <b>long</b> story', 0]);
  const pieces = received.filter((m) => m.type === 'delta' && m.id === id).map((m) => m.content);
  const deltas = pieces.join('');
  console.log(`stopped after ${pieces.length} deltas, ${deltas.length} characters (Stop pressed at ${streaming.updates} updates, ${streaming.text.length} characters; sizes ${pieces.slice(0, 12).map((p) => p.length)})`);
  assert.equal(stopped.text, deltas.trimStart(), 'the page shows exactly the streamed text (less leading blanks)');
  await shot('2-stopped');
});

test('a second ask sends the conversation whole and finishes with its stats', async () => {
  await page.click('#gear');
  await page.$eval('#maxtok', (e) => { e.value = ''; });
  await page.type('#maxtok', '24');
  await page.keyboard.press('Tab');
  await page.click('#gear');
  await ask('And now a short one');
  await page.waitForFunction(() => window.__updates >= 1, { polling: 10, timeout: 60000 });
  if ((await last()).state === 'streaming') await shot('3-streaming');
  const done = await waitFor(async () => { const l = await last(); return l.state !== 'streaming' && l; }, 120);
  assert.equal(done.state, 'done', `done (${done.err})`);
  const texts = await page.$$eval('.msg.assistant .text', (ts) => ts.map((t) => t.textContent));
  assert.ok(done.updates >= 1, `the text came in (${done.updates} updates)`);
  const a = asksSent();
  assert.equal(a.length, 2);
  assert.equal(a[1].model, MODEL);
  assert.equal(a[1].max_tokens, 24);
  const first = received.filter((m) => m.type === 'delta' && m.id === a[0].id).map((m) => m.content).join('');
  assert.deepEqual(a[1].messages.map((m) => m.role), ['user', 'assistant', 'user']);
  assert.equal(a[1].messages[1].content, first, 'the stopped answer is part of the conversation');
  assert.equal(a[1].messages[2].content, 'And now a short one');
  const second = received.filter((m) => m.type === 'delta' && m.id === a[1].id).map((m) => m.content).join('');
  assert.deepEqual(texts, [first.trimStart(), second.trimStart()], 'the page shows exactly the streamed texts');
  const fin = received.find((m) => m.type === 'done' && m.id === a[1].id);
  assert.ok(fin, 'a done message');
  assert.ok(workers.some((w) => w.id === fin.worker), 'done names one of the workers');
  assert.ok(done.meta.includes(`worker ${fin.worker.slice(0, 8)}`), `the worker's short id shows: ${done.meta}`);
  assert.match(done.meta, /TTFT \d+ ms/);
  assert.match(done.meta, /[\d.]+ tok\/s/);
  assert.ok(done.meta.includes(`${fin.usage.completion_tokens} tokens`));
  assert.equal(await page.$eval('#send', (e) => e.offsetParent !== null), true, 'Send is back');
  await shot('4-done-desktop-light');
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
  await shot('5-done-desktop-dark');
  await page.setViewport({ width: 390, height: 844 });   // isMobile would reload the page
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  await shot('6-done-phone');
});
