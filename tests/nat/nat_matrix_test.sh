#!/usr/bin/env bash
# nat.matrix: the real qmesh-cli across home NATs built in network namespaces (netns_lib.sh).
# Three DHT bootstrap nodes sit on the public segment (they are the rendezvous and relay nodes).
# In every cell a `net listen` announces a topic from one home and a `net connect` from another
# finds it, opens an encrypted session (relayed handshake, then a punch) and echoes 1 MB through it;
# the echo must come back byte-identical. Prints the path each cell took (direct or relayed).
# Usage: nat_matrix_test.sh path/to/qmesh-cli  (root; exit 77 = skipped elsewhere)
cli="${1:?usage: $0 path/to/qmesh-cli}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=netns_lib.sh
source "$here/netns_lib.sh"
[ -x "$cli" ] || { echo "FAIL: $cli is not an executable"; exit 1; }
cli="$(cd "$(dirname "$cli")" && pwd)/$(basename "$cli")"
netns_require


step "building the topology"
public b1
public b2
public b3
home oa open
home ob open
home ca cone
home cb cone
home sa symmetric
home sb symmetric
home la cone
home_host la la2
home fa fw6
home fb fw6
home lz cone
add_loss lz 10
netns_summary >&2

PORT=49737
for b in b1 b2 b3; do
  args=(dht bootstrap --listen "$(ip4 $b):$PORT" --listen "[$(ip6 $b)]:$PORT" --log-level info)
  [ "$b" != b1 ] && args+=(--bootstrap "$(ip4 b1):$PORT" --bootstrap "[$(ip6 b1)]:$PORT")
  bg_ns "$b" "$QMN_DIR/$b.log" "$cli" "${args[@]}"
done
for b in b1 b2 b3; do
  wait_for_line "$QMN_DIR/$b.log" '^listening on' 10 || { fail setup "no bootstrap node on $b"; netns_dump; exit 1; }
done
BOOT4="$(ip4 b1):$PORT"
BOOT6="[$(ip6 b1)]:$PORT"

cell=0
# run_cell NAME LISTENER CONNECTOR [expected path]
run_cell() {
  local name="$1" l="$2" c="$3" want="${4:-}" boot="$BOOT4" topic out path
  [ -z "$(ip4 "$l")" ] && boot="$BOOT6"
  cell=$((cell + 1))
  topic="matrix-$cell-$$"
  step "cell $name: listen in $l, connect from $c"
  bg_ns "$l" "$QMN_DIR/listen-$cell.log" timeout 120 "$cli" net listen --topic "$topic" --bootstrap "$boot" \
    --log-level info
  local lpid=$BG_PID
  if ! wait_for_line "$QMN_DIR/listen-$cell.log" '^listening on' 20; then
    fail "$name" "the listener did not come up: $(tail -n 3 "$QMN_DIR/listen-$cell.log" | tr '\n' ' ')"
    bg_stop "$lpid"
    return
  fi
  out="$(in_ns "$c" timeout 90 "$cli" net connect --topic "$topic" --bootstrap "$boot" --json --bytes 1048576 \
         --timeout 60 2>"$QMN_DIR/connect-$cell.err")"
  local rc=$?
  bg_stop "$lpid"
  if [ $rc -ne 0 ] || [ "$(json_field "$out" ok)" != true ]; then
    fail "$name" "exit $rc: $(tail -n 2 "$QMN_DIR/connect-$cell.err" | tr '\n' ' ')"
    [ -n "${QMN_DEBUG:-}" ] && cat "$QMN_DIR/listen-$cell.log" >&2
    return
  fi
  path="$(json_field "$out" path)"
  local detail
  detail="$path via $(json_field "$out" remote), NATs $(json_field "$out" local_nat)/$(json_field "$out" remote_nat),"
  detail+=" strategy $(json_field "$out" strategy), connect $(json_field "$out" connect_ms) ms,"
  detail+=" rtt $(json_field "$out" rtt_ms) ms, 1 MB echo in $(json_field "$out" echo_ms) ms"
  [ "$path" != direct ] && detail+=" (punch: $(json_field "$out" punch_failure))"
  if [ -n "$want" ] && [ "$path" != "$want" ]; then
    fail "$name" "expected $want, got $detail"
    return
  fi
  pass "$name" "$detail"
}

run_cell "open<->open" oa ob direct
run_cell "open<->cone" oa ca direct
run_cell "cone<->cone" ca cb direct
run_cell "cone<->symmetric" ca sa
run_cell "symmetric<->cone" sa cb
run_cell "symmetric<->symmetric" sa sb relayed
run_cell "same NAT" la la2 direct
run_cell "IPv6 firewall<->IPv6 firewall" fa fb direct
run_cell "cone<->cone, 10% loss" lz cb

echo
echo "matrix:"
for s in "${summary[@]}"; do echo "  $s"; done
echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
