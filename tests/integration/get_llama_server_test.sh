#!/usr/bin/env bash
# Issue 12 §5.1: scripts/get-llama-server.sh when npm cannot reach its registry says npm's own
# error and what to check (registry, proxy, certificates), instead of exiting silently. The cache
# is a fresh folder ($QMESH_CACHE), so the script must fetch and the real ~/.cache/qmesh is not touched;
# npm's own cache is a fresh folder too, so nothing is served from it.
#   usage: get_llama_server_test.sh SOURCE_DIR
set -uo pipefail
src="$1"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v npm >/dev/null || { echo "SKIP: npm is not installed"; exit 77; }

# Nothing listens on loopback port 9 (discard): the connection is refused at once.
run() {
  env QMESH_CACHE="$tmp/cache" npm_config_cache="$tmp/npm-cache" npm_config_userconfig="$tmp/npmrc" \
    npm_config_registry="http://127.0.0.1:9/" npm_config_fetch_retries=0 \
    bash "$src/scripts/get-llama-server.sh" >"$tmp/out" 2>"$tmp/err"
}
run; rc=$?
cat "$tmp/err"
check "the script fails (exit $rc)" test "$rc" -ne 0
check "it printed no path on stdout" test ! -s "$tmp/out"
check "it worked in \$QMESH_CACHE, not in ~/.cache/qmesh" test -f "$tmp/cache/.get-llama-server.lock"
check "npm's own error code is shown" grep -q "npm error code ECONNREFUSED" "$tmp/err"
check "npm's error names the registry it tried" grep -q "request to http://127.0.0.1:9/" "$tmp/err"
check "no stack trace from npm" bash -c "! grep -q '    at ' '$tmp/err'"
check "the hint names the registry in use" grep -q "npm config get registry *-> http://127.0.0.1:9/" "$tmp/err"
check "the hint names the proxy settings" grep -q "npm config get https-proxy" "$tmp/err"
check "the hint names the CA certificates (cafile, NODE_EXTRA_CA_CERTS)" \
  bash -c "grep -q 'npm config get cafile' '$tmp/err' && grep -q 'NODE_EXTRA_CA_CERTS' '$tmp/err'"
finish
