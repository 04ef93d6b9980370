#!/usr/bin/env bash
# qmesh-cli model get against real `qmesh-cli model share` holders on loopback: a synthesized model
# of many 1 MiB chunks arrives byte-identical from three holders; a getter killed (-9) past half
# way resumes and fetches only the rest; a corrupt .part.map is warned about and the download
# starts over; a holder killed mid-download leaves the others to finish; a root nobody holds, a
# file that is not a GGUF, a different file in the way and bad options end in one line and a
# non-zero exit. The holders' upload rate is capped only so that a download lasts long enough to
# be interrupted; nothing here asserts on time.
#   usage: model_get_test.sh QMESH_CLI [SHARING_CLI (default QMESH_CLI)]
set -uo pipefail
cli="$1"; share_cli="${2:-$1}"
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/lib.sh"
# The vocabulary comes from the real home's cache; everything the test writes goes to its own.
"$cli" model synth --shape small --type f16 --seed 11 --out "$tmp/small.gguf" >/dev/null || { bad "synth"; finish; exit 1; }
export HOME="$tmp/home"
unset QMESH_CACHE
mkdir -p "$HOME"
if ! "$share_cli" model share --help >/dev/null 2>&1; then echo "skip: no 'model share' in $cli"; exit 77; fi

port=$((20000 + RANDOM % 20000))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
wait_line "$tmp/boot.log" "listening\|joined\|bootstrap" 5 || sleep 1

size=$(stat -c %s "$tmp/small.gguf")
root="$("$cli" model root --json "$tmp/small.gguf" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')"
chunks=$(((size + (1 << 20) - 1) >> 20))
check "the model has at least 20 chunks ($chunks)" test "$chunks" -ge 20

# Three holders, each capped at 4 MB/s.
holder_pids=()
for i in 1 2 3; do
  "$share_cli" model share "$tmp/small.gguf" --bootstrap "$boot" --listen 127.0.0.1 --share-rate 4M >"$tmp/share$i.log" 2>&1 &
  pids+=($!); holder_pids+=($!)
done
for i in 1 2 3; do check "holder $i shares the root" wait_line "$tmp/share$i.log" "sharing .*$root" 20; done

summary() { grep '"event":"done"' "$1" | tail -1; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
# Starts a getter in the background (json progress to $1.json, stderr to $1.err); waits until it
# has verified at least $2 bytes; its pid in $get_pid.
start_get() {
  local name="$1" want="$2" out="$tmp/$1"
  mkdir -p "$out"
  "$cli" model get "$root" --bootstrap "$boot" --out "$out" --json >"$out.json" 2>"$out.err" &
  local i
  get_pid=$!
  pids+=("$get_pid")
  for ((i = 0; i < 600; i++)); do
    python3 - "$out.json" "$want" <<'EOF' && break
import json, sys
best = 0
for line in open(sys.argv[1]):
    try: best = max(best, json.loads(line).get("bytes_verified", 0))
    except ValueError: pass
sys.exit(0 if best >= int(sys.argv[2]) else 1)
EOF
    sleep 0.1
  done
}

# 1. A whole download from the three holders.
mkdir -p "$tmp/a"
"$cli" model get "$root" --bootstrap "$boot" --out "$tmp/a" --json >"$tmp/a.json" 2>"$tmp/a.err"; rc=$?
s="$(summary "$tmp/a.json")"
check "get: exit 0 ($rc; $(tail -1 "$tmp/a.err"))" test "$rc" -eq 0
check "get: byte-identical to the source" cmp -s "$tmp/a/qmesh-synth-small.gguf" "$tmp/small.gguf"
check "get: bytes_fetched = size ($s)" test "$(field "$s" bytes_fetched)" -eq "$size"
check "get: more than one holder used ($(field "$s" holders_used))" test "$(field "$s" holders_used)" -ge 2
check "get: progress objects on stdout ($(grep -c '"event":"progress"' "$tmp/a.json"))" test "$(grep -c '"event":"progress"' "$tmp/a.json")" -ge 1
check "get: no .part left" test ! -e "$tmp/a/qmesh-synth-small.gguf.part" -a ! -e "$tmp/a/qmesh-synth-small.gguf.part.map"

# 2. The same file again: nothing fetched. A different file in the way: refused, kept.
"$cli" model get "$root" --bootstrap "$boot" --out "$tmp/a" --json >"$tmp/a2.json" 2>"$tmp/a2.err"; rc=$?
check "again: exit 0, nothing fetched ($rc)" test "$rc" -eq 0 -a "$(field "$(summary "$tmp/a2.json")" bytes_fetched)" -eq 0
mkdir -p "$tmp/b" && echo "something else" >"$tmp/b/qmesh-synth-small.gguf"
err="$("$cli" model get "$root" --bootstrap "$boot" --out "$tmp/b" 2>&1 >/dev/null)"; rc=$?
check "another file in the way: exit 1, one line ($rc: $err)" test "$rc" -eq 1 -a "$(wc -l <<<"$err")" -eq 1
check "another file in the way: says so, file kept" test -n "$(grep 'exists and is another file' <<<"$err")" -a "$(cat "$tmp/b/qmesh-synth-small.gguf")" = "something else"

# 3. kill -9 past half way, then the same command again: only the rest is fetched.
start_get c $((size * 6 / 10))
kill -9 "$get_pid"; wait "$get_pid" 2>/dev/null
check "killed: the .part and its map are kept" test -e "$tmp/c/qmesh-synth-small.gguf.part" -a -e "$tmp/c/qmesh-synth-small.gguf.part.map"
"$cli" model get "$root" --bootstrap "$boot" --out "$tmp/c" --json >"$tmp/c2.json" 2>"$tmp/c2.err"; rc=$?
s="$(summary "$tmp/c2.json")"
check "resume: exit 0 ($rc; $(tail -1 "$tmp/c2.err"))" test "$rc" -eq 0
check "resume: byte-identical" cmp -s "$tmp/c/qmesh-synth-small.gguf" "$tmp/small.gguf"
fetched=$(field "$s" bytes_fetched); resumed=$(field "$s" bytes_resumed)
check "resume: fetched $fetched of $size, resumed $resumed" test "$fetched" -lt "$size" -a "$resumed" -gt 0 -a $((fetched + resumed)) -eq "$size"

# 4. A corrupt .part.map: a warning, the download starts over and completes.
start_get d $((size * 6 / 10))
kill -9 "$get_pid"; wait "$get_pid" 2>/dev/null
map="$tmp/d/qmesh-synth-small.gguf.part.map"
check "killed again: map kept" test -e "$map"
printf 'garbage!' | dd of="$map" bs=1 seek=40 conv=notrunc status=none
"$cli" model get "$root" --bootstrap "$boot" --out "$tmp/d" --json >"$tmp/d2.json" 2>"$tmp/d2.err"; rc=$?
s="$(summary "$tmp/d2.json")"
check "corrupt map: exit 0 ($rc; $(tail -1 "$tmp/d2.err"))" test "$rc" -eq 0
check "corrupt map: a warning on stderr ($(grep -m1 warn "$tmp/d2.err"))" grep -q "warn" "$tmp/d2.err"
check "corrupt map: started over (fetched $(field "$s" bytes_fetched))" test "$(field "$s" bytes_fetched)" -eq "$size"
check "corrupt map: byte-identical" cmp -s "$tmp/d/qmesh-synth-small.gguf" "$tmp/small.gguf"

# 5. A holder killed mid-download: the others finish it.
start_get e $((size / 4))
kill -9 "${holder_pids[0]}"; wait "${holder_pids[0]}" 2>/dev/null
wait "$get_pid"; rc=$?
s="$(summary "$tmp/e.json")"
check "holder killed: exit 0 ($rc; $(tail -1 "$tmp/e.err"))" test "$rc" -eq 0
check "holder killed: byte-identical" cmp -s "$tmp/e/qmesh-synth-small.gguf" "$tmp/small.gguf"
check "holder killed: bytes_fetched = size ($s)" test "$(field "$s" bytes_fetched)" -eq "$size"

# 6. A root nobody holds: a clear error within the timeout (the outer timeout only guards the test).
nobody="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
err="$(timeout 60 "$cli" model get "$nobody" --bootstrap "$boot" --out "$tmp" --timeout 3 2>&1 >/dev/null)"; rc=$?
check "nobody holds it: exit 3 ($rc)" test "$rc" -eq 3
check "nobody holds it: one line ($err)" test "$(wc -l <<<"$err")" -eq 1 -a -n "$(grep "no holder has $nobody" <<<"$err")"

# 7. A file that is not a GGUF: fetched and verified, then deleted with an error.
head -c $((3 << 20)) /dev/urandom >"$tmp/junk.bin"
jroot="$("$cli" model root --json "$tmp/junk.bin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')"
"$share_cli" model share "$tmp/junk.bin" --bootstrap "$boot" --listen 127.0.0.1 >"$tmp/share-junk.log" 2>&1 &
pids+=($!)
check "junk holder shares" wait_line "$tmp/share-junk.log" "sharing .*$jroot" 20
mkdir -p "$tmp/f"
err="$("$cli" model get "$jroot" --bootstrap "$boot" --out "$tmp/f" 2>&1 >/dev/null)"; rc=$?
check "not a GGUF: exit 1, one line ($rc: $err)" test "$rc" -eq 1 -a "$(wc -l <<<"$err")" -eq 1
check "not a GGUF: says so" grep -q "not a usable GGUF model" <<<"$err"
check "not a GGUF: nothing kept ($(ls "$tmp/f"))" test -z "$(ls "$tmp/f")"

# 8. Bad options: one line, exit 2.
for args in "--holders 0" "--holders 17" "--timeout 0" "--out $tmp/small.gguf"; do
  # shellcheck disable=SC2086
  err="$("$cli" model get "$root" --bootstrap "$boot" $args 2>&1 >/dev/null)"; rc=$?
  check "bad option $args: exit 2, one line ($rc: $err)" test "$rc" -eq 2 -a "$(wc -l <<<"$err")" -eq 1
done
err="$("$cli" model get 1234 --bootstrap "$boot" --out "$tmp" 2>&1 >/dev/null)"; rc=$?
check "a name nothing serves: exit 3, one line ($rc: $err)" test "$rc" -eq 3 -a "$(wc -l <<<"$err")" -eq 1

finish
