#!/usr/bin/env bash
# lan.lone_worker: zero configuration with no DHT node anywhere. Hosts a and b on one bridged LAN
# (netns_lib.sh's public segment). A qmesh-worker on a, given no --bootstrap and no config file,
# finds no DHT node on the LAN and runs one itself (announced by multicast); then, with no flags:
#   - `qmesh-cli workers` and `ask` on b find it and get an answer;
#   - `ask` on a itself gets one too;
#   - a second worker on b finds a's node and joins the same network: `workers` lists both.
# Every datagram stays inside the namespaces this test creates (and removes).
# Usage: lone_worker_test.sh QMESH_CLI QMESH_WORKER TINY_MODEL  (root; exit 77 = skipped elsewhere)
cli="${1:?usage: $0 QMESH_CLI QMESH_WORKER TINY_MODEL}"; worker="${2:?}"; model="${3:?}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=netns_lib.sh
source "$here/netns_lib.sh"
netns_require
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
cli="$(abs "$cli")"; worker="$(abs "$worker")"; model="$(abs "$model")"

verdict() { if [ "$2" = 1 ]; then pass "$1" "$3"; else fail "$1" "$3"; fi; }
ok_if() { if "$@"; then echo 1; else echo 0; fi; }
# Each host its own config directory (no config file), LAN discovery on.
on() { local h="$1"; shift; in_ns "$h" env -u QMESH_NO_LAN QMESH_CONFIG_DIR="$QMN_DIR/cfg-$h" "$@"; }
bg_on() { local h="$1" log="$2"; shift 2; bg_ns "$h" "$log" env -u QMESH_NO_LAN QMESH_CONFIG_DIR="$QMN_DIR/cfg-$h" "$@"; }
available() { on "$1" "$cli" workers --json 2>/dev/null | grep -o '"available":true' | wc -l; }

step "building the LAN"
public a
public b
_x ip -n "$(ns_of wan)" link set br0 type bridge mcast_snooping 0  # no querier: flood multicast
netns_summary >&2

step "a: qmesh-worker with no --bootstrap and nobody to join"
bg_on a "$QMN_DIR/worker-a.log" "$worker" --model "$model" --status-interval 2
wait_for_line "$QMN_DIR/worker-a.log" "this worker runs one on port [0-9]+ .*announced on the LAN" 30
verdict "the lone worker runs a DHT node, announced on the LAN" "$(ok_if [ $? -eq 0 ])" \
  "$(grep -h -m1 -E "runs one|cannot run one" "$QMN_DIR/worker-a.log")"
wait_for_line "$QMN_DIR/worker-a.log" "joined the network as" 30
verdict "the lone worker joined its own network" "$(ok_if [ $? -eq 0 ])" "$(tail -n 2 "$QMN_DIR/worker-a.log")"

step "b: workers and ask with no flags"
n=0; until [ "$(available b)" = 1 ] || [ $n -ge 20 ]; do sleep 1; n=$((n + 1)); done
verdict "workers on b lists a's worker" "$(ok_if [ "$(available b)" = 1 ])" "after ${n}s"
out="$(on b "$cli" ask --max-tokens 8 --json "Hello from b" 2>"$QMN_DIR/ask-b.err")"; rc=$?
verdict "ask on b answers" "$(ok_if grep -q '"tokens":8' <<<"$([ "$rc" -eq 0 ] && echo "$out")")" "rc=$rc $(head -c 300 "$QMN_DIR/ask-b.err")"
out="$(on a "$cli" ask --max-tokens 8 --json "Hello from a" 2>"$QMN_DIR/ask-a.err")"; rc=$?
verdict "ask on the worker's own host answers" "$(ok_if grep -q '"tokens":8' <<<"$([ "$rc" -eq 0 ] && echo "$out")")" "rc=$rc $(head -c 300 "$QMN_DIR/ask-a.err")"

step "b: a second worker joins a's network"
bg_on b "$QMN_DIR/worker-b.log" "$worker" --model "$model" --status-interval 2
wait_for_line "$QMN_DIR/worker-b.log" "found [0-9]+ DHT node\(s\) on the LAN" 30
verdict "the second worker finds a's node on the LAN" "$(ok_if [ $? -eq 0 ])" "$(grep -h -m1 -E "found|runs one" "$QMN_DIR/worker-b.log")"
n=0; until [ "$(available b)" = 2 ] || [ $n -ge 20 ]; do sleep 1; n=$((n + 1)); done
verdict "workers lists both" "$(ok_if [ "$(available b)" = 2 ])" "after ${n}s"

echo "lan.lone_worker: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
