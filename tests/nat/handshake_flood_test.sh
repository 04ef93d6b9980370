#!/usr/bin/env bash
# nat.handshake_flood: honest asks while an attacker on its own address floods the worker's
# handshakes (issue 11, items 1 and 7). Network namespaces (netns_lib.sh): a bootstrap node (the
# rendezvous and relay), a worker and an attacker on the public segment, honest clients behind a
# cone NAT (their handshakes go through the relay). Phases, each ASKS fresh `qmesh-cli ask`
# processes (a new session, so a new handshake, each):
#   idle       no attack
#   relayed    hello_flood --mode relayed: 20 valid never-confirmed HELLOs with fresh keys every
#              5 s through one relay channel (answering cookies)
#   garbage    20,000 random HELLO-shaped datagrams/s straight to the worker
#   mac1       the same with a valid mac1 (the attacker read the worker's key from the DHT)
# Every honest ask must succeed; the handshake medians are printed (docs/ROBUSTNESS.md).
# Usage: handshake_flood_test.sh QMESH_CLI QMESH_WORKER HELLO_FLOOD TINY_MODEL
# Environment: ASKS (default 20); FLOOD_ARGS (extra hello_flood flags, e.g. --legacy for builds
# older than the HELLO MACs); PHASES (default "idle relayed garbage mac1").
cli="${1:?usage: $0 QMESH_CLI QMESH_WORKER HELLO_FLOOD TINY_MODEL}"; worker="${2:?}"; flood="${3:?}"; model="${4:?}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=netns_lib.sh
source "$here/netns_lib.sh"
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
cli="$(abs "$cli")"; worker="$(abs "$worker")"; flood="$(abs "$flood")"; model="$(abs "$model")"
netns_require
export QMESH_CONFIG_DIR="$QMN_DIR/cfg"
ASKS="${ASKS:-20}"
PHASES="${PHASES:-idle relayed garbage mac1}"

step "building the topology"
public b1
public wk
public atk
home hc cone
netns_summary >&2

PORT=49737
bg_ns b1 "$QMN_DIR/b1.log" "$cli" dht bootstrap --listen "$(ip4 b1):$PORT" --log-level info
wait_for_line "$QMN_DIR/b1.log" '^listening on' 10 || { fail setup "no bootstrap node"; netns_dump; exit 1; }
BOOT="$(ip4 b1):$PORT"
bg_ns wk "$QMN_DIR/worker.log" "$worker" --model "$model" --bootstrap "$BOOT" \
  --identity "$QMN_DIR/wk.key" --status-interval 2 --log-level info
wait_for_line "$QMN_DIR/worker.log" 'joined the network as' 60 ||
  { fail setup "worker did not join: $(tail -n 3 "$QMN_DIR/worker.log" | tr '\n' ' ')"; exit 1; }
for i in $(seq 1 30); do
  in_ns hc timeout 30 "$cli" workers --bootstrap "$BOOT" --json 2>/dev/null | grep -q '"available":true' && break
  sleep 1
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# phase NAME [hello_flood args...]: ASKS honest asks while the attack (if any) runs.
phase() {
  local name="$1"; shift
  local ok=0 i out rc hs="$QMN_DIR/hs-$name" tt="$QMN_DIR/ttft-$name" apid=""
  : >"$hs"; : >"$tt"
  if [ $# -gt 0 ]; then
    bg_ns atk "$QMN_DIR/flood-$name.log" "$flood" --bootstrap "$BOOT" --duration 600 $FLOOD_ARGS "$@"
    apid=$BG_PID
    wait_for_line "$QMN_DIR/flood-$name.log" 'relay channel open' 20 || { fail "$name" "the attack did not start"; return; }
    sleep 2  # let it bite: the relayed attacker's first burst, the floods' load
  fi
  for i in $(seq 1 "$ASKS"); do
    out="$(in_ns hc timeout 60 "$cli" ask --bootstrap "$BOOT" --max-tokens 4 --json --timeout 30 \
           "flood $name $i" 2>>"$QMN_DIR/ask-$name.err")"
    rc=$?
    if [ $rc -eq 0 ]; then
      ok=$((ok + 1))
      json_field "$out" handshake_ms >>"$hs"
      json_field "$out" ttft_ms >>"$tt"
    else
      echo "ask $i: exit $rc" >>"$QMN_DIR/ask-$name.err"
    fi
  done
  [ -n "$apid" ] && bg_stop "$apid"
  local med; med="$(median <"$hs")"
  echo "$name $med" >>"$QMN_DIR/medians"
  local line="$ok/$ASKS asks answered, handshake median $med ms, time to first token median $(median <"$tt") ms"
  [ -n "$apid" ] && line="$line; attacker: $(grep -h '^hello_flood' "$QMN_DIR/flood-$name.log" | tail -n 1)"
  if [ "$ok" -eq "$ASKS" ]; then pass "$name" "$line"; else fail "$name" "$line; $(tail -n 2 "$QMN_DIR/ask-$name.err" | tr '\n' ' ')"; fi
}

for p in $PHASES; do
  case "$p" in
    idle) phase idle ;;
    relayed) phase relayed --mode relayed --count 20 --interval 5 ;;
    garbage) phase garbage --mode garbage --rate 20000 ;;
    mac1) phase mac1 --mode mac1 --rate 20000 ;;
  esac
done
idle="$(awk '$1 == "idle" {print $2}' "$QMN_DIR/medians")"
[ -n "$idle" ] && awk -v idle="$idle" '$1 != "idle" {printf "handshake median under %s: %.1fx idle\n", $1, $2 / idle}' "$QMN_DIR/medians" >&2
grep -E 'cookie|under load' "$QMN_DIR/worker.log" | tail -n 3 >&2

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
