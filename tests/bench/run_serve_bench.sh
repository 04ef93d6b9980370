#!/usr/bin/env bash
# Runs serve_bench: a bootstrap node, 3 qmesh-workers with the tiny shape (SHAPE=tinyllama for the
# 1.1B one; synthesized once into build/bench-models/) and `qmesh-cli serve` on loopback; then a streaming chat completion direct
# to llama-server vs through libqmesh-client vs through serve, and many connections to serve at once.
#   tests/bench/run_serve_bench.sh [serve_bench flags, e.g. --asks 20 --ttft-asks 40 --connections 200]
# QMESH_BUILD_DIR=DIR uses a Release build you made yourself; WORKERS=N (3), THREADS=N (1 per
# llama-server), SLOTS=N (llama-server slots per worker, 4: --parallel), MODEL=FILE change the set-up.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=bench_lib.sh
source "$root/tests/bench/bench_lib.sh"
bench="$(bench_binary serve_bench)"
build="$(dirname "$(dirname "$(dirname "$bench")")")"
cli="$build/src/cli/qmesh-cli"
worker="$build/src/cli/qmesh-worker"
shape="${SHAPE:-tiny}"
case "$shape" in
  tiny) model="$(bench_model "$cli" tiny f16)" ;;
  tinyllama) model="$(bench_model "$cli" tinyllama q8_0)" ;;
  *) echo "run_serve_bench.sh: SHAPE must be tiny or tinyllama" >&2; exit 2 ;;
esac
run="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
export QMESH_CONFIG_DIR="$run/config" QMESH_NO_LAN=1
port=$((47900 + RANDOM % 100))
sport=$((48100 + RANDOM % 100))
bench_mesh "$cli" "$worker" "$model" "$port" "${WORKERS:-3}" --threads "${THREADS:-1}" --parallel "${SLOTS:-4}" \
  --max-tokens 4096
args=("${llama_args[@]}")
"$cli" serve --listen "127.0.0.1:$sport" --bootstrap "127.0.0.1:$port" >"$run/serve.log" 2>&1 &
spid=$!
pids+=("$spid")
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$sport/health" >/dev/null && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$sport/health" >/dev/null || { echo "serve did not start:" >&2; tail -n 5 "$run/serve.log" >&2; exit 1; }
sleep 3  # the first records
"$bench" --bootstrap "127.0.0.1:$port" "${args[@]}" --serve-port "$sport" --serve-pid "$spid" "$@"
