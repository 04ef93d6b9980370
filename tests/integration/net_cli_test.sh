#!/usr/bin/env bash
# Encrypted sessions with the real binaries on loopback: three `dht bootstrap` peers (rendezvous
# and relay), a `net listen` echo server, and `net connect` clients: a direct path after the
# punch, a relayed one with --no-punch, byte-identical echoes, several clients at once, and the
# one-line errors for a topic nobody announces, an unreachable bootstrap and bad flags.
#   usage: net_cli_test.sh QMESH_CLI
set -uo pipefail
cli="$1"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

port=$((40000 + RANDOM % 20000))
"$cli" dht bootstrap --listen "127.0.0.1:$port" >"$tmp/b1.log" 2>&1 &
pids+=($!)
check "bootstrap listens" wait_line "$tmp/b1.log" "listening on 127.0.0.1:$port" 5
for i in 2 3; do
  "$cli" dht bootstrap --listen "127.0.0.$i:$port" --bootstrap "127.0.0.1:$port" >"$tmp/b$i.log" 2>&1 &
  pids+=($!)
  wait_line "$tmp/b$i.log" "joined the network" 5 || bad "bootstrap $i did not join"
done

"$cli" net listen --topic echo-test --bootstrap "127.0.0.1:$port" --log-level info >"$tmp/listen.log" 2>&1 &
lpid=$!; pids+=("$lpid")
check "listener announces" wait_line "$tmp/listen.log" "listening on" 10

out="$("$cli" net connect --topic echo-test --bootstrap "127.0.0.2:$port" --json --bytes 1048576 2>"$tmp/c1.err")"; rc=$?
check "connect exits 0" test "$rc" -eq 0
check "1 MB echoed byte for byte" grep -q '"ok":true' <<<"$out"
check "the punch moved the session to a direct path" grep -q '"path":"direct"' <<<"$out"
check "connect reports handshake, connect time and RTT" grep -qE '"connect_ms":[0-9.]+.*"handshake_ms":[0-9.]+.*"rtt_ms":[0-9.]+' <<<"$out"
check "the listener saw the session arrive relayed, then go direct" \
  bash -c "grep -q '(relayed)' '$tmp/listen.log' && grep -q 'now direct' '$tmp/listen.log'"

out="$("$cli" net connect --topic echo-test --bootstrap "127.0.0.3:$port" --json --no-punch --bytes 300000)"; rc=$?
check "--no-punch stays on the relay and still echoes" \
  bash -c "test $rc -eq 0 && grep -q '\"path\":\"relayed\"' <<<'$out' && grep -q '\"ok\":true' <<<'$out'"
check "a bootstrap node introduced the sessions (its log says so within 3 s)" \
  bash -c "for i in \$(seq 30); do grep -q 'introduced' '$tmp'/b*.log && exit 0; sleep 0.1; done; exit 1"

out="$("$cli" net connect --topic echo-test --bootstrap "127.0.0.1:$port")"; rc=$?
check "plain output names the path" bash -c "test $rc -eq 0 && grep -q 'connected to .*: direct via' <<<'$out'"

# Several clients at once, each with its own session and stream.
ppids=()
for i in 1 2 3 4; do
  "$cli" net connect --topic echo-test --bootstrap "127.0.0.1:$port" --json --bytes 200000 >"$tmp/par$i.out" 2>&1 &
  ppids+=($!)
done
ok=0
for p in "${ppids[@]}"; do wait "$p" && ok=$((ok + 1)); done
check "four concurrent clients all get their echo" test "$ok" -eq 4

# Errors: one line, non-zero exit.
out="$("$cli" net connect --topic nobody-here --bootstrap "127.0.0.1:$port" 2>&1)"; rc=$?
check "unknown topic: one clear line, exit 1" \
  bash -c "test $rc -eq 1 && test \$(wc -l <<<'$out') -eq 1 && grep -q 'lookup failed: nobody announces' <<<'$out'"
start=$(date +%s)
out="$("$cli" net connect --topic echo-test --bootstrap "127.0.0.1:1" 2>&1)"; rc=$?
check "unreachable bootstrap: clear error, non-zero exit, within 15 s" \
  bash -c "test $rc -ne 0 && grep -q 'no DHT node answered' <<<'$out' && test $(( $(date +%s) - start )) -le 15"
out="$("$cli" net connect --topic x --bootstrap not-an-endpoint 2>&1)"; rc=$?
check "bad --bootstrap: exit 2" bash -c "test $rc -eq 2 && grep -q 'expected HOST:PORT' <<<'$out'"

# SIGTERM of the listener unannounces: later connects find nobody.
kill -TERM "$lpid"; wait "$lpid"
out="$("$cli" net connect --topic echo-test --bootstrap "127.0.0.1:$port" 2>&1)"; rc=$?
check "after the listener stops, connect fails at the lookup" bash -c "test $rc -eq 1 && grep -q 'nobody announces' <<<'$out'"

finish
