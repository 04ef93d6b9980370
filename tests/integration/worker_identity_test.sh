#!/usr/bin/env bash
# Issue 12 §5.3: two workers started on one machine with the default identity. The second one
# refuses at once (before llama-server starts) with one line naming --identity, instead of
# announcing under the first one's key, where their records would overwrite each other and only
# one would be seen. With its own --identity it runs, and both are listed. Two concurrent
# `qmesh-cli ask` processes with the same config directory are not refused (the lock is the
# workers'). When the first worker dies (kill -9) its lock goes with it.
#   usage: worker_identity_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"   # the default identity is $tmp/cfg/identity
port=$((47900 + RANDOM % 400))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
check "bootstrap node listening" wait_line "$tmp/boot.log" "listening on" 10
run_worker() {  # run_worker NAME [flags...]: in the background, log in $tmp/NAME.log
  local name="$1"; shift
  "$worker" --model "$model" --bootstrap "$boot" --threads 1 --status-interval 1 "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!); eval "${name}_pid=$!"
}
run_worker w1
check "worker 1 (default identity) joined the network" wait_line "$tmp/w1.log" "joined the network as" 60
check "...with the identity created in the config directory" test -f "$tmp/cfg/identity"

# The same default identity: refused, one line, before llama-server.
timeout 60 "$worker" --model "$model" --bootstrap "$boot" --threads 1 >"$tmp/w2.out" 2>"$tmp/w2.err"; rc=$?
cat "$tmp/w2.err"
check "a second worker with the default identity exits non-zero at once (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "...with one line on stderr" test "$(wc -l <"$tmp/w2.err")" -eq 1
check "...naming the identity file and --identity" \
  grep -q "^qmesh-worker: identity $tmp/cfg/identity is in use by another running worker; .*--identity FILE" "$tmp/w2.err"
check "...and no llama-server was started" bash -c "! grep -q 'ready: llama-server' '$tmp/w2.err' '$tmp/w2.out'"

# With a key of its own it runs, and both workers are listed.
run_worker w3 --identity "$tmp/w3.key"
check "a second worker with --identity joined the network" wait_line "$tmp/w3.log" "joined the network as" 60
id1="$("$cli" id)"; id3="$("$cli" id --identity "$tmp/w3.key")"
check "the two keys differ" test -n "$id1" -a -n "$id3" -a "$id1" != "$id3"
both() {
  "$cli" workers --bootstrap "$boot" --json >"$tmp/workers.json" 2>/dev/null || return 1
  grep -q "\"id\":\"$id1\"" "$tmp/workers.json" && grep -q "\"id\":\"$id3\"" "$tmp/workers.json"
}
n=0; until both || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "qmesh-cli workers lists both workers" both

# Clients share the config directory (and any key) freely: two asks at once both answered.
for i in 1 2; do
  "$cli" ask --bootstrap "$boot" --max-tokens 4 --json "Hello $i" >"$tmp/ask$i.json" 2>"$tmp/ask$i.err" &
  ask_pid[$i]=$!
done
for i in 1 2; do
  wait "${ask_pid[$i]}"; rc=$?
  check "concurrent qmesh-cli ask $i is answered (exit $rc)" test "$rc" -eq 0
  [ "$rc" -eq 0 ] || cat "$tmp/ask$i.err"
done

# The lock dies with its worker, however it ends.
kill -9 "$w1_pid"; wait "$w1_pid" 2>/dev/null
run_worker w4
check "after worker 1 was killed, a worker with the default identity starts" \
  wait_line "$tmp/w4.log" "joined the network as $id1" 60
finish
