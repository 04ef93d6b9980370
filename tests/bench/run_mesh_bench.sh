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
model="$(bench_model "$cli" tinyllama q8_0)"
run="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
export QMESH_CONFIG_DIR="$run/config"
port=$((47700 + RANDOM % 200))
bench_mesh "$cli" "$worker" "$model" "$port" "${WORKERS:-3}" --threads "${THREADS:-1}" --max-tokens 4096
args=("${llama_args[@]}")
for w in "${wpids[@]}"; do args+=(--worker-pid "$w"); done
sleep 3  # the first records
"$bench" --bootstrap "127.0.0.1:$port" "${args[@]}" "$@"
