#!/usr/bin/env bash
# One worker, its llama-server killed (-9) mid-answer: the worker reports the loss with a retry
# hint, its supervisor brings llama-server back, and the ask waits for it and resumes on the same
# worker: exit 0, every token asked for, none lost or duplicated. (Before: exit 6, "network".)
#   usage: mesh_comeback_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
port=$((48300 + RANDOM % 200))
boot="127.0.0.1:$port"
tokens=1500

"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
"$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w.key" --status-interval 1 \
  --max-tokens "$tokens" --log-level debug >"$tmp/w.log" 2>&1 &
wpid=$!; pids+=($wpid)
listed() { [ "$("$cli" workers --bootstrap "$boot" --json 2>/dev/null | jq '[.workers[] | select(.available)] | length')" = 1 ]; }
n=0; until listed || [ $n -ge 60 ]; do sleep 1; n=$((n + 1)); done
check "the worker is listed" listed

ask() { "$cli" ask --bootstrap "$boot" --raw --temperature 0 --seed 1 --max-tokens "$tokens" --timeout 120 "$@"; }
# The answer uninterrupted, to compare with.
ask --json "In the beginning" >"$tmp/ref.json" 2>"$tmp/ref.err"
check "an uninterrupted ask exits 0 with $tokens tokens" jq -e ".tokens == $tokens" "$tmp/ref.json" >/dev/null
jq -j .text "$tmp/ref.json" >"$tmp/ref.txt"

# The same ask, streamed to a file (stats on stderr), its llama-server killed mid-answer: as soon
# as the first text has arrived and while the ask still runs. The tiny model may have generated
# every token by the time the kill lands (the answer is then whole, nothing was lost): try again,
# up to 5 times, until the worker saw llama-server die mid-answer.
lost() { grep -c "ask from .*worker_lost" "$tmp/w.log"; }
caught=""
for attempt in 1 2 3 4 5; do
  before_lost="$(lost)"
  wait_line "$tmp/w.log" "ready (pid [0-9]*, restarts $((attempt - 1)))" 30 || true
  child="$(pgrep -P "$wpid" | head -n 1)"
  : >"$tmp/fault.txt"
  ask --verbose "In the beginning" >"$tmp/fault.txt" 2>"$tmp/fault.err" &
  apid=$!
  for ((n = 0; n < 3000; n++)); do [ -s "$tmp/fault.txt" ] && break; sleep 0.01; done
  if [ -z "$child" ] || [ ! -s "$tmp/fault.txt" ] || ! kill -0 "$apid" 2>/dev/null; then
    child=""
    break
  fi
  kill -9 "$child"
  cp "$tmp/fault.txt" "$tmp/before.txt"  # what the caller had when llama-server died (or less)
  wait "$apid"; rc=$?
  if [ "$(lost)" -gt "$before_lost" ]; then caught=$attempt; break; fi
  echo "attempt $attempt: the answer was whole before llama-server died; again"
done
if [ -n "$child" ] && [ -n "$caught" ]; then
  cat "$tmp/fault.err"
  check "ask with the only worker's llama-server killed mid-answer exits 0" test "$rc" -eq 0
  check "...restarted it" wait_line "$tmp/w.log" "ready (pid [0-9]*, restarts $caught)" 30
  check "...and the ask resumed there with every token asked for" \
    grep -q "^worker [0-9a-f]*: $tokens tokens, .*, [0-9]* retries, resumed on the same worker" "$tmp/fault.err"
  # Nothing lost or replaced: the answer goes on from what the caller had. The continuation
  # matches the uninterrupted answer unless the text re-tokenizes differently at the seam.
  before="$(wc -c <"$tmp/before.txt")"
  echo "llama-server killed after $before bytes of $(wc -c <"$tmp/ref.txt")"
  check "...continuing the text the caller had" cmp -s -n "$before" "$tmp/before.txt" "$tmp/fault.txt"
  check "...which is the uninterrupted answer's beginning" cmp -s -n "$before" "$tmp/ref.txt" "$tmp/fault.txt"
  if cmp -s <(head -c -1 "$tmp/fault.txt") "$tmp/ref.txt"; then echo "the whole answer equals the uninterrupted one"
  else echo "the answer differs from the uninterrupted one after byte $(cmp <(head -c -1 "$tmp/fault.txt") "$tmp/ref.txt" | awk '{print $5}')"; fi
else
  bad "no ask in progress to kill llama-server under (in 5 attempts)"
  wait "$apid"; echo "the ask exited $?"; head -c 300 "$tmp/fault.txt"; cat "$tmp/fault.err"; pgrep -a -P "$wpid"
fi
finish
