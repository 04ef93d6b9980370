// The WebSocket /v1/ws of `qmesh-cli serve` with the npm `ws` client (serve_ws_test.sh runs it
// against a real mesh). Environment: QMESH_SERVE_URL (http://…), QMESH_API_KEY, QMESH_NODE_MODULES,
// QMESH_ALLOWED_ORIGIN. Prints "ok: …" / "FAIL: …" lines and exits non-zero on a failure.
import { createRequire } from 'node:module';

const require = createRequire(process.env.QMESH_NODE_MODULES + '/');
const WebSocket = require('ws');
const base = process.env.QMESH_SERVE_URL.replace(/^http/, 'ws') + '/v1/ws';
const key = process.env.QMESH_API_KEY;
let failures = 0;
const check = (what, cond, detail) => {
  if (cond) console.log(`ok: ${what}`);
  else { failures++; console.log(`FAIL: ${what}${detail !== undefined ? ' (' + JSON.stringify(detail) + ')' : ''}`); }
};

// Resolves with {ws} once open, or {status} when the server refuses the handshake.
function connect(opts = {}, protocols = undefined) {
  return new Promise((resolve) => {
    const ws = new WebSocket(base, protocols, opts);
    ws.on('open', () => resolve({ ws }));
    ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode }));
    ws.on('error', (e) => resolve({ error: String(e) }));
  });
}

// A socket whose messages are kept, with waiting for one that matches.
function session(ws) {
  const seen = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    const m = JSON.parse(data.toString());
    seen.push(m);
    for (const w of [...waiters]) if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m); }
  });
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  return {
    seen, closed,
    send: (o) => ws.send(typeof o === 'string' ? o : JSON.stringify(o)),
    wait: (pred, ms = 60000) => new Promise((resolve, reject) => {
      const hit = seen.find(pred);
      if (hit) return resolve(hit);
      const w = { pred, resolve };
      waiters.push(w);
      setTimeout(() => { const i = waiters.indexOf(w); if (i >= 0) { waiters.splice(i, 1); reject(new Error('no such message within ' + ms + ' ms')); } }, ms);
    }),
  };
}
const ends = (id) => (m) => m.id === id && (m.type === 'done' || m.type === 'error');
const ask = (id, extra = {}) => ({ type: 'ask', id, messages: [{ role: 'user', content: 'Count to ten' }], ...extra });

// ---- access ----
let r = await connect();
check('no key: the handshake is refused with 401', r.status === 401, r);
r = await connect({}, ['qmesh', 'bearer.wrong-key-wrong-key']);
check('a wrong bearer subprotocol: refused with 401', r.status === 401, r);
r = await connect({ headers: { Authorization: 'Bearer ' + key, Origin: 'http://evil.example' } });
check('an unlisted Origin: refused with 403', r.status === 403, r);
r = await connect({ headers: { Authorization: 'Bearer ' + key, Origin: process.env.QMESH_ALLOWED_ORIGIN } });
check('the listed Origin with the key: open', !!r.ws, r);
r.ws?.close();
r = await connect({ headers: { Authorization: 'Bearer ' + key } });
check('Authorization: Bearer: open', !!r.ws, r);
r.ws?.close();
r = await connect({}, ['qmesh', 'bearer.' + key]);
check('subprotocols qmesh + bearer.<key> (what a browser can send): open, serve picks qmesh', r.ws && r.ws.protocol === 'qmesh', r.ws?.protocol ?? r);
const ws = r.ws;
const s = session(ws);

// ---- two asks in flight on one socket, one of them cancelled ----
s.send(ask('long', { max_tokens: 2000 }));
s.send(ask('short', { max_tokens: 10 }));
await s.wait((m) => m.id === 'long' && m.type === 'delta');
s.send({ type: 'cancel', id: 'long' });
const short = await s.wait(ends('short'));
const long = await s.wait(ends('long'));
const text = (id) => s.seen.filter((m) => m.id === id && m.type === 'delta').map((m) => m.content).join('');
check('the short ask ends in done', short.type === 'done', short);
check('...with finish_reason length, usage, the worker, ttft and tokens/s',
  short.finish_reason === 'length' && short.usage?.completion_tokens === 10 &&
  short.usage.total_tokens === short.usage.prompt_tokens + 10 && /^[0-9a-f]{64}$/.test(short.worker) &&
  short.ttft_ms > 0 && typeof short.tokens_per_second === 'number' && typeof short.retries === 'number' &&
  typeof short.model === 'string', short);
check('...and its deltas carry text', text('short').length > 0);
check('the cancelled ask ends in error 499, code cancelled', long.type === 'error' && long.status === 499 && long.error?.code === 'cancelled', long);
check('...after some text', text('long').length > 0);
await new Promise((res) => setTimeout(res, 300));
for (const id of ['short', 'long'])
  check(`ask ${id} ended exactly once`, s.seen.filter(ends(id)).length === 1);
check('no message after an ask ended', s.seen.findIndex(ends('long')) > s.seen.findLastIndex((m) => m.id === 'long' && m.type === 'delta'));

// ---- bad messages: an error, the socket stays open ----
s.send('this is not json');
let e = await s.wait((m) => m.type === 'error' && !('id' in m));
check('garbage: an error without id, status 400', e.status === 400 && e.error?.code === 'invalid_message', e);
s.send({ type: 'frobnicate', id: 'x' });
await s.wait((m) => m.type === 'error' && !('id' in m) && m.error?.param === 'type');
check('an unknown type: an error without id', true);
s.send(ask('bad', { n: 3 }));
e = await s.wait(ends('bad'));
check('an unsupported parameter: error 400 for that id, naming it', e.type === 'error' && e.status === 400 && e.error?.param === 'n', e);
s.send(ask('dup', { max_tokens: 2000 }));
s.send(ask('dup', { max_tokens: 2 }));
e = await s.wait((m) => m.id === 'dup' && m.type === 'error' && m.error?.code === 'duplicate_id');
check('a second ask with an id in flight: duplicate_id', !!e);
s.send({ type: 'cancel', id: 'dup' });
await s.wait((m) => m.id === 'dup' && m.type === 'error' && m.status === 499);

// ---- at most 16 asks in flight ----
for (let i = 0; i < 17; i++) s.send(ask('m' + i, { max_tokens: 2000 }));
e = await s.wait(ends('m16'));
check('the 17th ask in flight: error 429 too_many_asks', e.type === 'error' && e.status === 429 && e.error?.code === 'too_many_asks', e);
for (let i = 0; i < 16; i++) s.send({ type: 'cancel', id: 'm' + i });
const all = await Promise.all([...Array(16).keys()].map((i) => s.wait(ends('m' + i))));
check('...and the 16 cancelled each end once (499, or done if it finished first)',
  all.every((m) => (m.type === 'error' && m.status === 499) || m.type === 'done'), all.map((m) => m.status ?? m.type));
s.send(ask('after', { max_tokens: 3 }));
const after = await s.wait(ends('after'));
check('the socket still serves an ask after all that', after.type === 'done' && after.usage.completion_tokens === 3, after);

// ---- a message over 1 MiB closes the socket (1009) ----
s.send(JSON.stringify(ask('huge', { user: 'x'.repeat(1100000) })));
const code = await s.closed;
check('a message over 1 MiB: closed with 1009', code === 1009, code);

process.exit(failures ? 1 : 0);
