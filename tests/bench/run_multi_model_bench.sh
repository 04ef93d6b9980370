#!/usr/bin/env bash
# Several models per worker: resident memory of one qmesh-worker serving two models (both loaded)
# against two qmesh-workers with one model each (worker + llama-server processes summed), and the
# time of an ask whose model must load first against one whose model is loaded (a worker whose
# budget holds one model; qmesh-cli ask, end to end over loopback; the load time from the DONE).
#   tests/bench/run_multi_model_bench.sh [SHAPE] [ROUNDS]   (SHAPE: tiny (default) or tinyllama)
set -uo pipefail
export QMESH_NO_LAN=1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shape="${1:-tiny}"; rounds="${2:-5}"
worker="$root/build/src/cli/qmesh-worker"; cli="$root/build/src/cli/qmesh-cli"
dir="$root/build/bench-models"
mkdir -p "$dir"
type=f16; [ "$shape" = tinyllama ] && type=q8_0
for s in 1 2; do
  m="$dir/$shape-$type-m$s.gguf"
  [ -f "$m" ] || "$cli" model synth --shape "$shape" --type "$type" --seed "$s" --name "bench-$shape-m$s" --out "$m" >/dev/null || exit 1
done
a="$dir/$shape-$type-m1.gguf"; b="$dir/$shape-$type-m2.gguf"
tmp="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export QMESH_CONFIG_DIR="$tmp/cfg"
port=$((47800 + RANDOM % 90)); boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
tree_rss_mib() {  # a process and its children, in MiB
  local t=0 p
  for p in "$1" $(pgrep -P "$1"); do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
  echo $((t / 1024))
}
ready() { grep -q "joined the network" "$1" 2>/dev/null; }
wait_ready() { local n=0; until ready "$1" || [ $n -ge 600 ]; do sleep 0.1; n=$((n + 1)); done; }
common=(--bootstrap "$boot" --threads 2 --status-interval 5)

"$worker" --model "$a" --model "$b" --memory-budget 64G --identity "$tmp/one.key" "${common[@]}" >"$tmp/one.log" 2>&1 &
one=$!; pids+=($one)
wait_ready "$tmp/one.log"
"$cli" ask --bootstrap "$boot" --model "bench-$shape-m1" --raw --max-tokens 8 hi >/dev/null
"$cli" ask --bootstrap "$boot" --model "bench-$shape-m2" --raw --max-tokens 8 hi >/dev/null
sleep 1
both=$(tree_rss_mib "$one")
kill -TERM "$one"; wait "$one" 2>/dev/null
"$worker" --model "$a" --identity "$tmp/w1.key" "${common[@]}" >"$tmp/w1.log" 2>&1 &
w1=$!; pids+=($w1)
"$worker" --model "$b" --identity "$tmp/w2.key" "${common[@]}" >"$tmp/w2.log" 2>&1 &
w2=$!; pids+=($w2)
wait_ready "$tmp/w1.log"; wait_ready "$tmp/w2.log"
"$cli" ask --bootstrap "$boot" --model "bench-$shape-m1" --raw --max-tokens 8 hi >/dev/null
"$cli" ask --bootstrap "$boot" --model "bench-$shape-m2" --raw --max-tokens 8 hi >/dev/null
sleep 1
two=$(( $(tree_rss_mib "$w1") + $(tree_rss_mib "$w2") ))
kill -TERM "$w1" "$w2"; wait "$w1" "$w2" 2>/dev/null
echo "memory ($shape, both models loaded): one worker with two models $both MiB, two workers with one each $two MiB (worker + llama-server processes, RSS)"

# A budget that holds one model: every ask for the other one loads it (and unloads the first).
# 1.5 x one model's estimate, as the worker logged it ("about N MiB" or "about N.N GiB").
est=$(grep -o 'about [0-9.]* [MG]iB' "$tmp/one.log" | head -1 | awk '{v = $2; if ($3 == "GiB") v *= 1024; printf "%d", v * 1.5}')
"$worker" --model "$a" --model "$b" --memory-budget "${est}M" --identity "$tmp/lru.key" "${common[@]}" >"$tmp/lru.log" 2>&1 &
lru=$!; pids+=($lru)
wait_ready "$tmp/lru.log"
now_ms() { date +%s%3N; }
load_total=0; warm_total=0; load_ms_total=0
for i in $(seq 1 "$rounds"); do
  t0=$(now_ms); "$cli" ask --bootstrap "$boot" --model "bench-$shape-m2" --raw --max-tokens 8 --json hi >"$tmp/l.json" || exit 1; t1=$(now_ms)
  load_total=$((load_total + t1 - t0))
  t0=$(now_ms); "$cli" ask --bootstrap "$boot" --model "bench-$shape-m2" --raw --max-tokens 8 --json hi >/dev/null || exit 1; t1=$(now_ms)
  warm_total=$((warm_total + t1 - t0))
  "$cli" ask --bootstrap "$boot" --model "bench-$shape-m1" --raw --max-tokens 8 hi >/dev/null || exit 1  # back to A
done
waited=$(grep -o 'waited [0-9]* ms for the model to load' "$tmp/lru.log" | awk '{s += $2; n++} END {if (n) printf "%.0f", s / n; else print "?"}')
echo "ask of 8 tokens ($shape, qmesh-cli ask end to end, mean of $rounds): model loaded $((warm_total / rounds)) ms, model must load first $((load_total / rounds)) ms (the worker's load wait: $waited ms on average)"
