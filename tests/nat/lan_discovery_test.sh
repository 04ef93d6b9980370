#!/usr/bin/env bash
# lan.discovery: the real qmesh-cli (lan beacon / lan listen) on a LAN of network namespaces.
# Hosts a and b on one bridge (netns_lib.sh's public segment: 198.18.0.0/16 and fd00:18::/64).
#   - a listener on b finds a's beacon at a's IPv4 and IPv6 address with a's key;
#   - a listener on a itself (another process on the beacon's host) finds it too;
#   - ten listeners asking at once draw at most a couple of multicast answers from a (no
#     amplification: answers are rate limited and one answer serves every asker);
#   - a namespace with only loopback finds over IPv4 127.0.0.1 (IPv6 multicast needs a real link);
#   - nothing to find: exit 1 with a clear line; no interface up: "LAN discovery unavailable".
# Every datagram stays inside the namespaces this test creates (and removes).
# Usage: lan_discovery_test.sh path/to/qmesh-cli  (root; exit 77 = skipped elsewhere)
cli="${1:?usage: $0 path/to/qmesh-cli}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=netns_lib.sh
source "$here/netns_lib.sh"
[ -x "$cli" ] || { echo "FAIL: $cli is not an executable"; exit 1; }
cli="$(cd "$(dirname "$cli")" && pwd)/$(basename "$cli")"
netns_require

# verdict NAME RESULT DETAIL: RESULT is 1 (pass) or anything else (fail).
verdict() { if [ "$2" = 1 ]; then pass "$1" "$3"; else fail "$1" "$3"; fi; }
# ok_if CMD...: 1 when the command succeeds, else 0.
ok_if() { if "$@"; then echo 1; else echo 0; fi; }
has() { grep -q"${3:-}" -- "$1" <<<"$2"; }  # has PATTERN TEXT [F]

PORT=4000
step "building the LAN"
public a
public b
# Flood multicast on the bridge (no IGMP/MLD snooping, there is no querier on this LAN).
_x ip -n "$(ns_of wan)" link set br0 type bridge mcast_snooping 0
netns_summary >&2
A4="$(ip4 a)"
A6="$(ip6 a)"

step "a: lan beacon --port $PORT"
bg_ns a "$QMN_DIR/beacon-a.log" "$cli" lan beacon --port "$PORT" --for 60 --json
beacon_pid=$BG_PID
wait_for_line "$QMN_DIR/beacon-a.log" '"event":"start"' 10 || { fail setup "no beacon started on a"; exit 1; }
KEY="$(json_field "$(grep '"event":"start"' "$QMN_DIR/beacon-a.log")" pubkey)"
[ ${#KEY} -eq 64 ] || { fail setup "no key in the beacon's start line"; exit 1; }

step "b: lan listen (another host on the LAN)"
out="$(in_ns b "$cli" lan listen --timeout 10 --count 2 --json 2>"$QMN_DIR/listen-b.err")"
rc=$?
echo "$out" >"$QMN_DIR/listen-b.log"
verdict "listener on b exits 0" "$(ok_if [ "$rc" -eq 0 ])" "rc=$rc $(head -c 300 "$QMN_DIR/listen-b.err")"
verdict "found over IPv4" "$(ok_if has "\"endpoint\":\"$A4:$PORT\".*\"pubkey\":\"$KEY\"" "$out")" "$A4:$PORT"
verdict "found over IPv6" "$(ok_if has "\"endpoint\":\"\[$A6\]:$PORT\".*\"pubkey\":\"$KEY\"" "$out")" "[$A6]:$PORT"
verdict "flags say dht-node" "$(ok_if has dht-node "$out")" "$(head -n 1 <<<"$out")"

step "a: lan listen on the beacon's own host"
out="$(in_ns a "$cli" lan listen --timeout 4 --json 2>"$QMN_DIR/listen-a.err")"
echo "$out" >"$QMN_DIR/listen-a.log"
verdict "same host finds it over IPv4" "$(ok_if has "\"endpoint\":\"$A4:$PORT\".*$KEY" "$out")" "$A4:$PORT"
verdict "same host finds it over IPv6" "$(ok_if has "\"endpoint\":\"[$A6]:$PORT\"" "$out" F)" "[$A6]:$PORT"
verdict "same host finds it on loopback" "$(ok_if has "\"endpoint\":\"127.0.0.1:$PORT\"" "$out" F)" "127.0.0.1:$PORT"

step "b: ten listeners at once; count what a multicasts"
# Counters in a: beacons it sends on eth0 to the group port, queries it receives there.
in_ns a nft -f - <<'EOF'
table inet lan_count {
  counter sent {}
  counter heard {}
  chain output { type filter hook output priority filter; policy accept; oifname "eth0" udp dport 49738 counter name sent; }
  chain input { type filter hook input priority filter; policy accept; iifname "eth0" udp dport 49738 counter name heard; }
}
EOF
pids=()
t0=$(date +%s%N)
for i in $(seq 1 10); do
  ip netns exec "$(ns_of b)" "$cli" lan listen --timeout 5 --count 1 >"$QMN_DIR/burst-$i.log" 2>&1 &
  pids+=($!)
  QMN_PIDS+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
burst_s=$(( ($(date +%s%N) - t0 + 999999999) / 1000000000 ))
sleep 1
counts="$(in_ns a nft list table inet lan_count)"
sent="$(awk '/counter sent/{getline; print $2}' <<<"$counts")"
heard="$(awk '/counter heard/{getline; print $2}' <<<"$counts")"
verdict "every listener found a" "$(ok_if [ "$ok" -eq 10 ])" "$ok of 10"
verdict "a heard the queries" "$(ok_if [ "${heard:-0}" -ge 10 ])" "heard $heard datagrams"
# Per family at most one answer per second of the burst, plus one; all the same size as a query.
amp_ok=0
if [ -n "$sent" ] && [ "$sent" -le $((2 * (burst_s + 1))) ] && [ "$sent" -le "${heard:-0}" ]; then amp_ok=1; fi
verdict "a answered at most once a second, by multicast" "$amp_ok" \
  "sent $sent datagrams for $heard heard in a burst of ${burst_s} s"

step "nothing to find: another multicast port"
out="$(in_ns b "$cli" lan listen --timeout 2 --multicast-port 49799 2>&1)"
rc=$?
verdict "no node: exit 1 with one clear line" \
  "$([ "$rc" -eq 1 ] && ok_if has "no QMesh node found on the LAN within 2 s" "$out")" \
  "rc=$rc: $out"

bg_stop "$beacon_pid"

step "loopback only"
lo_ns="${QMN_PREFIX}lo"
_x ip netns add "$lo_ns"
QMN_CREATED+=("$lo_ns")
_x ip -n "$lo_ns" link set lo up
ip netns exec "$lo_ns" "$cli" lan beacon --port 4100 --for 20 >"$QMN_DIR/beacon-lo.log" 2>&1 &
QMN_PIDS+=($!)
lo_beacon=$!
out="$(ip netns exec "$lo_ns" "$cli" lan listen --timeout 5 --count 1 2>&1)"
verdict "loopback-only host finds 127.0.0.1 over IPv4" "$(ok_if has "found 127.0.0.1:4100 key" "$out")" "$out"
bg_stop "$lo_beacon"

step "no interface up"
bare_ns="${QMN_PREFIX}bare"
_x ip netns add "$bare_ns"
QMN_CREATED+=("$bare_ns")
out="$(ip netns exec "$bare_ns" "$cli" lan listen --timeout 2 2>&1)"
rc=$?
verdict "unavailable: exit 1 and a warning" "$([ "$rc" -eq 1 ] && ok_if has "LAN discovery unavailable" "$out")" "rc=$rc: $out"

echo "lan.discovery: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
