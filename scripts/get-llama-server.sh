#!/usr/bin/env bash
# Gets a llama-server binary for this platform into the cache
#   ~/.cache/qmesh/llama-server/<ver>/llama-server
# and prints its path on the last line of stdout.
#
# 1. If scripts/llama-release.sha256 pins an official llama.cpp release archive for this platform
#    and the release host is reachable, download it and verify its checksum.
# 2. Otherwise build offline from the llama.cpp source that the npm package node-llama-cpp ships
#    as a git bundle (the npm registry is reachable on every machine of this project).
# Reruns take seconds: the result is cached by llama.cpp commit.
set -euo pipefail

NLC_VERSION="3.21.1"                   # node-llama-cpp, carries llama.cpp source
LLAMA_COMMIT="80fb11ac73e66d89eae2c6a91d8a77428fa733ed"
LLAMA_VER="${LLAMA_COMMIT:0:7}"
CACHE="${QMESH_CACHE:-$HOME/.cache/qmesh}"
OUT="$CACHE/llama-server/$LLAMA_VER"
SRC="$CACHE/src/llama.cpp-$LLAMA_VER"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jobs="$(nproc 2>/dev/null || echo 2)"

log() { printf 'get-llama-server: %s\n' "$*" >&2; }

platform() {
  local os arch
  case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; MINGW*|MSYS*|CYGWIN*) os=win32 ;; *) os=unknown ;; esac
  case "$(uname -m)" in x86_64|amd64) arch=x64 ;; aarch64|arm64) arch=arm64 ;; *) arch=unknown ;; esac
  echo "$os-$arch"
}

if [ -x "$OUT/llama-server" ] && [ -f "$OUT/vocab/ggml-vocab-llama-spm.gguf" ]; then
  log "cached: $OUT/llama-server"
  echo "$OUT/llama-server"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.get-llama-server.lock"
flock 9 2>/dev/null || true

# npm could not fetch the package (a proxy, a certificate, no network): npm's own error, without
# its stack trace, and where to look.
npm_failed() {
  local tmp="$1" registry cafile proxy
  log "npm could not fetch node-llama-cpp@$NLC_VERSION:"
  grep -v -E '^npm (error|ERR!)( {2,}.*| \}|)$|A complete log of this run' "$tmp/npm.err" | head -n 8 | sed 's/^/  /' >&2 || true
  registry="$(npm config get registry 2>/dev/null || echo '?')"
  cafile="$(npm config get cafile 2>/dev/null || echo '?')"
  proxy="$(npm config get https-proxy 2>/dev/null || echo '?')"
  log "check the registry:     npm config get registry    -> $registry"
  log "check the proxy:        npm config get https-proxy -> $proxy; HTTPS_PROXY=${HTTPS_PROXY:-${https_proxy:-unset}}"
  log "check the certificates: npm config get cafile      -> $cafile; NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-unset}"
  rm -rf "$tmp"
  exit 1
}

# The source is needed in either case: the vocabulary GGUFs that `qmesh-cli model synth` uses come from it.
fetch_source() {
  if [ -d "$SRC/.git" ] && [ "$(git -C "$SRC" rev-parse HEAD)" = "$LLAMA_COMMIT" ]; then return 0; fi
  command -v npm >/dev/null || { log "npm is needed to fetch the llama.cpp source (apt-get install npm)"; exit 1; }
  local tmp; tmp="$(mktemp -d)"
  log "fetching llama.cpp source (node-llama-cpp@$NLC_VERSION from the npm registry)"
  if ! (cd "$tmp" && npm pack --loglevel=error "node-llama-cpp@$NLC_VERSION" >/dev/null 2>"$tmp/npm.err"); then
    npm_failed "$tmp"
  fi
  tar -xzf "$tmp/node-llama-cpp-$NLC_VERSION.tgz" -C "$tmp" package/llama/gitRelease.bundle
  local head; head="$(git bundle list-heads "$tmp/package/llama/gitRelease.bundle" | awk '$2=="HEAD"{print $1}')"
  if [ "$head" != "$LLAMA_COMMIT" ]; then
    log "unexpected llama.cpp commit in the bundle: $head (want $LLAMA_COMMIT)"; exit 1
  fi
  rm -rf "$SRC"; mkdir -p "$(dirname "$SRC")"
  git -c advice.detachedHead=false clone -q "$tmp/package/llama/gitRelease.bundle" "$SRC"
  rm -rf "$tmp"
}

# scripts/llama-release.sha256 pins official release archives: "<sha256> <platform> <tag> <archive>".
# With no line for this platform (the file ships without any: no archive has been verified from
# these offline machines), the offline build is the path.
try_download() {
  local plat="$1" sumfile="$here/llama-release.sha256" want tag name
  [ -f "$sumfile" ] || return 1
  read -r want tag name < <(awk -v p="$plat" '$1 !~ /^#/ && $2==p {print $1, $3, $4; exit}' "$sumfile") || return 1
  [ -n "${want:-}" ] && [ -n "${name:-}" ] || return 1
  command -v curl >/dev/null && command -v unzip >/dev/null || return 1
  local tmp; tmp="$(mktemp -d)"
  log "downloading official release $name"
  if ! curl -fsSL --max-time 120 -o "$tmp/$name" "https://github.com/ggml-org/llama.cpp/releases/download/$tag/$name"; then
    log "download failed; building from source instead"; rm -rf "$tmp"; return 1
  fi
  if [ "$(sha256sum "$tmp/$name" | cut -d' ' -f1)" != "$want" ]; then
    log "checksum mismatch for $name: refusing it"; rm -rf "$tmp"; return 1
  fi
  mkdir -p "$OUT"; unzip -q -o "$tmp/$name" -d "$OUT/release"
  local bin; bin="$(find "$OUT/release" -name 'llama-server' -type f | head -n1)"
  [ -n "$bin" ] || { rm -rf "$tmp"; return 1; }
  ln -sf "$bin" "$OUT/llama-server"; rm -rf "$tmp"
}

build_offline() {
  command -v cmake >/dev/null || { log "cmake is needed (apt-get install cmake g++)"; exit 1; }
  log "building llama-server from source ($LLAMA_VER, $jobs jobs; takes minutes once, then cached)"
  local b="$SRC/build-qmesh"
  cmake -S "$SRC" -B "$b" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF >"$CACHE/llama-build.log" 2>&1 \
    || { log "cmake configure failed; see $CACHE/llama-build.log"; exit 1; }
  cmake --build "$b" --target llama-server -j "$jobs" >>"$CACHE/llama-build.log" 2>&1 \
    || { log "build failed; see $CACHE/llama-build.log"; tail -n 20 "$CACHE/llama-build.log" >&2; exit 1; }
  mkdir -p "$OUT"
  cp "$b/bin/llama-server" "$OUT/llama-server.tmp" && mv "$OUT/llama-server.tmp" "$OUT/llama-server"
}

fetch_source
plat="$(platform)"
if [ ! -x "$OUT/llama-server" ]; then
  try_download "$plat" || build_offline
fi
mkdir -p "$OUT/vocab"
cp "$SRC"/models/ggml-vocab-*.gguf "$OUT/vocab/"
echo "$LLAMA_VER" > "$OUT/VERSION"
log "ready: $OUT/llama-server"
echo "$OUT/llama-server"
