#!/usr/bin/env bash
# Admission on workers, as clients see it:
# 1. Fairness: one client may hold at most half of a worker's places (running + queued), so that
#    a second client still gets in at once. One worker, 1 slot + queue-capacity 4 (5 places, 3
#    per client): six concurrent asks from one qmesh::Client (one attempt each) get 3 answers and
#    3 "busy"; meanwhile another client's ask is admitted on its first try.
# 2. A worker's own limit is not the ask's fault: two fresh workers, one with a context too small
#    for the prompt (its llama-server answers "bad request"); asks made at once pick either at
#    random, and every one completes (the client tries a second worker after a "bad request").
#   usage: mesh_admission_test.sh QMESH_WORKER QMESH_CLI MESH_LOAD TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; load="$3"; model="$4"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
port=$((47600 + RANDOM % 90))
boot="127.0.0.1:$port"

"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
"$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w.key" --status-interval 2 --parallel 1 \
  --queue-capacity 4 --max-tokens 4000 --log-level debug >"$tmp/w.log" 2>&1 &
pids+=($!)
listed() { [ "$("$cli" workers --bootstrap "$boot" --json 2>/dev/null | jq '[.workers[] | select(.available)] | length')" = 1 ]; }
n=0; until listed || [ $n -ge 60 ]; do sleep 1; n=$((n + 1)); done
check "the worker is listed" listed

# Long answers (the model's whole context), so that the first client's asks hold their places.
"$load" --bootstrap "$boot" --clients 6 --asks 6 --max-tokens 4000 --one-client 1 --max-attempts 1 >"$tmp/a.out" 2>&1 &
apid=$!
pids+=($apid)
check "the first client fills its share: 3 asks running or queued" wait_line "$tmp/w.log" "admitted (3 running or queued)" 30
sleep 0.5  # its other three asks are turned away meanwhile
"$cli" ask --bootstrap "$boot" --raw --max-tokens 4 --json "Room for me?" >"$tmp/b.json" 2>"$tmp/b.err"; rc=$?
cat "$tmp/b.err"
check "another client's ask completes" test "$rc" -eq 0
check "... admitted on its first try (no busy answer, no retry)" test "$(jq -r .retries "$tmp/b.json" 2>/dev/null)" = 0
wait "$apid"; arc=$?
cat "$tmp/a.out"
check "the first client's asks all ended once, as completions or busy" test "$arc" -eq 0
check "... 3 completed and 3 were told busy" grep -q "completed 3, busy 3," "$tmp/a.out"

# 2. Fresh workers have measured no speed yet, so both score the same until they announce one.
kill -TERM "${pids[1]}"; wait "${pids[1]}" 2>/dev/null
"$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/small.key" --status-interval 2 --ctx-size 128 \
  >"$tmp/small.log" 2>&1 &
pids+=($!)
"$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/large.key" --status-interval 2 --ctx-size 2048 \
  >"$tmp/large.log" 2>&1 &
pids+=($!)
two() { [ "$("$cli" workers --bootstrap "$boot" --json 2>/dev/null | jq '[.workers[] | select(.available)] | length')" = 2 ]; }
n=0; until two || [ $n -ge 60 ]; do sleep 1; n=$((n + 1)); done
check "the small- and large-context workers are listed" two
prompt="$(for i in $(seq 1 60); do printf 'tell me more about the river and the town, '; done)"
apids=()
for i in 1 2 3 4 5 6; do
  "$cli" ask --bootstrap "$boot" --raw --max-tokens 4 --json "$i $prompt" >"$tmp/long$i.json" 2>"$tmp/long$i.err" &
  apids+=($!)
done
failed=0
for i in "${!apids[@]}"; do wait "${apids[$i]}" || { failed=$((failed + 1)); cat "$tmp/long$((i + 1)).err"; }; done
check "6 of 6 asks with a prompt too long for one worker complete" test "$failed" -eq 0
retried="$(cat "$tmp"/long?.json | jq -s '[.[] | select(.retries > 0)] | length')"
echo "$retried of 6 asks went to the small-context worker first and moved on"
check "the small-context worker answered none" test "$(grep -c 'ask from [0-9a-f]*: [0-9]* tokens' "$tmp/small.log")" = 0
finish
