#!/usr/bin/env bash
# qmesh-cli model root: the root of real files equals that of an independent Python implementation
# (content_root.py, from docs/protocol.md), the second run reads the root cache, a bad cache entry
# is rewritten, and bad input is one line with a non-zero exit.
#   usage: model_root_cli_test.sh QMESH_CLI TINY_MODEL
set -uo pipefail
cli="$1"; model="$2"
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/lib.sh"
export HOME="$tmp/home"
unset QMESH_CACHE
mkdir -p "$HOME"
roots="$HOME/.cache/qmesh/roots"

: >"$tmp/empty"
head -c 1 /dev/urandom >"$tmp/one"
head -c $((1 << 20)) /dev/urandom >"$tmp/chunk"
head -c $(((1 << 20) + 1)) /dev/urandom >"$tmp/chunk_plus_one"
head -c $((7 * (1 << 20) - 3)) /dev/urandom >"$tmp/seven"
for f in "$model" "$tmp/empty" "$tmp/one" "$tmp/chunk" "$tmp/chunk_plus_one" "$tmp/seven"; do
  want="$(python3 "$here/content_root.py" "$f")"
  got="$("$cli" model root --json "$f")"; rc=$?
  check "$(basename "$f"): exit 0 ($rc)" test "$rc" -eq 0
  check "$(basename "$f"): root, size, chunks as Python computes them ($got vs $want)" \
    python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))' "$got" "$want"
done
check "one cache entry per file (6)" test "$(ls "$roots" | wc -l)" -eq 6

# The text form, and the second run from the cache (same answer; the entry is not rewritten).
entry="$(ls -t "$roots"/*.tree | head -1)"  # the last file hashed: seven
before="$(stat -c %Y.%y "$entry")"
sleep 0.01
text="$("$cli" model root "$tmp/seven")"
root_hex="$(python3 "$here/content_root.py" "$tmp/seven" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')"
check "text form: root, size, chunks lines" test "$text" = "$(printf 'root: %s\nsize: %s\nchunks: 7' "$root_hex" $((7 * (1 << 20) - 3)))"
check "cache entry read, not rewritten" test "$(stat -c %Y.%y "$entry")" = "$before"

# A bad entry: the same root all the same, and the entry is rewritten.
printf 'garbage' >"$entry"
out="$("$cli" model root --json "$tmp/seven" 2>"$tmp/err")"; rc=$?
check "garbage entry: exit 0 and the right root" test "$rc" -eq 0 -a "$(grep -c "$root_hex" <<<"$out")" -eq 1
check "garbage entry: rewritten ($(stat -c %s "$entry") bytes)" test "$(stat -c %s "$entry")" -eq $((56 + 7 * 32))

# $QMESH_CACHE moves the cache.
QMESH_CACHE="$tmp/other-cache" "$cli" model root "$tmp/one" >/dev/null
check "QMESH_CACHE: entry under it" test "$(ls "$tmp/other-cache/roots" | wc -l)" -eq 1

# Bad input: one line naming the program and the file, non-zero exit, nothing on stdout.
one_line_error() {  # what, expected exit, pattern, args...
  local what="$1" code="$2" pattern="$3"; shift 3
  err="$("$cli" model root "$@" 2>&1 >"$tmp/stdout")"; rc=$?
  check "$what: exit $code (got $rc)" test "$rc" -eq "$code"
  check "$what: one line ($err)" test "$(wc -l <<<"$err")" -eq 1 -a -n "$err"
  check "$what: says why" grep -q "$pattern" <<<"$err"
  check "$what: nothing on stdout" test ! -s "$tmp/stdout"
}
one_line_error "missing file" 1 "^qmesh-cli: $tmp/nope: No such file or directory$" "$tmp/nope"
one_line_error "a directory" 1 "is a directory" "$tmp"
one_line_error "no file" 2 "^qmesh-cli: " 
mkfifo "$tmp/fifo"
one_line_error "a FIFO" 1 "not a regular file" "$tmp/fifo"
finish
