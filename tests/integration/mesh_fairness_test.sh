#!/usr/bin/env bash
# Fairness: three identical workers (same model, same flags, same host, one llama-server thread
# each: three on a 2-core host) share 300 asks from concurrent clients, and each answers at least
# half of an equal share (>= 50 of 300), also of each kind of client's asks. Before, they
# answered 101, 92 and 7 of 200: their announced speeds came out up to 50x apart (a mean of
# per-answer rates over short answers) and the better-of-two pick starved the lowest one.
#   usage: mesh_fairness_test.sh QMESH_WORKER QMESH_CLI MESH_LOAD TINY_MODEL [ASKS]
set -uo pipefail
worker="$1"; cli="$2"; load="$3"; model="$4"; asks="${5:-300}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
port=$((48000 + RANDOM % 200))
boot="127.0.0.1:$port"

"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
for i in 1 2 3; do
  "$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval 1 --threads 1 \
    --max-tokens 16 >"$tmp/w$i.log" 2>&1 &
  pids+=($!)
done
listed() { [ "$("$cli" workers --bootstrap "$boot" --json 2>/dev/null | jq '[.workers[] | select(.available)] | length')" = 3 ]; }
n=0; until listed || [ $n -ge 60 ]; do sleep 1; n=$((n + 1)); done
check "three workers are listed" listed

# Warm-up, as on a mesh that has run a while: every worker has served asks and announces the speed
# it measured. Only the asks after it count.
"$load" --bootstrap "$boot" --clients 3 --asks 60 --max-tokens 16 >"$tmp/warm.out" ||
  { bad "warm-up asks"; cat "$tmp/warm.out"; }
sleep 2  # two status intervals: the records carry the measured speeds
answered() { grep -c 'ask from [0-9a-f]*: [0-9]* tokens' "$1"; }
warm=(); for i in 1 2 3; do warm+=("$(answered "$tmp/w$i.log")"); done
echo "warm-up asks answered per worker: ${warm[*]}"

# The speeds the workers announce, sampled while the asks run (for the log: how far apart they are).
( while :; do "$cli" workers --bootstrap "$boot" --json 2>/dev/null |
    jq -c '[.workers[] | {(.id[0:6]): .generation_tokens_per_second}] | add' 2>/dev/null; sleep 2; done ) >"$tmp/speeds.log" &
pids+=($!)
# Half the asks from long-lived clients (mesh_load: 3 clients, each measuring the workers' speeds
# as it goes), half from fresh `qmesh-cli ask` processes (3 loops), at the same time.
{ "$load" --bootstrap "$boot" --clients 3 --asks $((asks / 2)) --max-tokens 16 >"$tmp/load.out"; echo $? >"$tmp/load.rc"; } &
lpid=$!
cli_loop() {
  local k
  for ((k = 0; k < asks / 6; k++)); do
    "$cli" ask --bootstrap "$boot" --max-tokens 16 --json "Question $1.$k" >>"$tmp/cli.json" 2>>"$tmp/cli.err" ||
      echo "ask $1.$k exited $?" >>"$tmp/cli.fail"
  done
}
cpids=()
for j in 1 2 3; do cli_loop "$j" & cpids+=($!); done
wait "$lpid" "${cpids[@]}"
cat "$tmp/load.out"
check "every mesh_load ask ended once, in a completion or busy" test "$(cat "$tmp/load.rc")" -eq 0
check "every qmesh-cli ask exited 0" test ! -s "$tmp/cli.fail"
head -n 5 "$tmp/cli.fail" 2>/dev/null
cli_done="$(jq -s length "$tmp/cli.json")"
completed=$(( $(grep -o 'completed [0-9]*' "$tmp/load.out" | awk '{print $2}') + cli_done ))
sleep 1  # the workers' last log lines
echo "announced generation tokens/s, every 2 s:"; cat "$tmp/speeds.log"
counts=()
for i in 1 2 3; do counts+=("$(( $(answered "$tmp/w$i.log") - warm[i - 1] ))"); done
for i in 1 2 3; do echo "worker $i: $(grep -o 'joined the network as [0-9a-f]\{6\}' "$tmp/w$i.log" | awk '{print $5}')"; done
total=$((counts[0] + counts[1] + counts[2]))
echo "asks answered per worker: ${counts[*]} (of $total; clients saw $completed complete)"
by_cli=()
for i in 1 2 3; do
  id="$(grep -o 'joined the network as [0-9a-f]*' "$tmp/w$i.log" | awk '{print $5}')"
  by_cli+=("$(jq -s --arg id "$id" '[.[] | select(.worker == $id)] | length' "$tmp/cli.json")")
done
echo "...of which from qmesh-cli ask: ${by_cli[*]}; from mesh_load: $((counts[0] - by_cli[0])) $((counts[1] - by_cli[1])) $((counts[2] - by_cli[2]))"
check "the workers completed exactly the asks the clients saw complete" test "$total" = "${completed:-x}"
check "nearly every ask completed" test "$total" -ge $((asks * 9 / 10))
cli_total=$((by_cli[0] + by_cli[1] + by_cli[2]))
for i in 0 1 2; do
  # At least half of the mean share (count * 3 * 2 >= total), of all asks and of each kind of
  # client's: fresh processes choose by the records alone, long-lived clients by what they measured.
  check "worker $((i + 1)) answered at least half of an equal share (${counts[$i]} of $total)" \
    test $((counts[i] * 6)) -ge "$total"
  check "...of the qmesh-cli asks (${by_cli[$i]} of $cli_total)" test $((by_cli[i] * 6)) -ge "$cli_total"
  check "...of the mesh_load asks ($((counts[i] - by_cli[i])) of $((total - cli_total)))" \
    test $(((counts[i] - by_cli[i]) * 6)) -ge $((total - cli_total))
done
finish
