#!/usr/bin/env bash
# The Debian packages as an administrator gets them: `cpack -G DEB` in the build folder, then a
# fresh Debian root (debootstrap, cached under ~/.cache/qmesh/debian-root/) booted with systemd in
# a systemd-nspawn container on its own network namespace (loopback only). Inside: dpkg -i of the
# four packages; the unit verified and its sandbox scored; the packaged config fails with one line
# and no restart loop; with a model configured the service starts as a dynamic user, answers
# qmesh-cli and a C program built against libqmesh-client-dev, restarts after a crash; dpkg -r
# stops and disables it, dpkg -P leaves nothing behind.
#   usage: deb_install_test.sh BUILD_DIR SOURCE_DIR QMESH_WORKER TINY_MODEL SANITIZE(0|1)
# Exit 77 (skipped) when a tool is missing or the Debian root cannot be made.
set -uo pipefail
build="$1"; src="$2"; host_worker="$3"; model="$4"; sanitize="$5"
source "$src/tests/integration/lib.sh"
cpack="${CPACK:-cpack}"

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, systemd-nspawn)"
for tool in "$cpack" dpkg-deb dpkg-shlibdeps debootstrap systemd-nspawn nsenter tar cc pkg-config; do
  command -v "$tool" >/dev/null || skip "$tool not found (scripts/setup.sh installs it)"
done
suite="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
[ -n "$suite" ] || skip "not a Debian host: no VERSION_CODENAME in /etc/os-release"
# The llama-server the worker finds here goes to /usr/local/bin in the root (the documented place).
llama="$("$host_worker" --version 2>/dev/null | sed -n 's/^llama-server: .* (\(\/.*\), from [a-zA-Z]*)$/\1/p')"
[ -x "$llama" ] || skip "no llama-server found (run scripts/get-llama-server.sh)"
zip=--gzip; ext=gz
if command -v zstd >/dev/null; then zip=--zstd; ext=zst; fi

nspawn_pid=""
stop_container() {
  [ -n "$nspawn_pid" ] || return 0
  kill -TERM "$nspawn_pid" 2>/dev/null  # nspawn halts the container
  for _ in $(seq 1 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$nspawn_pid" 2>/dev/null; wait "$nspawn_pid" 2>/dev/null
  nspawn_pid=""
}
trap 'stop_container; cleanup' EXIT
secs() { echo $(($(date +%s) - $1)); }  # reported, never asserted

# ---- the packages ----
t0=$(date +%s)
"$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1; rc=$?
check "cpack -G DEB succeeds ($(secs "$t0") s)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || { tail -n 20 "$tmp/cpack.log"; finish; exit 1; }
mkdir -p "$tmp/debs"
mv "$tmp"/out/*.deb "$tmp/debs/"
soname="$(objdump -p "$build/src/client/libqmesh-client.so" | awk '/SONAME/ {print $2}')"
lib="libqmesh-client${soname#libqmesh-client.so.}"
ours=(qmesh-worker qmesh-cli "$lib" libqmesh-client-dev)
for p in "${ours[@]}"; do
  n=$(ls "$tmp"/debs/"${p}"_*.deb 2>/dev/null | wc -l)
  check "one package $p ($n)" test "$n" -eq 1
done
deb() { ls "$tmp"/debs/"$1"_*.deb; }
field() { dpkg-deb -f "$(deb "$1")" "$2"; }
check "qmesh-worker depends on libuv1 and libsodium23 (dpkg-shlibdeps: $(field qmesh-worker Depends))" \
  bash -c "grep -q 'libuv1' <<<\"\$1\" && grep -q 'libsodium23' <<<\"\$1\"" _ "$(field qmesh-worker Depends)"
check "libqmesh-client-dev depends on $lib of the same version" \
  grep -qF "$lib (= $(field "$lib" Version))" <<<"$(field libqmesh-client-dev Depends)"
check "$lib has a shlibs file" bash -c "dpkg-deb -I '$(deb "$lib")' shlibs | grep -q '^libqmesh-client '"
check "qmesh-worker's /etc/qmesh/worker.json is a conffile" \
  bash -c "dpkg-deb -I '$(deb qmesh-worker)' conffiles | grep -qx /etc/qmesh/worker.json"
check "qmesh-worker holds the unit" grep -q ' ./usr/lib/systemd/system/qmesh-worker.service$' <<<"$(dpkg-deb -c "$(deb qmesh-worker)")"

# ---- a C program built against libqmesh-client-dev (unpacked here), run in the root later ----
for p in "$lib" libqmesh-client-dev; do dpkg-deb -x "$(deb "$p")" "$tmp/dev"; done
pcdir="$(dirname "$(find "$tmp/dev" -name qmesh-client.pc | head -n 1)")"
# shellcheck disable=SC2046
PKG_CONFIG_PATH="$pcdir" cc -std=c99 -Wall -Werror "$tmp/dev/usr/share/doc/qmesh/examples/ask.c" -o "$tmp/ask_c" \
  $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs qmesh-client) >"$tmp/cc.log" 2>&1
check "examples/ask.c (from the -dev package) builds with its pkg-config file" test -x "$tmp/ask_c"
[ -x "$tmp/ask_c" ] || head -n 20 "$tmp/cc.log"

# ---- the Debian root: debootstrap once per package set, then a tarball in the cache ----
# Its packages: what ours depend on, what llama-server links, and systemd to boot. debootstrap
# takes no virtual package (libspdlog1.10-fmt9): the installed package providing it stands in.
real_package() {
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; then echo "$1"; return; fi
  dpkg-query -W -f='${Package} ${Provides}\n' |
    awk -v n="$1" '{ for (i = 2; i <= NF; i++) { p = $i; sub(/,$/, "", p); if (p == n) { print $1; exit } } }'
}
deps=(systemd systemd-sysv dbus)
for p in "${ours[@]}"; do
  for d in $(field "$p" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g'); do
    deps+=($(real_package "$d"))
  done
done
for so in $(ldd "$llama" | awk '$3 ~ /^\// {print $3}'); do
  deps+=($(dpkg -S "$(readlink -f "$so")" 2>/dev/null | head -n 1 | cut -d: -f1))
done
mapfile -t deps < <(printf '%s\n' "${deps[@]}" | grep -v -x -F -f <(printf '%s\n' "${ours[@]}") | sort -u)
key="$(printf '%s\n' "v1" "$suite" "${deps[@]}" | sha256sum | cut -c1-12)"
cache_dir="${QMESH_CACHE:-${HOME:-/root}/.cache/qmesh}/debian-root"
cache="$cache_dir/$suite-$key.tar.$ext"
if [ ! -s "$cache" ]; then
  mirror="${QMESH_DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  eval "$(apt-config shell http_proxy Acquire::http::Proxy 2>/dev/null)"  # apt's proxy, if any
  [ -n "${http_proxy:-}" ] && export http_proxy
  echo "making the $suite root with debootstrap from $mirror: ${deps[*]}"
  t0=$(date +%s)
  if ! debootstrap --variant=minbase --include="$(IFS=,; echo "${deps[*]}")" "$suite" "$tmp/bootstrap" "$mirror" \
    >"$tmp/debootstrap.log" 2>&1; then
    tail -n 5 "$tmp/debootstrap.log"
    skip "debootstrap $suite from $mirror failed (log above)"
  fi
  rm -rf "$tmp"/bootstrap/var/cache/apt/archives/*.deb "$tmp"/bootstrap/var/lib/apt/lists/*
  mkdir -p "$cache_dir"
  tar -C "$tmp/bootstrap" $zip --numeric-owner --xattrs -cf "$cache.$$" . && mv "$cache.$$" "$cache"
  rm -rf "$tmp/bootstrap"
  echo "debootstrap took $(secs "$t0") s; cached as $cache ($(du -m "$cache" | cut -f1) MB)"
fi
t0=$(date +%s)
root="$tmp/root"
mkdir "$root" && tar -C "$root" $zip --numeric-owner --xattrs -xf "$cache"
check "a fresh $suite root from $(basename "$cache") ($(secs "$t0") s)" test -x "$root/lib/systemd/systemd"

# What the administrator brings: the packages, llama-server on PATH, a model others may read.
mkdir -p "$root/root/debs" "$root/srv/qmesh" "$root/usr/local/bin"
cp "$tmp"/debs/*.deb "$root/root/debs/"
install -m 0755 "$llama" "$root/usr/local/bin/llama-server"
install -m 0644 "$model" "$root/srv/qmesh/tiny.gguf"
install -m 0755 "$tmp/ask_c" "$root/usr/local/bin/qmesh-ask-c"

# ---- boot ----
# --register=no --keep-unit: the host need not run systemd (here PID 1 is not systemd, and without
# them nspawn stops at "Failed to open system bus"): no machined registration, no scope unit.
t0=$(date +%s)
systemd-nspawn -q -D "$root" -M "qmesh-pkg-$$" -b --private-network --register=no --keep-unit \
  --console=read-only >"$tmp/boot.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1 (nspawn's child that is PID 1 in its own namespace; nspawn forks an
# intermediate child first, which must not be taken for it).
leader=""
for _ in $(seq 1 600); do
  for c in $(ps -o pid= --ppid "$nspawn_pid"); do
    awk '/^NSpid:/ { exit !(NF > 2 && $NF == 1) }' "/proc/$c/status" 2>/dev/null && leader="$c"
  done
  [ -n "$leader" ] && break; sleep 0.1
done
# A command inside the container (its namespaces), with a plain environment; 2 minutes at most.
inside() {
  timeout "${INSIDE_TIMEOUT:-120}" nsenter -t "$leader" -m -u -i -n -p -C -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root \
    LANG=C.UTF-8 ${ASAN_OPTIONS:+ASAN_OPTIONS="$ASAN_OPTIONS"} "$@"
}
# Until the boot has finished (systemctl answers only once the container's PID 1 listens).
state=""
for _ in $(seq 1 900); do
  [ -n "$leader" ] && state="$(inside systemctl is-system-running 2>/dev/null)"
  grep -qxE 'running|degraded' <<<"$state" && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.1
done
check "systemd boots in the container ($state, $(secs "$t0") s)" grep -qxE 'running|degraded' <<<"$state"
if ! grep -qxE 'running|degraded' <<<"$state"; then
  echo "container PID 1: ${leader:-not found}"; tail -n 30 "$tmp/boot.log"
  [ -n "$leader" ] && inside systemctl list-jobs --no-pager
  finish; exit 1
fi
[ "$state" = running ] || inside systemctl --failed --no-legend --no-pager

source "$src/tests/pkg/deb_checks.sh"
install_packages
default_config_fails
serve_from_the_package
remove_and_purge

inside systemctl poweroff >/dev/null 2>&1
for _ in $(seq 1 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
wait "$nspawn_pid"; rc=$?
check "the container powers off (nspawn exit $rc)" test "$rc" -eq 0
nspawn_pid=""
finish
