#!/usr/bin/env bash
# Installs the npm packages the Node-based serve tests use, at pinned versions, into a cache
#   ${QMESH_CACHE:-~/.cache/qmesh}/npm/<pin hash>/node_modules
# and prints that node_modules path on the last line of stdout. Reruns take milliseconds.
# The pins run on node 20, the project machines' node (openai 7 and puppeteer-core 25 want node >= 22).
set -euo pipefail

PINS=(openai@6.49.0 puppeteer-core@24.43.1 ws@8.23.1)
CACHE="${QMESH_CACHE:-$HOME/.cache/qmesh}"
key="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
DIR="$CACHE/npm/$key"

log() { printf 'npm-deps: %s\n' "$*" >&2; }

if [ -f "$DIR/.complete" ]; then
  echo "$DIR/node_modules"
  exit 0
fi
command -v npm >/dev/null || { log "npm is needed (apt-get install npm)"; exit 1; }
mkdir -p "$CACHE/npm"
exec 9>"$CACHE/npm/.lock"
flock 9 2>/dev/null || true
if [ -f "$DIR/.complete" ]; then echo "$DIR/node_modules"; exit 0; fi

tmp="$(mktemp -d "$CACHE/npm/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
printf '{"name":"qmesh-serve-node-tests","private":true}\n' >"$tmp/package.json"
log "installing ${PINS[*]} from the npm registry"
# puppeteer-core never downloads a browser (the tests drive Debian's chromium); skip it anyway.
if ! (cd "$tmp" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error \
        --ignore-scripts --save-exact "${PINS[@]}" >"$tmp/npm.out" 2>"$tmp/npm.err"); then
  # npm's own error, without its stack trace, and where to look.
  log "npm could not install ${PINS[*]}:"
  grep -v -E '^npm (error|ERR!)( {2,}.*| \}|)$|A complete log of this run' "$tmp/npm.err" | head -n 12 | sed 's/^/  /' >&2 || true
  log "check the registry:     npm config get registry    -> $(npm config get registry 2>/dev/null || echo '?')"
  log "check the proxy:        npm config get https-proxy -> $(npm config get https-proxy 2>/dev/null || echo '?'); HTTPS_PROXY=${HTTPS_PROXY:-${https_proxy:-unset}}"
  log "check the certificates: npm config get cafile      -> $(npm config get cafile 2>/dev/null || echo '?'); NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-unset}"
  exit 1
fi
for p in "${PINS[@]}"; do
  name="${p%@*}"; want="${p##*@}"
  got="$(node -p "require('$tmp/node_modules/$name/package.json').version" 2>/dev/null || echo none)"
  [ "$got" = "$want" ] || { log "$name: installed $got, want $want"; exit 1; }
done
rm -rf "$DIR"
mv "$tmp" "$DIR"
trap - EXIT
touch "$DIR/.complete"
log "installed into $DIR/node_modules"
echo "$DIR/node_modules"
