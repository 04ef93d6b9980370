#!/usr/bin/env bash
# Many `qmesh-cli ask` processes at once, each a new session (a new relay channel, a new handshake),
# as a busy office or a script does (issue 11, item 3). Every ask must end answered (exit 0) or
# busy (exit 4): never a network error from relay channels, handshake places or rate limits.
#   loopback  PROCS processes on 127.0.0.1, ASKS_EACH asks each, one after the other
#   office    the same from one home behind one cone NAT address (network namespaces; root)
# Usage: ask_burst_test.sh MODE QMESH_CLI QMESH_WORKER TINY_MODEL [PROCS] [ASKS_EACH]
mode="${1:?usage: $0 loopback|office QMESH_CLI QMESH_WORKER TINY_MODEL [PROCS] [ASKS_EACH]}"
cli="${2:?}"; worker="${3:?}"; model="${4:?}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=netns_lib.sh
source "$here/netns_lib.sh"
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
cli="$(abs "$cli")"; worker="$(abs "$worker")"; model="$(abs "$model")"

if [ "$mode" = office ]; then
  procs="${5:-50}"; each="${6:-2}"
  netns_require
  export QMESH_CONFIG_DIR="$QMN_DIR/cfg"
  public b1
  public w1
  public w2
  home office cone
  PORT=49737
  BOOT="$(ip4 b1):$PORT"
  start() { local host="$1" log="$2"; shift 2; bg_ns "$host" "$log" "$@"; }
  client() { in_ns office "$@"; }
else
  procs="${5:-40}"; each="${6:-5}"
  QMN_DIR="$(mktemp -d)"
  export QMESH_NO_LAN=1 QMESH_CONFIG_DIR="$QMN_DIR/cfg"
  bgpids=()
  trap 'for p in "${bgpids[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$QMN_DIR"' EXIT
  BOOT="127.0.0.1:$((47600 + RANDOM % 90))"
  start() { local log="$2"; shift 2; "$@" >"$log" 2>&1 & bgpids+=($!); }
  client() { "$@"; }
fi

start b1 "$QMN_DIR/b1.log" "$cli" dht bootstrap --listen "$BOOT" --log-level info
wait_for_line "$QMN_DIR/b1.log" '^listening on' 10 || { fail setup "no bootstrap node"; exit 1; }
for w in w1 w2; do
  start "$w" "$QMN_DIR/$w.log" "$worker" --model "$model" --bootstrap "$BOOT" --identity "$QMN_DIR/$w.key" \
    --status-interval 2 --queue-capacity 10 --max-tokens 8 --log-level info
done
for w in w1 w2; do
  wait_for_line "$QMN_DIR/$w.log" 'joined the network as' 90 || { fail setup "$w did not join"; exit 1; }
done
listed() { [ "$(client "$cli" workers --bootstrap "$BOOT" --json 2>/dev/null | grep -o '"available":true' | wc -l)" -ge 2 ]; }
for _ in $(seq 1 60); do listed && break; sleep 1; done

step "$procs processes x $each asks ($mode)"
for p in $(seq 1 "$procs"); do
  (
    for i in $(seq 1 "$each"); do
      client timeout 120 "$cli" ask --bootstrap "$BOOT" --max-tokens 4 --timeout 60 "burst $p $i" \
        >/dev/null 2>>"$QMN_DIR/err-$p"
      echo $? >>"$QMN_DIR/rc-$p"
    done
  ) &
done
wait_bursts() { while [ "$(cat "$QMN_DIR"/rc-* 2>/dev/null | wc -l)" -lt $((procs * each)) ]; do sleep 1; done; }
wait_bursts
codes="$(cat "$QMN_DIR"/rc-* | sort -n | uniq -c | awk '{printf "%s exit %s; ", $1, $2}')"
other="$(cat "$QMN_DIR"/rc-* | grep -cv -E '^(0|4)$')"
answered="$(cat "$QMN_DIR"/rc-* | grep -c '^0$')"
if [ "$other" -eq 0 ] && [ "$answered" -gt 0 ]; then
  pass "$mode burst" "$codes"
else
  fail "$mode burst" "$codes $(cat "$QMN_DIR"/err-* 2>/dev/null | sort | uniq -c | sort -rn | head -n 3 | tr '\n' ' ')"
fi
echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
