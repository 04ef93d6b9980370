#!/usr/bin/env bash
# Issue 12 §5.2: scripts/setup.sh waits while another apt/dpkg holds its locks (as unattended
# upgrades do on a fresh machine) and says so, instead of failing at once. Real apt-get, pointed
# at a package root of the test's own (APT_CONFIG: an empty source list, an empty dpkg status,
# DPKG_ADMINDIR for dpkg-query), so setup.sh finds every package missing and the machine's own
# apt state is never touched. A perl process holds the locks as apt does (fcntl write locks).
# After the wait, the installation itself fails (no package lists): that failure must be apt's
# "Unable to locate package", not a lock error.
#   usage: setup_apt_lock_test.sh SOURCE_DIR
set -uo pipefail
src="$1"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: setup.sh installs as root only"; exit 77; }
for t in apt-get dpkg-query perl; do command -v "$t" >/dev/null || { echo "SKIP: no $t"; exit 77; }; done

r="$tmp/root"
mkdir -p "$r/etc/apt/apt.conf.d" "$r/etc/apt/preferences.d" "$r/etc/apt/sources.list.d" \
  "$r/var/lib/apt/lists/partial" "$r/var/cache/apt/archives/partial" "$r/var/lib/dpkg" "$r/var/log/apt"
touch "$r/etc/apt/sources.list" "$r/var/lib/dpkg/status"
printf 'Dir "%s/";\nDir::State::status "%s/var/lib/dpkg/status";\n' "$r" "$r" >"$tmp/apt.conf"
export APT_CONFIG="$tmp/apt.conf" DPKG_ADMINDIR="$r/var/lib/dpkg"

# hold FILE...: takes a write lock on each file (as apt and dpkg do) and keeps it until killed.
hold() {
  perl -e 'use Fcntl qw(F_SETLKW F_WRLCK SEEK_SET O_RDWR O_CREAT); my @h;
    for my $f (@ARGV) { sysopen(my $h, $f, O_RDWR|O_CREAT, 0640) or die "$f: $!";
      my $lk = pack("s s x4 q q i x4", F_WRLCK, SEEK_SET, 0, 0, 0);  # struct flock, 64-bit Linux
      fcntl($h, F_SETLKW, $lk) or die "lock $f: $!"; push @h, $h; }
    $| = 1; print "held\n"; sleep 3600;' "$@" >"$tmp/hold.log" 2>&1 &
  holder=$!; pids+=($holder)
  wait_line "$tmp/hold.log" "^held" 10
}
locks=("$r/var/lib/apt/lists/lock" "$r/var/lib/dpkg/lock-frontend" "$r/var/lib/dpkg/lock")
check "another process holds the package lists' and dpkg's locks" hold "${locks[@]}"
QMESH_APT_LOCK_WAIT=600 bash "$src/scripts/setup.sh" >"$tmp/setup.log" 2>&1 &
setup=$!; pids+=($setup)
check "setup.sh says it waits for the other apt/dpkg" \
  wait_line "$tmp/setup.log" "waiting for another apt/dpkg to finish (lock held by process $holder (perl))" 60
check "...and is still waiting, not failed" kill -0 "$setup"
kill "$holder"; wait "$holder" 2>/dev/null
n=0; while kill -0 "$setup" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
wait "$setup"; rc=$?
cat "$tmp/setup.log"
check "once the lock is free, apt-get update ran and install got to the packages (exit $rc)" \
  bash -c "[ $rc -ne 0 ] && grep -q 'Unable to locate package' '$tmp/setup.log'"
check "...with no lock error" bash -c "! grep -q 'Could not get lock\|Unable to acquire' '$tmp/setup.log'"

# A lock that is never released: setup.sh gives up after QMESH_APT_LOCK_WAIT with one line.
check "the locks are held again" hold "${locks[@]}"
QMESH_APT_LOCK_WAIT=1 bash "$src/scripts/setup.sh" >"$tmp/setup2.log" 2>&1; rc=$?
cat "$tmp/setup2.log"
check "setup.sh gives up with exit 1 (exit $rc)" test "$rc" -eq 1
check "...saying why and what to do" grep -q "setup.sh: gave up after [0-9]* s waiting for another apt/dpkg (lock held by process $holder (perl)); run setup.sh again" "$tmp/setup2.log"
finish
