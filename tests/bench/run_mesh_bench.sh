#!/usr/bin/env bash
# Runs mesh_bench: a bootstrap node and 3 qmesh-workers with the tinyllama shape (synthesized once
# into build/bench-models/) on loopback, then direct llama-server vs through the mesh.
#   tests/bench/run_mesh_bench.sh [mesh_bench flags, e.g. --asks 10 --tokens 64 --clients 30]
# QMESH_BUILD_DIR=DIR uses a Release build you made yourself; WORKERS=N (3), THREADS=N (1 per
# llama-server), MODEL=FILE (another GGUF) change the set-up.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=bench_lib.sh
source "$root/tests/bench/bench_lib.sh"
bench="$(bench_binary mesh_bench)"
build="$(dirname "$(dirname "$(dirname "$bench")")")"
cli="$build/src/cli/qmesh-cli"
worker="$build/src/cli/qmesh-worker"
model="${MODEL:-$build/bench-models/tinyllama-q8_0.gguf}"
if [ ! -f "$model" ]; then
  mkdir -p "$(dirname "$model")"
  "$cli" model synth --shape tinyllama --type q8_0 --seed 1 --out "$model"
fi
run="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
export QMESH_CONFIG_DIR="$run/config"
port=$((47700 + RANDOM % 200))
"$cli" dht bootstrap --listen "127.0.0.1:$port" --no-lan >"$run/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
wpids=()
for i in $(seq 1 "${WORKERS:-3}"); do
  "$worker" --model "$model" --bootstrap "127.0.0.1:$port" --identity "$run/w$i.key" --threads "${THREADS:-1}" \
    --max-tokens 4096 >"$run/w$i.log" 2>&1 &
  pids+=($!); wpids+=($!)
done
args=()
for i in $(seq 1 "${WORKERS:-3}"); do
  for _ in $(seq 1 300); do grep -q 'joined the network' "$run/w$i.log" && break; sleep 0.2; done
  p="$(grep -o 'ready: llama-server pid [0-9]* on 127.0.0.1:[0-9]*' "$run/w$i.log" | grep -o '[0-9]*$')" ||
    { echo "worker $i did not start:" >&2; tail -n 5 "$run/w$i.log" >&2; exit 1; }
  args+=(--llama-port "$p" --worker-pid "${wpids[$((i - 1))]}")
done
sleep 3  # the first records
"$bench" --bootstrap "127.0.0.1:$port" "${args[@]}" "$@"
