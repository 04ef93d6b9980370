#!/usr/bin/env bash
# Sets QMesh up on a Debian 12 machine: build dependencies (apt), llama-server (built once, then
# cached under ~/.cache/qmesh), configure and build. Idempotent: a second run takes seconds.
#   scripts/setup.sh            Release build in build/
#   scripts/setup.sh --sanitize ASan+UBSan build in build-asan/ (what scripts/test.sh uses)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

build_dir="build"; cmake_args=(-DCMAKE_BUILD_TYPE=Release)
for a in "$@"; do
  case "$a" in
    --sanitize) build_dir="build-asan"; cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DQMESH_SANITIZE=ON) ;;
    *) echo "setup.sh: unknown option $a (known: --sanitize)" >&2; exit 2 ;;
  esac
done

# apt-get that waits while another apt/dpkg holds its lock (unattended-upgrades on a fresh machine,
# apt in another terminal) instead of failing at once: DPkg::Lock::Timeout makes `install` wait for
# the dpkg lock; `update`'s lock on the package lists has no such option, so it is retried here.
# Gives up after $QMESH_APT_LOCK_WAIT seconds (default 1800). apt's messages in English, so that
# a lock can be told from other failures.
apt_get() {
  local err start=$SECONDS said="" held timeout=0
  err="$(mktemp)"
  while :; do
    if LC_ALL=C.UTF-8 apt-get -o DPkg::Lock::Timeout="$timeout" "$@" >/dev/null 2>"$err"; then
      cat "$err" >&2; rm -f "$err"; return 0
    fi
    if ! grep -q -E 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock' "$err"; then
      cat "$err" >&2; rm -f "$err"
      echo "setup.sh: apt-get $1 failed" >&2
      exit 1
    fi
    held="$(grep -o -m1 'held by process [0-9]* ([^)]*)' "$err" || true)"
    if [ -z "$said" ]; then
      echo "setup.sh: waiting for another apt/dpkg to finish${held:+ (lock $held)}..." >&2
      said=1
    fi
    if [ $((SECONDS - start)) -ge "${QMESH_APT_LOCK_WAIT:-1800}" ]; then
      rm -f "$err"
      echo "setup.sh: gave up after $((SECONDS - start)) s waiting for another apt/dpkg${held:+ (lock $held)}; run setup.sh again when it is done" >&2
      exit 1
    fi
    timeout=10
    sleep 1
  done
}

pkgs=(build-essential cmake pkg-config git ca-certificates curl util-linux procps
      jq libuv1-dev nlohmann-json3-dev libcpp-httplib-dev libsodium-dev libspdlog-dev libcli11-dev libgtest-dev
      libwebsockets-dev  # qmesh-cli serve
      debootstrap systemd-container zstd)  # the last three: the .deb test (tests/pkg)
pkgs+=(libsqlite3-dev sqlite3)  # the score database (src/store) and its kill -9 test
pkgs+=(chromium)  # the chat page test drives Debian's chromium (tests/serve/node)
# Metrics: prometheus-cpp (the registry), promtool and the Python parser (tests/integration/worker_metrics).
pkgs+=(prometheus-cpp-dev prometheus python3-prometheus-client)
command -v npm >/dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: missing packages; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}"
  apt_get update -qq
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq "${missing[@]}"
fi

"$root/scripts/get-llama-server.sh" >/dev/null

jobs="$(nproc 2>/dev/null || echo 2)"
cmake -S "$root" -B "$root/$build_dir" "${cmake_args[@]}" >/dev/null
log="$root/$build_dir/build.log"
if ! cmake --build "$root/$build_dir" -j "$jobs" >"$log" 2>&1; then
  grep -E -A3 "error" "$log" | head -n 40 >&2
  echo "setup.sh: build failed; full log in $log" >&2
  exit 1
fi
grep -E "warning:" "$log" | head -n 20 >&2 || true
echo "setup.sh: built $root/$build_dir"
