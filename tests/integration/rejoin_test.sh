#!/usr/bin/env bash
# Issue 11 item 4: the only bootstrap node is killed and restarted on the same address. The
# workers' announces are stored again within two status intervals, a new `qmesh-cli ask` gets an
# answer, and a long-lived client (one qmesh::Client asking through the outage) gets answers
# again. Prints the time from the restart to the first answered ask (not asserted).
#   usage: rejoin_test.sh QMESH_WORKER QMESH_CLI REJOIN_CLIENT TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; lclient="$3"; model="$4"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"   # identities and config stay in the test's folder
port=$((47500 + RANDOM % 400))
boot="127.0.0.1:$port"
interval=2
ms() { echo $(( $(date +%s%N) / 1000000 )); }
start_boot() {
  "$cli" dht bootstrap --listen "$boot" >"$tmp/boot$1.log" 2>&1 &
  bpid=$!; pids+=($bpid)
  wait_line "$tmp/boot$1.log" "listening on" 10
}
# Announce outcomes a worker logged after line $2 of its log (stored or not), in order.
outcomes() { tail -n +"$(($2 + 1))" "$tmp/w$1.log" | grep -o 'announced to [0-9]* nodes\|announce: .*' ; }
lines() { wc -l <"$1"; }

check "bootstrap node listening" start_boot 1
for i in 1 2; do
  "$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval "$interval" \
    --log-level debug >"$tmp/w$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2; do check "worker $i joined the network" wait_line "$tmp/w$i.log" "joined the network as" 60; done
ask() { "$cli" ask --bootstrap "$boot" --max-tokens 4 --json "Hello" >"$tmp/ask.json" 2>"$tmp/ask.err"; }
n=0; until ask || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "ask is answered before the restart" ask

# A long-lived client: one qmesh::Client asking every half second until the stop file appears.
"$lclient" --bootstrap "$boot" --stop "$tmp/stop" >"$tmp/long.log" 2>&1 &
lpid=$!; pids+=($lpid)
check "the long-lived client is answered" wait_line "$tmp/long.log" "^ok" 30

# Kill the bootstrap node and keep it down until every worker failed two announces in a row (by
# then its only routing entry has timed out: the state of the issue).
kill -9 "$bpid"; wait "$bpid" 2>/dev/null
down_at=$(ms)
for i in 1 2; do mark[$i]=$(lines "$tmp/w$i.log"); done
failed_twice() { local i; for i in 1 2; do [ "$(outcomes "$i" "${mark[$i]}" | grep -c 'announce: ')" -ge 2 ] || return 1; done; }
n=0; until failed_twice || [ $n -ge 300 ]; do sleep 0.1; n=$((n + 1)); done
check "with the bootstrap node down, the workers' announces fail" failed_twice
ask; rc=$?
check "...and a new ask fails (exit $rc)" test "$rc" -ne 0

# Restart it on the same address (a fresh node: new token secret, empty store, empty table).
for i in 1 2; do mark[$i]=$(lines "$tmp/w$i.log"); done
echo "long-lived client, asks while the node was down: $(tail -n +2 "$tmp/long.log" | sed 's/ (t=.*//' | uniq -c | paste -sd ';')"
check "bootstrap node restarted on $boot after $(( ($(ms) - down_at) / 1000 )) s" start_boot 2
up_at=$(ms)
first_ok=""
n=0; until [ $n -ge 60 ]; do
  if ask; then first_ok=$(ms); break; fi
  sleep 0.5; n=$((n + 1))
done
if [ -n "$first_ok" ]; then
  echo "figure: bootstrap restart -> first answered qmesh-cli ask: $((first_ok - up_at)) ms (status interval ${interval} s)"
else
  echo "figure: bootstrap restart -> first answered qmesh-cli ask: never within $(( ($(ms) - up_at) / 1000 )) s"
fi
check "a new ask is answered after the restart" test -n "$first_ok"
# Stored again within two status intervals: one of each worker's first two announces after the
# restart (the first may have been under way while the node was down).
settled() { local i; for i in 1 2; do [ "$(outcomes "$i" "${mark[$i]}" | wc -l)" -ge 2 ] || return 1; done; }
n=0; until settled || [ $n -ge 100 ]; do sleep 0.1; n=$((n + 1)); done
for i in 1 2; do
  echo "worker $i, announces after the restart: $(outcomes "$i" "${mark[$i]}" | head -n 4 | paste -sd ';')"
  check "worker $i's record is stored again within two status intervals" \
    bash -c "tail -n +$((mark[$i] + 1)) '$tmp/w$i.log' | grep -o 'announced to [0-9]* nodes\|announce: ' | head -n 2 | grep -q 'announced to'"
done
# The long-lived client, from 12 s after the restart on: records it looked up before (usable for
# 10 s) can no longer answer for it, only a lookup through its rejoined DHT node.
left=$((12000 - ($(ms) - up_at))); [ "$left" -gt 0 ] && sleep "$((left / 1000)).$(printf %03d $((left % 1000)))"
long_mark=$(lines "$tmp/long.log")
long_ok() { tail -n +$((long_mark + 1)) "$tmp/long.log" | grep -q '^ok'; }
n=0; until long_ok || [ $n -ge 200 ]; do sleep 0.1; n=$((n + 1)); done
check "the long-lived client is answered again" long_ok
touch "$tmp/stop"
n=0; while kill -0 "$lpid" 2>/dev/null && [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
echo "long-lived client, asks once the records were back: $(tail -n +$((long_mark + 1)) "$tmp/long.log" | sed 's/ (t=.*//' | uniq -c | paste -sd ';')"
sed 's/^/  long-lived client: /' "$tmp/long.log"
finish
