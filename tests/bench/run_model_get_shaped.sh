#!/usr/bin/env bash
# `qmesh-cli model get` from three holders whose links are shaped to 100 Mbit/s each (issue 14's
# benchmark: the getter's rate from three / its rate from one >= 2.7, i.e. >= 90 % of the three
# links). Real network namespaces (tests/nat/netns_lib.sh): a bootstrap node, three holders
# (`qmesh-cli model share`) and the getter on the public segment. Each holder's eth0 sends through
# tbf (rate SHAPE_RATE, burst SHAPE_BURST, latency SHAPE_LATENCY); with netem in the kernel,
# SHAPE_DELAY (default 5ms) is added under it, else the script says it ran without a delay.
# In one run: the getter from ONE holder (only h1 sharing, --holders 1), then from all three
# (--holders 3). Prints MB/s of each, the ratio, CPU s per GB of the getter and of the holders,
# and the bytes received but not used (the endgame's duplicates) per file.
#   sudo tests/bench/run_model_get_shaped.sh [CLI] [SHAPE (default tinyllama, ~1.2 GB q8_0)] [RUNS (1)]
#   MODEL=FILE uses that file instead of a synthesized one; GETTER_CLI=PATH runs the getter with
#   another qmesh-cli (e.g. one built before a change, to compare); H3_RATE=30mbit gives h3 a
#   slower link (the endgame then asks its chunks again); ONE_HOLDER=0 skips the one-holder runs.
#   Root only (exit 77 elsewhere).
set -uo pipefail
export QMESH_NO_LAN=1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/tests/bench/bench_lib.sh"
source "$root/tests/nat/netns_lib.sh"
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
cli="$(abs "${1:-$root/build/src/cli/qmesh-cli}")"
shape="${2:-tinyllama}"
runs="${3:-1}"
rate="${SHAPE_RATE:-100mbit}"
burst="${SHAPE_BURST:-64kb}"
latency="${SHAPE_LATENCY:-20ms}"
delay="${SHAPE_DELAY:-5ms}"
h3_rate="${H3_RATE:-$rate}"
getter_cli="$(abs "${GETTER_CLI:-$cli}")"
[ -x "$cli" ] || { echo "no qmesh-cli at $cli" >&2; exit 2; }
[ -x "$getter_cli" ] || { echo "no qmesh-cli at $getter_cli" >&2; exit 2; }
netns_require
model="$(realpath "$(bench_model "$cli" "$shape" "$([ "$shape" = tiny ] || [ "$shape" = small ] && echo f16 || echo q8_0)")")"
size=$(stat -c %s "$model")
export QMESH_CONFIG_DIR="$QMN_DIR/cfg"
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
py() { python3 -c "$1"; }

public boot
public h1
public h2
public h3
public getter
# The shaping: tbf on each holder's egress (what it uploads), netem under it when the kernel has it.
netem=none
for h in h1 h2 h3; do
  r="$rate"
  [ "$h" = h3 ] && r="$h3_rate"
  if in_ns "$h" tc qdisc add dev eth0 root handle 1: netem delay "$delay" 2>/dev/null; then
    netem="$delay"
    in_ns "$h" tc qdisc add dev eth0 parent 1: handle 2: tbf rate "$r" burst "$burst" latency "$latency" ||
      { echo "tbf failed" >&2; exit 1; }
  else
    in_ns "$h" tc qdisc add dev eth0 root handle 1: tbf rate "$r" burst "$burst" latency "$latency" ||
      { echo "tbf failed" >&2; exit 1; }
  fi
done
[ "$netem" = none ] && step "netem is not in this kernel: no added delay (tbf only)"
step "shaping: $(in_ns h1 tc qdisc show dev eth0 | tr '\n' ' ')"

PORT=49811
bg_ns boot "$QMN_DIR/boot.log" "$cli" dht bootstrap --listen "$(ip4 boot):$PORT" --log-level info
wait_for_line "$QMN_DIR/boot.log" '^listening on' 10 || { echo "no bootstrap node" >&2; exit 1; }
BOOT="$(ip4 boot):$PORT"
declare -A hpid=()
start_holder() {
  bg_ns "$1" "$QMN_DIR/share-$1.log" "$cli" model share "$model" --bootstrap "$BOOT" --listen "$(ip4 "$1")" \
    --identity "$QMN_DIR/$1.key"
  hpid[$1]=$BG_PID
  wait_for_line "$QMN_DIR/share-$1.log" '^sharing' 600 ||
    { echo "holder $1 did not start:" >&2; tail -n 5 "$QMN_DIR/share-$1.log" >&2; exit 1; }
}
start_holder h1
rootid="$(grep '^sharing' "$QMN_DIR/share-h1.log" | grep -o '[0-9a-f]\{64\}' | head -1)"
[ -n "$rootid" ] || { echo "no root in the holder's log" >&2; exit 1; }
echo "file: $model ($size bytes, root ${rootid:0:16}); links: tbf $rate (h3 $h3_rate) burst $burst latency $latency, delay $netem"
[ "$getter_cli" = "$cli" ] || echo "getter: $getter_cli"

# get N LABEL: one download with --holders N; sets mbs, gcpu, hcpu, waste.
get() {
  local n="$1" label="$2" h0=0 h1=0 p secs gu gs wasted out="$QMN_DIR/out"
  rm -rf "$out" && mkdir -p "$out"
  for p in "${hpid[@]}"; do h0=$(py "print($h0 + $(cpu_of "$p"))"); done
  in_ns getter /usr/bin/time -f "%e %U %S" -o "$QMN_DIR/get.time" "$getter_cli" model get "$rootid" --bootstrap "$BOOT" \
    --out "$out" --holders "$n" --json >"$QMN_DIR/get.json" 2>"$QMN_DIR/get.err" ||
    { echo "$label: model get failed: $(tail -n 3 "$QMN_DIR/get.err")" >&2; exit 1; }
  for p in "${hpid[@]}"; do h1=$(py "print($h1 + $(cpu_of "$p"))"); done
  cmp -s "$out/"*.gguf "$model" || { echo "$label: the file differs" >&2; exit 1; }
  read -r secs wasted < <(python3 -c 'import json, sys
d = [json.loads(l) for l in open(sys.argv[1]) if "\"done\"" in l][-1]
print(d["seconds"], d["bytes_wasted"])' "$QMN_DIR/get.json")
  read -r _ gu gs <"$QMN_DIR/get.time"
  mbs=$(py "print($size / $secs / 1e6)")
  gcpu=$(py "print(($gu + $gs) / ($size / 1e9))")
  hcpu=$(py "print(($h1 - $h0) / ($size / 1e9))")
  waste=$(py "print($wasted / $size * 100)")
  printf '%s run %d: %.1f MB/s, %.1f s; CPU s/GB: getter %.2f, holders %.2f; wasted %d bytes (%.2f %% of the file)\n' \
    "$label" "$i" "$mbs" "$secs" "$gcpu" "$hcpu" "$wasted" "$waste"
}

best1=0
for i in $(seq 1 "$runs"); do
  [ "${ONE_HOLDER:-1}" = 0 ] && break
  get 1 "one holder"
  best1=$(py "print(max($best1, $mbs))")
done
start_holder h2
start_holder h3
sleep 2  # their records reach the DHT
best3=0
for i in $(seq 1 "$runs"); do
  get 3 "three holders"
  best3=$(py "print(max($best3, $mbs))")
done
[ "$best1" = 0 ] && { printf 'best: three holders %.1f MB/s\n' "$best3"; exit 0; }
printf 'best: one holder %.1f MB/s, three holders %.1f MB/s, ratio %.2f (target >= 2.7)\n' "$best1" "$best3" \
  "$(py "print($best3 / $best1)")"
