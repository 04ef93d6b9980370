#!/usr/bin/env bash
# nat.topology: proves that the namespace topologies of netns_lib.sh behave as QMesh's NAT matrix
# needs, with plain UDP from nat_probe: cone keeps one mapping (and the local port) for every
# destination, symmetric does not; unsolicited inbound is dropped behind cone/symmetric/fw6 and
# delivered to open hosts; cone<->cone simultaneous open works, cone<->symmetric and
# symmetric<->symmetric with one socket a side do not (hence birthday probing and the relay); two
# hosts behind one NAT reach each other on LAN addresses but not by hairpinning; the 10% loss rule
# drops about 10%; an fw6 host talks out over IPv6 and gets replies.
# Usage: nat_topology_test.sh path/to/nat_probe  (root; exit 77 = skipped elsewhere)
probe="${1:?usage: $0 path/to/nat_probe}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=netns_lib.sh
source "$here/netns_lib.sh"
[ -x "$probe" ] || { echo "FAIL: $probe is not an executable"; exit 1; }
probe="$(cd "$(dirname "$probe")" && pwd)/$(basename "$probe")"
netns_require

verdict() { if [ "$2" = 1 ]; then pass "$1" "$3"; else fail "$1" "$3"; fi; }

step "building the topology"
public pub1
public pub2
public pub3
home oa open
home ca cone
home_host ca ca2
home cb cone
home sa symmetric
home sb symmetric
home f6 fw6
home lz cone
add_loss lz 10
netns_summary >&2

ECHO_PORT=3478
for p in pub1 pub2 pub3; do
  bg_ns "$p" "$QMN_DIR/echo-$p.log" "$probe" echo --listen "$(ip4 $p):$ECHO_PORT" \
    --listen "[$(ip6 $p)]:$ECHO_PORT"
done
for p in pub1 pub2 pub3; do
  wait_for_line "$QMN_DIR/echo-$p.log" '^listening \[' 10 || { fail setup "no echo server on $p"; exit 1; }
done
echo4() { echo "$(ip4 "$1"):$ECHO_PORT"; }
echo6() { echo "[$(ip6 "$1")]:$ECHO_PORT"; }
# "host:port" of HOST's socket on PORT, IPv4 or (for fw6 hosts) IPv6.
local_ep() { if [ -n "$(ip4 "$1")" ]; then echo "$(ip4 "$1"):$2"; else echo "[$(ip6 "$1")]:$2"; fi; }
echo_ep() { if [ -n "$(ip4 "$1")" ]; then echo4 "$2"; else echo6 "$2"; fi; }

# The endpoint pub1 sees for HOST's socket on PORT (opens that mapping).
mapped_via_pub1() {
  local out
  out="$(in_ns "$1" "$probe" mapped --bind "$(local_ep "$1" "$2")" --to "$(echo_ep "$1" pub1)")"
  json_field "$out" seen
}

step "check: mapping behaviour (two public servers from one socket)"
mapping_check() {
  local host="$1" type="$2" port="$3" out s1 s2 want
  out="$(in_ns "$host" "$probe" mapped --bind "$(local_ep "$host" "$port")" \
    --to "$(echo_ep "$host" pub1)" --to "$(echo_ep "$host" pub2)")"
  s1="$(json_fields "$out" seen | sed -n 1p)"
  s2="$(json_fields "$out" seen | sed -n 2p)"
  local figures
  figures="local $(local_ep "$host" "$port"), pub1 saw $s1, pub2 saw $s2"
  case "$type" in
  cone)
    want="$(pub4 "$host"):$port"
    verdict "cone mapping is endpoint-independent and keeps the port" \
      "$([ "$s1" = "$want" ] && [ "$s2" = "$want" ] && echo 1 || echo 0)" "$figures"
    ;;
  symmetric)
    verdict "symmetric mapping differs per destination" \
      "$([ "${s1%:*}" = "$(pub4 "$host")" ] && [ "${s2%:*}" = "$(pub4 "$host")" ] &&
        [ "$s1" != "$s2" ] && echo 1 || echo 0)" "$figures"
    ;;
  open | fw6)
    want="$(local_ep "$host" "$port")"
    verdict "$type host is seen at its own address" \
      "$([ "$s1" = "$want" ] && [ "$s2" = "$want" ] && echo 1 || echo 0)" "$figures"
    ;;
  esac
}
mapping_check ca cone 40001
mapping_check sa symmetric 40001
mapping_check oa open 40001
mapping_check f6 fw6 40001

step "check: unsolicited inbound to a mapped endpoint (pub3 sends to what pub1 saw)"
# recv opens the mapping with a HELLO to pub1 (whose reply must come in), then pub3, which the
# host never contacted, sends 5 datagrams to that endpoint; recv is stopped once they are sent.
inbound_check() {
  local host="$1" expect="$2" port=40002 log="$QMN_DIR/inbound-$1.log" mapped res data other pid
  bg_ns "$host" "$log" "$probe" recv --listen "$(local_ep "$host" "$port")" \
    --hello "$(echo_ep "$host" pub1)" --count 5 --timeout-ms 8000
  pid=$BG_PID
  if ! wait_for_line "$log" '^ready' 5; then
    bg_stop "$pid"
    fail "inbound $host" "recv did not start: $(cat "$log")"
    return
  fi
  mapped="$(sed -n 's/^ready mapped=//p' "$log")"
  in_ns pub3 "$probe" send --to "$mapped" --count 5 --interval-us 20000 >/dev/null
  if [ "$expect" = dropped ]; then
    # Nothing will come: stop recv once anything in flight (a few veths: microseconds) has landed.
    sleep 0.5
    kill -TERM "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null # delivered: recv ends by itself at 5 datagrams (or its 8 s timeout)
  res="$(grep '^{' "$log")"
  data="$(json_field "$res" data)"
  other="$(json_field "$res" other)"
  local figures
  figures="$(addrs "$host" | cut -d' ' -f2), mapped $mapped, pub1's reply arrived: ${other:-?},"
  figures+=" unsolicited from pub3 arrived: ${data:-?}/5"
  if [ "$expect" = dropped ]; then
    verdict "unsolicited inbound dropped ($host)" \
      "$([ "$mapped" != none ] && [ "${other:-0}" -ge 1 ] && [ "$data" = 0 ] && echo 1 || echo 0)" \
      "$figures"
  else
    verdict "unsolicited inbound delivered ($host)" "$([ "$data" = 5 ] && echo 1 || echo 0)" \
      "$figures"
  fi
}
inbound_check ca dropped
inbound_check sa dropped
inbound_check f6 dropped
inbound_check oa delivered

step "check: simultaneous open (UDP hole punching, one socket a side, 40 datagrams 50 ms apart)"
# Each side learns its own mapped endpoint from pub1 (as from DHT nodes), then both punch at once.
punches=()
punch_start() {
  local label="$1" a="$2" b="$3" port="$4" expect="$5" mode="${6:-public}" ea eb
  if [ "$mode" = lan ]; then
    ea="$(ip4 "$a"):$port"
    eb="$(ip4 "$b"):$port"
  else
    ea="$(mapped_via_pub1 "$a" "$port")"
    eb="$(mapped_via_pub1 "$b" "$port")"
  fi
  bg_ns "$a" "$QMN_DIR/punch-$a-$port.log" "$probe" punch --bind "$(ip4 "$a"):$port" --peer "$eb"
  local pa=$BG_PID
  bg_ns "$b" "$QMN_DIR/punch-$b-$port.log" "$probe" punch --bind "$(ip4 "$b"):$port" --peer "$ea"
  punches+=("$label|$a|$b|$port|$expect|$pa|$BG_PID|$ea|$eb")
}
punch_finish() {
  local entry label a b port expect pa pb ea eb ra rb
  for entry in "${punches[@]}"; do
    IFS='|' read -r label a b port expect pa pb ea eb <<<"$entry"
    wait "$pa" 2>/dev/null
    wait "$pb" 2>/dev/null
    ra="$(json_field "$(grep '^{' "$QMN_DIR/punch-$a-$port.log")" received)"
    rb="$(json_field "$(grep '^{' "$QMN_DIR/punch-$b-$port.log")" received)"
    local ok=0 figures="$a ($ea) got ${ra:-?}/40 from $b, $b ($eb) got ${rb:-?}/40 from $a"
    if [ "${ra:-0}" -gt 0 ] && [ "${rb:-0}" -gt 0 ]; then ok=1; fi
    if [ "$expect" = succeeds ]; then
      verdict "$label succeeds" "$ok" "$figures"
    else
      verdict "$label fails with one socket a side" "$([ "$ok" = 0 ] && echo 1 || echo 0)" "$figures"
    fi
  done
}
punch_start "cone<->cone simultaneous open" ca cb 40003 succeeds
punch_start "open<->cone simultaneous open" oa lz 40003 succeeds
punch_start "cone<->symmetric (needs birthday probing)" ca sa 40004 fails
punch_start "symmetric<->symmetric (needs the relay)" sa sb 40005 fails
punch_start "same NAT on LAN addresses" ca ca2 40006 succeeds lan
punch_finish

step "check: no hairpinning (ca2 sends to ca's public mapped endpoint)"
hairpin_log="$QMN_DIR/hairpin.log"
bg_ns ca "$hairpin_log" "$probe" recv --listen "$(ip4 ca):40007" --hello "$(echo4 pub1)" --count 5 \
  --timeout-ms 8000
hp=$BG_PID
if wait_for_line "$hairpin_log" '^ready' 5; then
  hp_mapped="$(sed -n 's/^ready mapped=//p' "$hairpin_log")"
  in_ns ca2 "$probe" send --to "$hp_mapped" --count 5 --interval-us 20000 >/dev/null
  sleep 0.5
  kill -TERM "$hp" 2>/dev/null
  wait "$hp" 2>/dev/null
  hp_data="$(json_field "$(grep '^{' "$hairpin_log")" data)"
  verdict "no hairpinning behind one NAT" "$([ "$hp_mapped" != none ] && [ "$hp_data" = 0 ] && echo 1 || echo 0)" \
    "ca2 -> $hp_mapped (ca's mapping): ${hp_data:-?}/5 arrived"
else
  bg_stop "$hp"
  fail "no hairpinning behind one NAT" "recv did not start"
fi

step "check: 10% loss rule on lz's router (500 datagrams to pub2), control through cb's router"
loss_run() {
  local host="$1" port="$2" log="$QMN_DIR/loss-$1.log" pid
  bg_ns pub2 "$log" "$probe" recv --listen "$(ip4 pub2):$port" --count 500 --timeout-ms 20000
  pid=$BG_PID
  wait_for_line "$log" '^ready' 5 || { bg_stop "$pid"; echo "?"; return; }
  in_ns "$host" "$probe" send --to "$(ip4 pub2):$port" --count 500 --interval-us 1000 >/dev/null
  sleep 0.5 # recv ends by itself when all 500 came; with loss it is stopped after this grace
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  json_field "$(grep '^{' "$log")" data
}
lossy="$(loss_run lz 5000)"
control="$(loss_run cb 5001)"
if [[ "$lossy" =~ ^[0-9]+$ ]] && [[ "$control" =~ ^[0-9]+$ ]]; then
  lost=$((500 - lossy))
  verdict "loss rule drops about 10%" "$([ "$lost" -ge 15 ] && [ "$lost" -le 125 ] && echo 1 || echo 0)" \
    "$lost/500 lost = $((lost * 100 / 500))% (band 3-25%)"
  verdict "no loss without the rule (control)" "$([ $((500 - control)) -le 5 ] && echo 1 || echo 0)" \
    "$((500 - control))/500 lost through cb's router (at most 1%)"
else
  fail "loss rule" "receiver did not report (lossy=$lossy control=$control)"
fi

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
