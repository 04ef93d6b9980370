// Shared by the Node-based serve tests: the environment node_test.sh sets, the npm packages
// (from npm-deps.sh's cache), and the workers' llama-server /slots.
import { createRequire } from 'node:module';
import fs from 'node:fs';

function need(name) {
  const v = process.env[name];
  if (!v) { console.error(`${name} is not set: run this test through node_test.sh`); process.exit(2); }
  return v;
}
export const serveUrl = need('QMESH_SERVE_URL');
export const apiKey = need('QMESH_API_KEY');
export const outDir = need('QMESH_TEST_OUT');
export const workers = JSON.parse(need('QMESH_WORKERS'));   // [{id, llama_port, log}]
export const requireModule = createRequire(need('QMESH_NODE_MODULES') + '/');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() every 100 ms until it returns a truthy value (returned) or `seconds` pass (null).
export async function waitFor(fn, seconds) {
  for (let i = 0; i < seconds * 10; i++) {
    const v = await fn();
    if (v) return v;
    await sleep(100);
  }
  return null;
}

// The slots of one worker's llama-server: [{id, is_processing, ...}].
export async function slots(w) {
  const r = await fetch(`http://127.0.0.1:${w.llama_port}/slots`);
  if (!r.ok) throw new Error(`llama-server /slots of worker ${w.id.slice(0, 8)}: HTTP ${r.status}`);
  return r.json();
}
// The workers with a slot processing now.
export async function busyWorkers() {
  const busy = [];
  for (const w of workers) if ((await slots(w)).some((s) => s.is_processing)) busy.push(w);
  return busy;
}
// How often a worker's log says it cancelled a generation for a client that went away.
export function cancelsLogged(w) {
  return (fs.readFileSync(w.log, 'utf8').match(/cancelled by the client/g) || []).length;
}
