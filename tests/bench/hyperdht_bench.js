// The HyperDHT side of dht_bench: the same measurements on HyperDHT's own testnet (N nodes in one
// process on loopback, one event loop). Prints one JSON line. Run by dht_bench; needs the npm
// package hyperdht (run_dht_bench.sh installs it under ~/.cache/qmesh/bench-node).
//   node hyperdht_bench.js NODES LOOKUPS EXTRA
const createTestnet = require('hyperdht/testnet')
const DHT = require('hyperdht')
const crypto = require('crypto')

const N = Number(process.argv[2] || 200)
const LOOKUPS = Number(process.argv[3] || 30)
const EXTRA = Number(process.argv[4] || 200)

const rss = () => process.memoryUsage().rss
const median = (v) => {
  const s = [...v].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const ms = (a, b) => Number(b - a) / 1e6

async function main () {
  const base = rss()
  const testnet = await createTestnet(N)
  const afterN = rss()
  const topic = crypto.createHash('sha256').update('qmesh-bench').digest()
  const announcerIndex = Math.floor(N / 2)
  const keyPair = DHT.keyPair()
  await testnet.nodes[announcerIndex].announce(topic, keyPair).finished()

  const first = []
  const full = []
  let found = 0
  for (let i = 0, n = 0; n < LOOKUPS; i++) {
    const idx = (i * 7 + 1) % N
    if (idx === announcerIndex) continue
    n++
    const t0 = process.hrtime.bigint()
    let tFirst = null
    for await (const data of testnet.nodes[idx].lookup(topic)) {
      if (tFirst === null && data.peers.length > 0) tFirst = process.hrtime.bigint()
    }
    const t1 = process.hrtime.bigint()
    if (tFirst !== null) {
      found++
      first.push(ms(t0, tFirst))
    }
    full.push(ms(t0, t1))
  }

  const before = rss()
  const extra = []
  for (let i = 0; i < EXTRA; i++) {
    const node = new DHT({ ephemeral: false, firewalled: false, bootstrap: testnet.bootstrap, host: '127.0.0.1' })
    await node.fullyBootstrapped()
    extra.push(node)
  }
  const marginal = (rss() - before) / EXTRA

  console.log(JSON.stringify({
    nodes: N,
    lookups: full.length,
    found,
    first_record_ms: median(first),
    full_lookup_ms: median(full),
    rss_per_node_bytes: (afterN - base) / N,
    marginal_rss_per_node_bytes: marginal
  }))
  for (const node of extra) await node.destroy({ force: true })
  await testnet.destroy()
  process.exit(0)
}

main().catch((err) => {
  console.error('hyperdht_bench:', err && err.message)
  process.exit(1)
})
