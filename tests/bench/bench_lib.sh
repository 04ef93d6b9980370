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
# bench_model CLI SHAPE TYPE: the path of a synthesized model in build/bench-models/ (MODEL=FILE
# instead), made once.
bench_model() {
  local model="${MODEL:-$(dirname "$(dirname "$(dirname "$1")")")/bench-models/$2-$3.gguf}"
  if [ ! -f "$model" ]; then
    mkdir -p "$(dirname "$model")"
    "$1" model synth --shape "$2" --type "$3" --seed 1 --out "$model" >&2
  fi
  echo "$model"
}
# bench_mesh CLI WORKER MODEL PORT N [worker flags...]: a bootstrap node on 127.0.0.1:PORT and N
# workers on loopback, logs in $run (set by the caller, with its pids array and cleanup trap).
# Sets wpids (the workers' pids) and llama_args (--llama-port P per worker); exits when a worker
# does not start.
bench_mesh() {
  local cli="$1" worker="$2" model="$3" port="$4" n="$5" i p
  shift 5
  "$cli" dht bootstrap --listen "127.0.0.1:$port" --no-lan >"$run/boot.log" 2>&1 &
  pids+=($!)
  sleep 0.5
  wpids=()
  for i in $(seq 1 "$n"); do
    "$worker" --model "$model" --bootstrap "127.0.0.1:$port" --identity "$run/w$i.key" "$@" >"$run/w$i.log" 2>&1 &
    pids+=($!); wpids+=($!)
  done
  llama_args=()
  for i in $(seq 1 "$n"); do
    for _ in $(seq 1 300); do grep -q 'joined the network' "$run/w$i.log" && break; sleep 0.2; done
    p="$(grep -o 'ready: llama-server pid [0-9]* on 127.0.0.1:[0-9]*' "$run/w$i.log" | grep -o '[0-9]*$')" ||
      { echo "worker $i did not start:" >&2; tail -n 5 "$run/w$i.log" >&2; exit 1; }
    llama_args+=(--llama-port "$p")
  done
}
