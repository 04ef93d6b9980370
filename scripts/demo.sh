#!/usr/bin/env bash
# Sets QMesh up on a fresh Debian 12 machine and runs the main job: a small mesh on this machine.
# It starts a DHT bootstrap node (it announces itself to this host by multicast) and two
# qmesh-workers with a model synthesized here, then runs `qmesh-cli ask` with no extra flags: the
# client finds the bootstrap node on its own, picks a worker and streams the answer. Everything it
# started is stopped at the end.
#   ./scripts/demo.sh ["your prompt"]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cli="$root/build/src/cli/qmesh-cli"
worker="$root/build/src/cli/qmesh-worker"
model="$root/models/tiny.gguf"
if [ ! -f "$model" ]; then
  "$cli" model synth --shape tiny --out "$model" --seed 42
fi

run="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
# Keys and config of this demo stay in its own folder (not ~/.config/qmesh).
export QMESH_CONFIG_DIR="$run/config"

port=49737
echo "== qmesh-cli dht bootstrap --listen 127.0.0.1:$port"
"$cli" dht bootstrap --listen "127.0.0.1:$port" >"$run/bootstrap.log" 2>&1 &
pids+=($!)
for i in 1 2; do
  echo "== qmesh-worker --model models/tiny.gguf --identity worker$i.key   (no --bootstrap: found on this host)"
  "$worker" --model "$model" --identity "$run/worker$i.key" --status-interval 2 >"$run/worker$i.log" 2>&1 &
  pids+=($!)
done
echo "== waiting for both workers to announce themselves"
ready=0
for _ in $(seq 1 60); do
  ready="$("$cli" workers --json 2>/dev/null | grep -o '"available":true' | wc -l || true)"
  [ "$ready" -ge 2 ] && break
  sleep 1
done
if [ "$ready" -lt 2 ]; then
  echo "demo: the workers did not come up; their logs:" >&2
  tail -n 5 "$run"/worker*.log >&2
  exit 1
fi
"$cli" workers
echo
echo "== qmesh-cli ask \"…\"   (random weights: the words are nonsense, the network path is real)"
"$cli" ask --max-tokens 48 --verbose "${1:-Tell me about peer-to-peer networks.}"
