#!/usr/bin/env bash
# Runs session_bench (connect time, stream throughput with and without loss, idle-session memory)
# with HyperDHT's connect side by side when node is present (the npm package hyperdht@6.34 is
# installed once under ~/.cache/qmesh/bench-node).
#   tests/bench/run_session_bench.sh [session_bench flags]
# QMESH_BUILD_DIR=DIR runs DIR/tests/bench/session_bench from a Release build you made yourself
# (cmake --build DIR --target session_bench) instead of running scripts/setup.sh for build/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -n "${QMESH_BUILD_DIR:-}" ]; then
  bench="$QMESH_BUILD_DIR/tests/bench/session_bench"
else
  "$root/scripts/setup.sh" >/dev/null
  bench="$root/build/tests/bench/session_bench"
fi
script_args=()
if command -v node >/dev/null && command -v npm >/dev/null; then
  nodedir="${QMESH_CACHE:-$HOME/.cache/qmesh}/bench-node"
  if [ ! -d "$nodedir/node_modules/hyperdht" ]; then
    mkdir -p "$nodedir"
    (cd "$nodedir" && npm install --silent --no-audit --no-fund hyperdht@6.34.0 >/dev/null)
  fi
  export NODE_PATH="$nodedir/node_modules"
  script_args=(--hyperdht-script "$root/tests/bench/hyperdht_connect_bench.js")
else
  echo "run_session_bench: node/npm not found; HyperDHT side skipped" >&2
fi
"$bench" "${script_args[@]}" "$@"
