#!/usr/bin/env bash
# qmesh-cli model get into a disk that is too small or fills up, from a `qmesh-cli model share`
# holder on loopback. The disk is a tmpfs mounted in a temp folder, in a mount namespace of this
# test's own (unshare -m), so the mount goes away with the test however it ends.
#  1. A 20 MiB disk, a ~40 MB model: the .part cannot be allocated: one error line naming the
#     full disk, exit 1, nothing left behind.
#  2. A 56 MiB disk: the download starts (the .part is allocated whole: fallocate) and commits
#     its first 16 chunks, then another file fills the disk; the next .part.map commit cannot be written: one error line naming the
#     full disk, exit 1, the .part and the .part.map kept.
#  3. The disk remounted bigger: the same command resumes from the .part.map and completes,
#     byte-identical.
# The holder's upload rate is capped only so that the download lasts long enough to fill the disk
# in the middle of it; nothing here asserts on time.
#   usage: model_get_disk_full_test.sh QMESH_CLI   (root: exit 77, a skip, elsewhere)
set -uo pipefail
cli="$(realpath "$1")"
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then echo "skip: mounting a tmpfs needs root and unshare"; exit 77; fi
if [ -z "${QMESH_DISK_FULL_NS:-}" ]; then
  QMESH_DISK_FULL_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/lib.sh"
disk="$tmp/disk"
mkdir -p "$disk"
trap 'umount "$disk" 2>/dev/null; cleanup' EXIT
"$cli" model synth --shape small --type f16 --seed 12 --out "$tmp/small.gguf" >/dev/null || { bad "synth"; finish; exit 1; }
export HOME="$tmp/home"
unset QMESH_CACHE
mkdir -p "$HOME"
size=$(stat -c %s "$tmp/small.gguf")
root="$("$cli" model root --json "$tmp/small.gguf" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')"
check "the model is between 24 and 48 MiB ($size bytes)" test "$size" -gt $((24 << 20)) -a "$size" -lt $((48 << 20))

port=$((20000 + RANDOM % 20000))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
wait_line "$tmp/boot.log" "listening" 5 || sleep 1
"$cli" model share "$tmp/small.gguf" --bootstrap "$boot" --listen 127.0.0.1 --share-rate 2M >"$tmp/share.log" 2>&1 &
pids+=($!)
check "the holder shares the root" wait_line "$tmp/share.log" "sharing .*$root" 20
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
part="$disk/qmesh-synth-small.gguf.part"

# 1. Too small from the start.
mount -t tmpfs -o size=20m tmpfs "$disk" || { bad "mount a 20 MiB tmpfs"; finish; exit 1; }
err="$("$cli" model get "$root" --bootstrap "$boot" --out "$disk" 2>&1 >/dev/null)"; rc=$?
check "too small: exit 1 ($rc)" test "$rc" -eq 1
check "too small: one line naming the full disk ($err)" \
  bash -c '[ "$(wc -l <<<"$1")" -eq 1 ] && grep -q "no space left on device ($2 bytes needed)" <<<"$1"' _ "$err" "$size"
check "too small: nothing left behind ($(ls "$disk"))" test -z "$(ls -A "$disk")"
umount "$disk"

# 2. Full in the middle: a 56 MiB disk; once the .part.map was committed with chunks in it (the
# getter commits every 16 chunks: the map is replaced by a rename, a new inode), a filler takes
# the rest, so the commit at 32 chunks fails.
mount -t tmpfs -o size=56m tmpfs "$disk" || { bad "mount a 56 MiB tmpfs"; finish; exit 1; }
"$cli" model get "$root" --bootstrap "$boot" --out "$disk" --json >"$tmp/b.json" 2>"$tmp/b.err" &
get_pid=$!
pids+=("$get_pid")
first="" ino=""
for ((i = 0; i < 1200; i++)); do
  ino="$(stat -c %i "$part.map" 2>/dev/null)"
  [ -z "$first" ] && first="$ino"
  [ -n "$ino" ] && [ "$ino" != "$first" ] && break
  kill -0 "$get_pid" 2>/dev/null || break
  sleep 0.05
done
v=$(grep -o '"bytes_verified":[0-9]*' "$tmp/b.json" 2>/dev/null | tail -n 1 | cut -d: -f2)
dd if=/dev/zero of="$disk/filler" bs=1M 2>/dev/null  # until the disk is full (ENOSPC)
check "full: the filler left no free space ($(df --output=avail -B1 "$disk" | tail -n 1) bytes free)" \
  test "$(df --output=avail -B1 "$disk" | tail -n 1)" -lt 4096
wait "$get_pid"; rc=$?
check "full: exit 1 ($rc; the map committed again, ${v:-0} of $size bytes verified, when the disk filled)" test "$rc" -eq 1
check "full: one line naming the full disk ($(cat "$tmp/b.err"))" \
  bash -c '[ "$(grep -c . "$1")" -eq 1 ] && grep -q "no space left on device" "$1"' _ "$tmp/b.err"
e="$(grep '"event":"error"' "$tmp/b.json")"
check "full: the --json error says kind disk ($e)" grep -q '"kind":"disk"' <<<"$e"
check "full: the .part is kept" test -s "$part"
check "full: the .part.map is kept" test -s "$part.map"

# 3. More room: the same command resumes and completes.
rm -f "$disk/filler"
mount -o remount,size=96m "$disk"
"$cli" model get "$root" --bootstrap "$boot" --out "$disk" --json >"$tmp/c.json" 2>"$tmp/c.err"; rc=$?
s="$(grep '"event":"done"' "$tmp/c.json")"
check "more room: exit 0 ($rc; $(tail -n 1 "$tmp/c.err"))" test "$rc" -eq 0
check "more room: byte-identical" cmp -s "$disk/qmesh-synth-small.gguf" "$tmp/small.gguf"
resumed=$(field "$s" bytes_resumed 2>/dev/null); fetched=$(field "$s" bytes_fetched 2>/dev/null)
check "more room: resumed from the .part (resumed ${resumed:-?}, fetched ${fetched:-?})" \
  bash -c '[ "$1" -gt 0 ] && [ $(($1 + $2)) -eq "$3" ]' _ "${resumed:-0}" "${fetched:-0}" "$size"
check "more room: no .part left" test ! -e "$part" -a ! -e "$part.map"
umount "$disk"
finish
