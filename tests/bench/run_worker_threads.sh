#!/usr/bin/env bash
# Threads of a qmesh-worker while many asks are in flight: a bootstrap node and one worker (one
# llama-server slot, queue-capacity ASKS-1, the tiny model) on loopback, then ASKS clients
# (mesh_load, one ask each) asking at once. Samples /proc/<worker>/task while they run and prints
# the worker's threads idle, the most asks it held at once, and its threads then.
#   tests/bench/run_worker_threads.sh [ASKS (100)] [TOKENS per ask (256)]
# QMESH_BUILD_DIR=DIR: a build of yours (default build/); WORKER=BINARY: measure another
# qmesh-worker (e.g. one built from an older commit) with this build's client; MODEL=FILE.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${QMESH_BUILD_DIR:-$root/build}"
asks="${1:-100}"; tokens="${2:-256}"
cli="$build/src/cli/qmesh-cli"
load="$build/tests/integration/mesh_load"
worker="${WORKER:-$build/src/cli/qmesh-worker}"
model="${MODEL:-$build/test-models/tiny.gguf}"
for f in "$cli" "$load" "$worker" "$model"; do
  [ -e "$f" ] || { echo "run_worker_threads: $f not found (build first)" >&2; exit 2; }
done
run="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
export QMESH_CONFIG_DIR="$run/config" QMESH_NO_LAN=1
port=$((47900 + RANDOM % 90))
"$cli" dht bootstrap --listen "127.0.0.1:$port" >"$run/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
"$worker" --model "$model" --bootstrap "127.0.0.1:$port" --identity "$run/w.key" --threads 1 --parallel 1 \
  --queue-capacity "$((asks - 1))" --max-tokens "$tokens" --log-level debug >"$run/w.log" 2>&1 &
wpid=$!
pids+=("$wpid")
for _ in $(seq 1 300); do grep -q 'joined the network' "$run/w.log" && break; sleep 0.2; done
grep -q 'joined the network' "$run/w.log" || { echo "the worker did not start:" >&2; tail -n 5 "$run/w.log" >&2; exit 1; }
sleep 2  # the first announce
threads() { ls "/proc/$wpid/task" | wc -l; }
idle="$(threads)"
"$load" --bootstrap "127.0.0.1:$port" --clients "$asks" --asks "$asks" --max-tokens "$tokens" --max-attempts 1 \
  >"$run/load.out" 2>&1 &
lpid=$!
peak_asks=0; peak_threads=0; most_threads=0
while kill -0 "$lpid" 2>/dev/null; do
  t="$(threads)"
  admitted="$(grep -c 'admitted (' "$run/w.log" || true)"
  ended="$(grep -c 'ask from [0-9a-f]*: ' "$run/w.log" || true)"
  held=$((admitted - ended))
  [ "$t" -gt "$most_threads" ] && most_threads="$t"
  if [ "$held" -gt "$peak_asks" ]; then peak_asks="$held"; peak_threads="$t"; fi
  sleep 0.05
done
wait "$lpid" || true
cat "$run/load.out"
echo "worker threads: $idle idle; $peak_threads with $peak_asks asks in flight (the most it held); $most_threads at most"
