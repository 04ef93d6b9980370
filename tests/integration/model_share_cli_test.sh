#!/usr/bin/env bash
# `qmesh-cli model share` on loopback: a synthesized tiny model is shared, its holder record is
# found under the root's topic by `qmesh-cli dht lookup` (announced by the sharing node's key) and
# is gone after SIGINT (unannounced); bad input is one line and a non-zero exit.
#   usage: model_share_cli_test.sh QMESH_CLI MODEL
set -uo pipefail
cli="$1"; model="$2"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CACHE="$tmp/cache"  # the root cache of this run only

port=$((40000 + RANDOM % 20000))
"$cli" dht bootstrap --listen "127.0.0.1:$port" >"$tmp/boot.log" 2>&1 &
pids+=($!)
check "bootstrap node listens" wait_line "$tmp/boot.log" "listening on 127.0.0.1:$port" 5

root="$("$cli" model root "$model" --json | sed -n 's/.*"root":"\([0-9a-f]*\)".*/\1/p')"
size="$(stat -c %s "$model")"
check "model root gives a root" test "${#root}" -eq 64

"$cli" model share "$model" --bootstrap "127.0.0.1:$port" --share-rate 50M >"$tmp/share.log" 2>"$tmp/share.err" &
spid=$!; pids+=("$spid")
check "model share prints 'sharing NAME ROOT (SIZE bytes)'" wait_line "$tmp/share.log" "^sharing .* $root ($size bytes)$" 20
key="$(sed -n 's/^joined as \([0-9a-f]*\) on .*/\1/p' "$tmp/share.log")"
check "model share says whose key it announces with" test "${#key}" -eq 64

found=0
for _ in 1 2 3 4 5; do  # the announce is under way while the line is printed
  out="$("$cli" dht lookup "qmesh-model/$root" --bootstrap "127.0.0.1:$port" --json)"
  grep -q "\"pubkey\":\"$key\"" <<<"$out" && { found=1; break; }
  sleep 1
done
check "dht lookup of the root's topic finds the holder record, signed by the sharer" test "$found" -eq 1
check "one record under the topic" test "$(grep -o '"pubkey"' <<<"$out" | wc -l)" -eq 1

kill -INT "$spid"; wait "$spid"; rc=$?
check "SIGINT: model share exits 0" test "$rc" -eq 0
check "SIGINT: model share says it stopped" grep -q "^stopped: " "$tmp/share.log"
out="$("$cli" dht lookup "qmesh-model/$root" --bootstrap "127.0.0.1:$port" --json)"
check "after stopping, the holder record is gone (unannounced)" test "$out" = '{"records":[]}'

# Bad input: one line on stderr, a non-zero exit, before anything joins the network.
bad_input() {  # what expected-substring args...
  local what="$1" want="$2"; shift 2
  "$cli" model share "$@" --bootstrap "127.0.0.1:$port" >"$tmp/bad.out" 2>"$tmp/bad.err"; local rc=$?
  if [ "$rc" -ne 0 ] && [ "$(wc -l <"$tmp/bad.err")" -eq 1 ] && grep -q -- "$want" "$tmp/bad.err" && [ ! -s "$tmp/bad.out" ]; then
    ok "$what (exit $rc: $(cat "$tmp/bad.err"))"
  else
    bad "$what: exit $rc, stdout '$(cat "$tmp/bad.out")', stderr '$(cat "$tmp/bad.err")'"
  fi
}
bad_input "a missing file" "No such file or directory" "$tmp/nope.gguf"
bad_input "a directory" "is a directory" "$tmp"
bad_input "a device" "not a regular file" /dev/null
mkfifo "$tmp/fifo"
bad_input "a FIFO (never blocks)" "not a regular file" "$tmp/fifo"
: >"$tmp/empty.gguf"
bad_input "an empty file" "empty file" "$tmp/empty.gguf"
bad_input "a good file then a missing one" "nope2" "$model" "$tmp/nope2"
bad_input "a bad --share-rate" "share-rate" "$model" --share-rate fast
bad_input "no file at all" "file is required" 
finish
