#!/usr/bin/env bash
# `qmesh-cli model get` from one `qmesh-cli model share` holder on loopback vs `curl` from
# `python3 -m http.server` on the same file (issue 14's benchmark: QMesh's MB/s / curl's >= 0.8).
# Prints MB/s of each, the ratio, and CPU seconds per GB of each side (getter + holder; curl +
# server). Everything QMesh sends is encrypted and every chunk verified; curl's is neither.
#   tests/bench/run_model_get_bench.sh [CLI] [SHAPE (default tinyllama, ~1.2 GB q8_0)] [RUNS (3)]
#   MODEL=FILE uses that file instead of a synthesized one.
set -euo pipefail
export QMESH_NO_LAN=1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/tests/bench/bench_lib.sh"
cli="${1:-$root/build/src/cli/qmesh-cli}"
shape="${2:-tinyllama}"
runs="${3:-3}"
model="$(realpath "$(bench_model "$cli" "$shape" "$([ "$shape" = tiny ] || [ "$shape" = small ] && echo f16 || echo q8_0)")")"
size=$(stat -c %s "$model")
run="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

port=$((20000 + RANDOM % 20000))
"$cli" dht bootstrap --listen "127.0.0.1:$port" >"$run/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
"$cli" model share "$model" --bootstrap "127.0.0.1:$port" --listen 127.0.0.1 >"$run/share.log" 2>&1 &
holder=$!; pids+=($holder)
for _ in $(seq 1 600); do grep -q '^sharing' "$run/share.log" && break; sleep 0.2; done
rootid="$(grep '^sharing' "$run/share.log" | grep -o '[0-9a-f]\{64\}' | head -1)"
[ -n "$rootid" ] || { echo "the holder did not start" >&2; cat "$run/share.log" >&2; exit 1; }
hport=$((port + 1))
(cd "$(dirname "$model")" && exec python3 -m http.server "$hport" --bind 127.0.0.1 >"$run/http.log" 2>&1) &
server=$!; pids+=($server)
sleep 1
url="http://127.0.0.1:$hport/$(basename "$model")"

echo "file: $model ($size bytes, root ${rootid:0:16})"
best_q=0; best_c=0
for i in $(seq 1 "$runs"); do
  rm -rf "$run/out" && mkdir -p "$run/out"
  h0=$(cpu_of "$holder")
  /usr/bin/time -f "%e %U %S" -o "$run/get.time" "$cli" model get "$rootid" --bootstrap "127.0.0.1:$port" --out "$run/out" \
    --holders 1 --json >"$run/get.json"
  h1=$(cpu_of "$holder")
  secs="$(python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if "\"done\"" in l][-1]["seconds"])' "$run/get.json")"
  read -r _ gu gs <"$run/get.time"
  cmp -s "$run/out/"*.gguf "$model" || { echo "qmesh: the file differs" >&2; exit 1; }
  q=$(python3 -c "print($size / $secs / 1e6)")
  qcpu=$(python3 -c "print(($gu + $gs + $h1 - $h0) / ($size / 1e9))")
  s0=$(cpu_of "$server")
  /usr/bin/time -f "%e %U %S" -o "$run/curl.time" curl -s -o "$run/curl.out" -w '%{time_total}\n' "$url" >"$run/curl.secs"
  s1=$(cpu_of "$server")
  read -r _ cu cs <"$run/curl.time"
  csecs=$(cat "$run/curl.secs")
  cmp -s "$run/curl.out" "$model" || { echo "curl: the file differs" >&2; exit 1; }
  c=$(python3 -c "print($size / $csecs / 1e6)")
  ccpu=$(python3 -c "print(($cu + $cs + $s1 - $s0) / ($size / 1e9))")
  printf 'run %d: qmesh %.0f MB/s (%.2f CPU s/GB, getter+holder)   curl %.0f MB/s (%.2f CPU s/GB, curl+server)   ratio %.2f\n' \
    "$i" "$q" "$qcpu" "$c" "$ccpu" "$(python3 -c "print($q / $c)")"
  best_q=$(python3 -c "print(max($best_q, $q))"); best_c=$(python3 -c "print(max($best_c, $c))")
  rm -f "$run/curl.out"
done
printf 'best: qmesh %.0f MB/s, curl %.0f MB/s, ratio %.2f\n' "$best_q" "$best_c" "$(python3 -c "print($best_q / $best_c)")"
# The same run's floor: sealing, opening and verifying alone (transfer_floor_bench), and the ratio
# to curl that two cores doing nothing else would reach.
floor_bench="$(dirname "$(dirname "$(dirname "$cli")")")/tests/bench/transfer_floor_bench"
if [ -x "$floor_bench" ]; then
  "$floor_bench" --mib 128 | tee "$run/floor.txt"
  best_floor="$(grep -o '[0-9]* MB/s at best' "$run/floor.txt" | cut -d' ' -f1)"
  printf 'floor / curl: %.2f (the ratio no QMesh download can pass on these cores)\n' "$(python3 -c "print($best_floor / $best_c)")"
fi
