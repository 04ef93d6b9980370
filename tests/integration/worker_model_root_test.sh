#!/usr/bin/env bash
# qmesh-worker --model-root on loopback, real processes: a `qmesh-cli model share` holder of a
# synthesized small model; a worker given only the model's root and an empty --models-dir fetches
# it (byte-identical), announces it, and answers an ask for its root prefix; another worker given
# the model's name resolves it through that worker's record and fetches it; started again, it
# finds the file and fetches nothing. Without --models-dir it fetches into $QMESH_CACHE/models; a
# SIGTERM mid-fetch stops it (the .part kept) and the next start fetches only the rest. Bad input:
# a root nobody holds (one line, exit 1, within --fetch-timeout), a malformed root (exit 2), a
# file that is not a GGUF (deleted, exit 1). Nothing asserts on time; the slow holder's rate only
# makes the fetch last long enough to be interrupted.
#   usage: worker_model_root_test.sh QMESH_WORKER QMESH_CLI
set -uo pipefail
worker="$1"; cli="$2"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$tmp/src"
"$cli" model synth --shape small --seed 21 --out "$tmp/src/small.gguf" >/dev/null || { bad "synth"; finish; exit 1; }
size=$(stat -c %s "$tmp/src/small.gguf")
root="$("$cli" model root --json "$tmp/src/small.gguf" | sed -n 's/.*"root":"\([0-9a-f]*\)".*/\1/p')"
check "the model has a root ($root, $size bytes)" test "${#root}" -eq 64

port=$((20000 + RANDOM % 20000))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
check "bootstrap node listens" wait_line "$tmp/boot.log" "listening on $boot" 5

"$cli" model share "$tmp/src/small.gguf" --bootstrap "$boot" --listen 127.0.0.1 >"$tmp/share.log" 2>&1 &
holder=$!; pids+=("$holder")
check "the holder shares the root" wait_line "$tmp/share.log" "sharing .*$root" 20

start_worker() {  # name, then the worker's flags; its pid in $wpid, its log $tmp/NAME.log
  local name="$1"; shift
  "$worker" --bootstrap "$boot" --listen 127.0.0.1 --identity "$tmp/w.key" "$@" >"$tmp/$name.log" 2>&1 &
  wpid=$!; pids+=("$wpid")
}
stop_worker() { kill -INT "$wpid"; wait "$wpid"; }

# 1. An empty --models-dir: fetched, byte-identical, announced, asked.
mkdir -p "$tmp/models"
start_worker w1 --model-root "$root" --models-dir "$tmp/models"
check "worker 1 joined" wait_line "$tmp/w1.log" "joined the network as" 120
check "worker 1 logged the fetch" grep -q "fetched model ${root:0:16}" "$tmp/w1.log"
file="$(ls "$tmp/models"/*.gguf 2>/dev/null | head -1)"
check "one file in the folder ($(ls "$tmp/models"))" test "$(ls "$tmp/models" | wc -l)" -eq 1 -a -n "$file"
check "the file is byte-identical to the source" cmp -s "$file" "$tmp/src/small.gguf"
check "the worker serves it" grep -q "ready: llama-server pid .* model $file" "$tmp/w1.log"
listed=0
for _ in $(seq 1 20); do
  "$cli" models --bootstrap "$boot" --json >"$tmp/models.json" 2>/dev/null && grep -q "\"root\":\"$root\"" "$tmp/models.json" && { listed=1; break; }
  sleep 0.5
done
check "qmesh-cli models lists the root" test "$listed" -eq 1
out="$("$cli" ask --bootstrap "$boot" --model "${root:0:12}" --max-tokens 4 --json "Hello" 2>"$tmp/ask.err")"; rc=$?
check "an ask for the root prefix is answered ($rc: $(tail -1 "$tmp/ask.err"))" test "$rc" -eq 0 -a -n "$(grep '"tokens":4' <<<"$out")"
# A NAME: resolved through worker 1's record, fetched from the holders (worker 1 is one now).
mkdir -p "$tmp/byname"
"$worker" --bootstrap "$boot" --listen 127.0.0.1 --identity "$tmp/n.key" --model-root qmesh-synth-small \
  --models-dir "$tmp/byname" >"$tmp/n.log" 2>&1 &
npid=$!; pids+=("$npid")
check "by name: joined" wait_line "$tmp/n.log" "joined the network as" 120
check "by name: resolved to the root" grep -q "model 'qmesh-synth-small' is $root on the mesh" "$tmp/n.log"
check "by name: byte-identical" cmp -s "$(ls "$tmp/byname"/*.gguf | head -1)" "$tmp/src/small.gguf"
kill -INT "$npid"; wait "$npid"
stop_worker; rc=$?
check "worker 1 stops cleanly ($rc)" test "$rc" -eq 0

# 2. Again: the file is there, nothing is fetched.
start_worker w2 --model-root "$root" --models-dir "$tmp/models"
check "worker 2 joined" wait_line "$tmp/w2.log" "joined the network as" 120
check "worker 2 found the file" grep -q "is here already (no download)" "$tmp/w2.log"
check "worker 2 fetched nothing" bash -c "! grep -q 'fetching model' '$tmp/w2.log'"
stop_worker

# 3. No --models-dir: $QMESH_CACHE/models. A slow holder only; SIGTERM mid-fetch, then the rest.
kill -INT "$holder"; wait "$holder"
"$cli" model share "$tmp/src/small.gguf" --bootstrap "$boot" --listen 127.0.0.1 --share-rate 1M >"$tmp/slow.log" 2>&1 &
pids+=($!)
check "the slow holder shares the root" wait_line "$tmp/slow.log" "sharing .*$root" 20
# $QMESH_CACHE is where the worker looks for llama-server too: name the one it uses now.
llama="$("$worker" --version | sed -n 's/^llama-server: .* (\(.*\), from .*/\1/p')"
check "llama-server found ($llama)" test -x "$llama"
export QMESH_LLAMA_SERVER="$llama" QMESH_CACHE="$tmp/cache"
start_worker w3 --model-root "$root"
check "worker 3 reports progress" wait_line "$tmp/w3.log" "fetching model ${root:0:16}: [1-9][0-9.]* / .* MB/s" 60
kill -TERM "$wpid"; wait "$wpid"; rc=$?
check "SIGTERM mid-fetch: exit 143 ($rc; $(tail -1 "$tmp/w3.log"))" test "$rc" -eq 143
check "SIGTERM mid-fetch: the .part is kept" test -n "$(ls "$tmp/cache/models/"*.part 2>/dev/null)"
start_worker w4 --model-root "$root"
check "worker 4 joined" wait_line "$tmp/w4.log" "joined the network as" 120
resumed="$(sed -n "s/.*fetched model ${root:0:16}: .* MB fetched, \([0-9.]*\) MB resumed.*/\1/p" "$tmp/w4.log")"
check "worker 4 fetched only the rest (resumed ${resumed:-?} MB)" test -n "$resumed" -a "$resumed" != "0.0"
file="$(ls "$tmp/cache/models"/*.gguf 2>/dev/null | head -1)"
check "the file in \$QMESH_CACHE/models is byte-identical" cmp -s "$file" "$tmp/src/small.gguf"
stop_worker
unset QMESH_CACHE

# 4. Bad input: one line on stderr (--log-level warn keeps the rest quiet), a non-zero exit.
mkdir -p "$tmp/empty"
nobody="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
err="$(timeout 90 "$worker" --bootstrap "$boot" --identity "$tmp/b.key" --models-dir "$tmp/empty" --model-root "$nobody" \
  --fetch-timeout 3 --log-level warn 2>&1 >/dev/null)"; rc=$?
check "nobody holds it: exit 1 ($rc)" test "$rc" -eq 1
check "nobody holds it: one line ($err)" test "$(wc -l <<<"$err")" -eq 1 -a -n "$(grep "no holder has $nobody" <<<"$err")"
check "nobody holds it: the folder stays empty" test -z "$(ls "$tmp/empty")"
for bad_root in "${nobody}0" "" "${nobody:0:63}z"; do
  err="$("$worker" --bootstrap "$boot" --identity "$tmp/b.key" --model-root "$bad_root" 2>&1 >/dev/null)"; rc=$?
  check "malformed root '$bad_root': exit 2, one line ($rc: $err)" test "$rc" -eq 2 -a "$(wc -l <<<"$err")" -eq 1
done
err="$("$worker" --bootstrap "$boot" --identity "$tmp/b.key" --model-root "$root" --fetch-timeout 0 2>&1 >/dev/null)"; rc=$?
check "--fetch-timeout 0: exit 2 ($rc: $err)" test "$rc" -eq 2
echo '{"model-roots": ["'"$root"'"], "fetch-timeout": "soon"}' >"$tmp/bad.json"
err="$("$worker" --config "$tmp/bad.json" --bootstrap "$boot" 2>&1 >/dev/null)"; rc=$?
check "config fetch-timeout \"soon\": exit 2 naming it ($rc: $err)" test "$rc" -eq 2 -a -n "$(grep fetch-timeout <<<"$err")"

head -c $((3 << 20)) /dev/urandom >"$tmp/junk.gguf"
jroot="$("$cli" model root --json "$tmp/junk.gguf" | sed -n 's/.*"root":"\([0-9a-f]*\)".*/\1/p')"
"$cli" model share "$tmp/junk.gguf" --bootstrap "$boot" --listen 127.0.0.1 >"$tmp/share-junk.log" 2>&1 &
pids+=($!)
check "the junk holder shares" wait_line "$tmp/share-junk.log" "sharing .*$jroot" 20
mkdir -p "$tmp/junk"
err="$(timeout 90 "$worker" --bootstrap "$boot" --identity "$tmp/b.key" --models-dir "$tmp/junk" --model-root "$jroot" \
  --log-level warn 2>&1 >/dev/null)"; rc=$?
check "not a GGUF: exit 1, one line ($rc: $err)" test "$rc" -eq 1 -a "$(wc -l <<<"$err")" -eq 1
check "not a GGUF: says so" grep -q "not a usable GGUF model" <<<"$err"
check "not a GGUF: nothing kept ($(ls "$tmp/junk"))" test -z "$(ls "$tmp/junk")"
finish
