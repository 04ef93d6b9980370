# shellcheck shell=bash
# shellcheck disable=SC2154  # $root is set by the sourcing script
# Sourced by the run_*_bench.sh scripts, which set $root (the repository root) first.
# bench_binary NAME: the path of a benchmark program: from $QMESH_BUILD_DIR (a Release build you
# made yourself) or, without it, from build/ after scripts/setup.sh.
bench_binary() {
  if [ -n "${QMESH_BUILD_DIR:-}" ]; then
    echo "$QMESH_BUILD_DIR/tests/bench/$1"
  else
    "$root/scripts/setup.sh" >/dev/null
    echo "$root/build/tests/bench/$1"
  fi
}
# hyperdht_args SCRIPT: prints "--hyperdht-script SCRIPT" when node and npm are present (installing
# hyperdht@6.34.0 once under ~/.cache/qmesh/bench-node and exporting NODE_PATH), else nothing and
# a note on stderr.
hyperdht_args() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "$(basename "$0"): node/npm not found; HyperDHT side skipped" >&2
    return
  fi
  local nodedir="${QMESH_CACHE:-$HOME/.cache/qmesh}/bench-node"
  if [ ! -d "$nodedir/node_modules/hyperdht" ]; then
    mkdir -p "$nodedir"
    (cd "$nodedir" && npm install --silent --no-audit --no-fund hyperdht@6.34.0 >/dev/null)
  fi
  echo "--hyperdht-script $1"
}
