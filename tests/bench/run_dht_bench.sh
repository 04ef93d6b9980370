#!/usr/bin/env bash
# Runs dht_bench at N = 200 and 500, with HyperDHT's testnet side by side when node is present
# (the npm package hyperdht@6.34 is installed once under ~/.cache/qmesh/bench-node).
#   tests/bench/run_dht_bench.sh [dht_bench flags]
# QMESH_BUILD_DIR=DIR runs DIR/tests/bench/dht_bench from a Release build you made yourself
# (cmake --build DIR --target dht_bench) instead of running scripts/setup.sh for build/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=bench_lib.sh
source "$root/tests/bench/bench_lib.sh"
bench="$(bench_binary dht_bench)"
export NODE_PATH="${QMESH_CACHE:-$HOME/.cache/qmesh}/bench-node/node_modules"
read -r -a script_args <<<"$(hyperdht_args "$root/tests/bench/hyperdht_bench.js")"
for n in 200 500; do
  "$bench" --nodes "$n" "${script_args[@]}" "$@"
done
