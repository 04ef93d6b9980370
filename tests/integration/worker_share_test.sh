#!/usr/bin/env bash
# A worker shares the model it serves: its holder record is under the root's topic, signed by the
# worker's key, and asks on the same sessions still work (a stream's first byte tells an ask from
# a transfer); --no-share announces nothing there; bad sharing settings are one line, exit 2.
#   usage: worker_share_test.sh QMESH_WORKER QMESH_CLI MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

port=$((40000 + RANDOM % 20000))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
check "bootstrap node listens" wait_line "$tmp/boot.log" "listening on $boot" 5
root="$("$cli" model root "$model" --json | sed -n 's/.*"root":"\([0-9a-f]*\)".*/\1/p')"
lookup() { "$cli" dht lookup "qmesh-model/$root" --bootstrap "$boot" --json; }

# --no-share: the worker serves, and no holder record appears.
"$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w0.key" --no-share >"$tmp/w0.log" 2>&1 &
w0=$!; pids+=("$w0")
check "--no-share worker joined" wait_line "$tmp/w0.log" "joined the network as" 60
sleep 1
check "--no-share: no holder record under the root's topic" test "$(lookup)" = '{"records":[]}'
check "--no-share: the log does not say it shares" bash -c "! grep -q 'sharing ' $tmp/w0.log"
kill -INT "$w0"; wait "$w0"

# Sharing (the default), with a rate.
"$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w1.key" --share-rate 20M --share-uploads 2 \
  >"$tmp/w1.log" 2>&1 &
w1=$!; pids+=("$w1")
check "worker joined" wait_line "$tmp/w1.log" "joined the network as" 60
check "worker says it shares its model under its root" wait_line "$tmp/w1.log" "sharing .* $root" 10
key="$(sed -n 's/.*joined the network as \([0-9a-f]\{64\}\) .*/\1/p' "$tmp/w1.log" | head -1)"
found=0
for _ in 1 2 3 4 5; do
  out="$(lookup)"
  grep -q "\"pubkey\":\"$key\"" <<<"$out" && { found=1; break; }
  sleep 1
done
check "the worker's holder record is under the root's topic, signed by the worker's key" test "$found" -eq 1
out="$("$cli" ask --bootstrap "$boot" --max-tokens 4 --json "Hello" 2>"$tmp/ask.err")"; rc=$?
check "an ask to a sharing worker still works" test "$rc" -eq 0 -a -n "$(grep '"tokens":4' <<<"$out")"
kill -INT "$w1"; wait "$w1"; rc=$?
check "the worker stops cleanly" test "$rc" -eq 0
check "after the worker stopped, its holder record is gone" test "$(lookup)" = '{"records":[]}'

# Bad settings: one line, exit 2, before llama-server starts.
"$worker" --model "$model" --bootstrap "$boot" --share-rate fast >"$tmp/b1.out" 2>"$tmp/b1.err"; rc=$?
check "--share-rate fast: exit 2, one line" test "$rc" -eq 2 -a "$(wc -l <"$tmp/b1.err")" -eq 1
check "...naming the flag" grep -q -- "--share-rate fast" "$tmp/b1.err"
echo '{"model": "'"$model"'", "share-rate": true}' >"$tmp/bad.json"
"$worker" --config "$tmp/bad.json" --bootstrap "$boot" >"$tmp/b2.out" 2>"$tmp/b2.err"; rc=$?
check "config \"share-rate\": true: exit 2 naming the setting" test "$rc" -eq 2 -a -n "$(grep "setting 'share-rate'" "$tmp/b2.err")"
echo '{"model": "'"$model"'", "share-uploads": 0}' >"$tmp/bad2.json"
"$worker" --config "$tmp/bad2.json" --bootstrap "$boot" >"$tmp/b3.out" 2>"$tmp/b3.err"; rc=$?
check "config \"share-uploads\": 0: exit 2 naming the setting" test "$rc" -eq 2 -a -n "$(grep "share-uploads" "$tmp/b3.err")"
finish
