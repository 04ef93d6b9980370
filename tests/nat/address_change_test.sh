#!/usr/bin/env bash
# A changed local address (issue 11 item 4, "a laptop changes network"): in a network namespace of
# its own, a worker joined through a bootstrap node on loopback sees addresses come and go on a new
# interface (a veth pair: a cable plugged in, another Wi-Fi); each time it re-bootstraps its DHT
# node from its bootstrap list (it logs so) and asks are still answered. Root only (77: skip).
#   usage: address_change_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
if [ -z "${QMESH_IN_NETNS:-}" ]; then
  [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null || { echo "SKIP: needs root and unshare -n"; exit 77; }
  QMESH_IN_NETNS=1 exec unshare -n bash "$0" "$@"
fi
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
ip link set lo up
port=$((47900 + RANDOM % 90))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
check "bootstrap node listening" wait_line "$tmp/boot.log" "listening on" 10
"$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w.key" --status-interval 2 >"$tmp/w.log" 2>&1 &
pids+=($!)
check "worker joined the network" wait_line "$tmp/w.log" "joined the network as" 60
ask() { "$cli" ask --bootstrap "$boot" --max-tokens 4 --json "Hello" >"$tmp/ask.json" 2>"$tmp/ask.err"; }
n=0; until ask || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "ask is answered" ask
rejoins() { grep -c 'local addresses changed: rejoining the DHT' "$tmp/w.log"; }
check "no rejoin while nothing changes" test "$(rejoins)" -eq 0

ip link add qv0 type veth peer name qv1 && ip link set qv0 up && ip link set qv1 up
ip addr add 10.77.0.2/24 dev qv0
n=0; until [ "$(rejoins)" -ge 1 ] || [ $n -ge 150 ]; do sleep 0.1; n=$((n + 1)); done
check "a new address: the worker rejoins the DHT" test "$(rejoins)" -eq 1
check "...and asks are answered" ask
ip addr del 10.77.0.2/24 dev qv0 && ip addr add 10.78.0.2/24 dev qv0
n=0; until [ "$(rejoins)" -ge 2 ] || [ $n -ge 150 ]; do sleep 0.1; n=$((n + 1)); done
check "another address: it rejoins again" test "$(rejoins)" -eq 2
check "...and asks are answered" ask
grep 'rejoining' "$tmp/w.log"
finish
