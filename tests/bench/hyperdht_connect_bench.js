// The HyperDHT side of session_bench: connect time on HyperDHT's own testnet (3 DHT nodes, a
// server listening on a key pair, a client node; one process, one event loop, 127.0.0.1). Two
// servers: an open one (a node created with firewalled: false; the client connects straight to it
// after the relayed handshake, HyperDHT's fastest path) and a firewalled one (testnet.createNode()'s
// default: the client must hole-punch before the first byte, as HyperDHT never relays data
// unless asked to). As on
// the QMesh side, the lookup is done before timing: findPeer() gives the nodes holding the
// server's announcement, and connect() gets them as relayAddresses, so it connects through them at
// once. Each run times connect() to 'open' (Noise handshake done, stream up) and to the first byte
// echoed back by the server; the socket is destroyed after each run. Prints one JSON line.
// Needs the npm package hyperdht (run_session_bench.sh installs it under ~/.cache/qmesh/bench-node).
//   node hyperdht_connect_bench.js RUNS
const createTestnet = require('hyperdht/testnet')
const DHT = require('hyperdht')

const RUNS = Number(process.argv[2] || 40)

const median = (v) => {
  const s = [...v].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const ms = (a, b) => Number(b - a) / 1e6

function once (client, publicKey, relayAddresses) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    let tOpen = null
    const socket = client.connect(publicKey, { relayAddresses })
    socket.on('open', () => { tOpen = process.hrtime.bigint() })
    socket.on('error', reject)
    socket.once('data', () => {
      const t1 = process.hrtime.bigint()
      resolve({ open: ms(t0, tOpen === null ? t1 : tOpen), echo: ms(t0, t1), socket })
    })
    socket.write(Buffer.from('E'))  // queued until the stream opens, as ours is sent at SessionUp
  })
}

async function measure (testnet, serverOpts) {
  const serverNode = testnet.createNode(serverOpts)
  await serverNode.fullyBootstrapped()
  const keyPair = DHT.keyPair()
  const server = serverNode.createServer((socket) => {
    socket.on('error', () => {})
    socket.pipe(socket)  // echo
  })
  await server.listen(keyPair)

  const client = testnet.createNode()
  await client.fullyBootstrapped()
  // The lookup, before timing (excluded on both sides).
  const relayAddresses = []
  for await (const data of client.findPeer(keyPair.publicKey)) {
    relayAddresses.push({ host: data.from.host, port: data.from.port })
  }
  if (relayAddresses.length === 0) throw new Error('findPeer found no node holding the announcement')

  const open = []
  const echo = []
  for (let i = 0; i <= RUNS; i++) {
    const r = await once(client, keyPair.publicKey, relayAddresses)
    if (i > 0) {  // the first run warms the JIT up; left out, as on the QMesh side
      open.push(r.open)
      echo.push(r.echo)
    }
    r.socket.destroy()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }

  await client.destroy({ force: true })
  await server.close()
  await serverNode.destroy({ force: true })
  return {
    runs: echo.length,
    relay_nodes: relayAddresses.length,
    open_ms: median(open),
    connect_ms: median(echo),
    connect_min_ms: Math.min(...echo),
    connect_max_ms: Math.max(...echo)
  }
}

async function main () {
  const testnet = await createTestnet(3)
  const open = await measure(testnet, { ephemeral: false, firewalled: false })
  const firewalled = await measure(testnet, {})
  console.log(JSON.stringify({ open, firewalled }))
  await testnet.destroy()
  process.exit(0)
}

main().catch((err) => {
  console.error('hyperdht_connect_bench:', err && err.message)
  process.exit(1)
})
