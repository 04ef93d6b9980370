#!/usr/bin/env bash
# Load: 1,000 asks from 50 concurrent clients on 3 workers with queue-capacity 10. Every ask ends
# in a completion or a clear busy error, none lost, none duplicated; the workers answered exactly
# the asks the clients saw complete.
#   usage: mesh_load_test.sh QMESH_WORKER QMESH_CLI MESH_LOAD TINY_MODEL [ASKS] [CLIENTS]
set -uo pipefail
worker="$1"; cli="$2"; load="$3"; model="$4"; asks="${5:-1000}"; clients="${6:-50}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
port=$((47500 + RANDOM % 90))
boot="127.0.0.1:$port"

"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
for i in 1 2 3; do
  "$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval 2 \
    --queue-capacity 10 --max-tokens 8 >"$tmp/w$i.log" 2>&1 &
  pids+=($!)
done
listed() { [ "$("$cli" workers --bootstrap "$boot" --json 2>/dev/null | jq '[.workers[] | select(.available)] | length')" = 3 ]; }
n=0; until listed || [ $n -ge 60 ]; do sleep 1; n=$((n + 1)); done
check "three workers are listed" listed

out="$("$load" --bootstrap "$boot" --clients "$clients" --asks "$asks" --max-tokens 8)"; rc=$?
echo "$out"
check "every ask ended once, in a completion or busy" test "$rc" -eq 0
completed="$(grep -o 'completed [0-9]*' <<<"$out" | awk '{print $2}')"
sleep 1  # the workers' last log lines
answered="$(cat "$tmp"/w?.log | grep -c 'ask from [0-9a-f]*: [0-9]* tokens')"
echo "workers answered $answered asks; clients saw $completed complete"
check "the workers completed exactly the asks the clients saw complete" test "$answered" = "$completed"
check "some asks completed" test "${completed:-0}" -gt 0
finish
