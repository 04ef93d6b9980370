#!/usr/bin/env bash
# A real DHT on loopback: a dozen `qmesh-cli dht bootstrap` processes (127.0.0.1-12 and ::1), a
# record announced through one node and looked up through another, unannounce, TTL expiry, an
# unknown topic, an unreachable bootstrap, and IPv6.
#   usage: dht_cli_test.sh QMESH_CLI
set -uo pipefail
cli="$1"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A port that is free on every address we use (the same port on 127.0.0.x keeps the logs readable).
port=$((40000 + RANDOM % 20000))
"$cli" dht bootstrap --listen "127.0.0.1:$port" --listen "[::1]:$port" >"$tmp/n1.log" 2>&1 &
pids+=($!)
check "first node listens" wait_line "$tmp/n1.log" "listening on 127.0.0.1:$port" 5
for i in $(seq 2 12); do
  "$cli" dht bootstrap --listen "127.0.0.$i:$port" --bootstrap "127.0.0.1:$port" >"$tmp/n$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 2 12); do wait_line "$tmp/n$i.log" "joined the network" 5 || bad "node $i did not join"; done

# Announce through node 3, find it through node 11.
"$cli" dht announce qmesh-test --bootstrap "127.0.0.3:$port" --payload '{"model":"tiny","slots":2}' >"$tmp/a1.log" 2>&1 &
apid=$!; pids+=("$apid")
check "announce reports the nodes that stored it" wait_line "$tmp/a1.log" "announced 'qmesh-test' to" 10
out="$("$cli" dht lookup qmesh-test --bootstrap "127.0.0.11:$port" --json)"; rc=$?
check "lookup exits 0" test "$rc" -eq 0
check "lookup through another node finds the record and its payload" grep -q '"payload":{"model":"tiny","slots":2}' <<<"$out"
check "one record per announcer" test "$(grep -o '"pubkey"' <<<"$out" | wc -l)" -eq 1
out="$("$cli" dht lookup qmesh-test --bootstrap "127.0.0.7:$port")"
check "plain lookup prints one line per record" grep -q '"model":"tiny"' <<<"$out"

# An unknown topic: an empty list, exit 0.
out="$("$cli" dht lookup no-such-topic --bootstrap "127.0.0.5:$port" --json)"; rc=$?
check "unknown topic: exit 0 and an empty list" test "$rc" -eq 0 -a "$out" = '{"records":[]}'

# Unannounce on SIGINT: the record is gone.
kill -INT "$apid"; wait "$apid"
check "announce says it unannounced" grep -q "unannounced 'qmesh-test'" "$tmp/a1.log"
out="$("$cli" dht lookup qmesh-test --bootstrap "127.0.0.9:$port" --json)"
check "after unannounce the record is gone" test "$out" = '{"records":[]}'

# TTL: an announcer killed with -9 cannot unannounce or refresh; its record expires.
"$cli" dht announce qmesh-ttl --ttl 2 --bootstrap "127.0.0.4:$port" >"$tmp/a2.log" 2>&1 &
apid=$!; pids+=("$apid")
check "short-lived record announced" wait_line "$tmp/a2.log" "announced 'qmesh-ttl'" 10
out="$("$cli" dht lookup qmesh-ttl --bootstrap "127.0.0.8:$port" --json)"
check "short-lived record found while fresh" grep -q '"pubkey"' <<<"$out"
kill -9 "$apid"; wait "$apid" 2>/dev/null
sleep 3
out="$("$cli" dht lookup qmesh-ttl --bootstrap "127.0.0.8:$port" --json)"
check "expired record is never returned" test "$out" = '{"records":[]}'

# IPv6 on ::1.
"$cli" dht bootstrap --listen "[::1]:$((port + 1))" --bootstrap "[::1]:$port" >"$tmp/v6.log" 2>&1 &
pids+=($!)
check "IPv6 node joins" wait_line "$tmp/v6.log" "joined the network" 5
"$cli" dht announce qmesh-v6 --bootstrap "[::1]:$port" >"$tmp/a3.log" 2>&1 &
pids+=($!)
check "IPv6 announce" wait_line "$tmp/a3.log" "announced 'qmesh-v6'" 10
out="$("$cli" dht lookup qmesh-v6 --bootstrap "[::1]:$((port + 1))" --json)"
check "IPv6 lookup finds the record" grep -q '"pubkey"' <<<"$out"

# An unreachable bootstrap: a clear error and a non-zero exit within a few seconds.
start=$(date +%s)
out="$("$cli" dht lookup qmesh-test --bootstrap "127.0.0.200:$((port + 2))" 2>&1)"; rc=$?
took=$(( $(date +%s) - start ))
check "unreachable bootstrap: non-zero exit" test "$rc" -ne 0
check "unreachable bootstrap: says no node answered" grep -q "no DHT node answered at 127.0.0.200" <<<"$out"
check "unreachable bootstrap: within 5 s (took ${took} s)" test "$took" -le 5
out="$("$cli" dht lookup x --bootstrap localhost:1 2>&1)"; rc=$?
check "a bad address is one clear line" test "$rc" -ne 0 -a "$(wc -l <<<"$out")" -eq 1

finish
