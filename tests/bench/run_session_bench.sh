#!/usr/bin/env bash
# Runs session_bench (connect time, stream throughput with and without loss, idle-session memory)
# with HyperDHT's connect side by side when node is present (the npm package hyperdht@6.34 is
# installed once under ~/.cache/qmesh/bench-node).
#   tests/bench/run_session_bench.sh [session_bench flags]
# QMESH_BUILD_DIR=DIR runs DIR/tests/bench/session_bench from a Release build you made yourself
# (cmake --build DIR --target session_bench) instead of running scripts/setup.sh for build/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=bench_lib.sh
source "$root/tests/bench/bench_lib.sh"
bench="$(bench_binary session_bench)"
export NODE_PATH="${QMESH_CACHE:-$HOME/.cache/qmesh}/bench-node/node_modules"
read -r -a script_args <<<"$(hyperdht_args "$root/tests/bench/hyperdht_connect_bench.js")"
"$bench" "${script_args[@]}" "$@"
