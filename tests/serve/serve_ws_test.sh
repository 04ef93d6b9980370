#!/usr/bin/env bash
# The WebSocket /v1/ws against a real mesh on loopback (a bootstrap node, two workers with the
# synthesized model, serve with an API key and one CORS origin), driven by the npm `ws` client in
# Node (ws_test.mjs): access rules, two asks on one socket with one cancelled, bad messages, the
# limit of 16 asks, the 1 MiB message limit. The cancelled ask must stop on its worker.
#   usage: serve_ws_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../integration/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"

command -v node >/dev/null || { echo "SKIP: node is not installed"; exit 77; }
# The npm packages: the shared pinned cache (tests/serve/node/npm-deps.sh) when it is there, else
# ws alone, installed once into the same cache folder.
if [ -f "$here/node/npm-deps.sh" ]; then
  modules="$(bash "$here/node/npm-deps.sh" | tail -n 1)"
else
  dir="${QMESH_CACHE:-$HOME/.cache/qmesh}/npm/ws-8.23.1"
  [ -f "$dir/node_modules/ws/package.json" ] ||
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error ws@8.23.1 >&2
  modules="$dir/node_modules"
fi
[ -f "$modules/ws/package.json" ] || { echo "FAIL: the npm package ws could not be installed"; exit 1; }

port=$((48200 + RANDOM % 300 * 2))
boot="127.0.0.1:$port"; sport=$((port + 1))
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
for i in 1 2; do
  "$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval 1 \
    --max-tokens 30000 --log-level debug >"$tmp/w$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2; do check "worker $i joined" wait_line "$tmp/w$i.log" "joined the network as" 60; done
key="ws-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077 && printf '%s\n' "$key" >"$tmp/key")
"$cli" serve --listen "127.0.0.1:$sport" --bootstrap "$boot" --api-key-file "$tmp/key" \
  --cors-origin http://allowed.example >"$tmp/serve.log" 2>&1 &
pids+=($!)
check "serve is listening" wait_line "$tmp/serve.log" "serving on" 30
listed() { curl -fsS -H "Authorization: Bearer $key" "http://127.0.0.1:$sport/v1/models" 2>/dev/null |
  jq -e '.data[0].workers == 2' >/dev/null; }
n=0; until listed || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "both workers are listed" listed

before="$(cat "$tmp/w1.log" "$tmp/w2.log" | grep -c 'cancelled by the client')"
QMESH_SERVE_URL="http://127.0.0.1:$sport" QMESH_API_KEY="$key" QMESH_NODE_MODULES="$modules" \
  QMESH_ALLOWED_ORIGIN=http://allowed.example timeout 240 node "$here/ws_test.mjs" >"$tmp/node.out" 2>&1
rc=$?
cat "$tmp/node.out"
passed=$((passed + $(grep -c '^ok:' "$tmp/node.out")))
failures=$((failures + $(grep -c '^FAIL:' "$tmp/node.out")))
[ "$rc" -eq 0 ] || [ "$(grep -c '^FAIL:' "$tmp/node.out")" -gt 0 ] || bad "ws_test.mjs exited $rc"
gone() { [ "$(cat "$tmp/w1.log" "$tmp/w2.log" | grep -c 'cancelled by the client')" -gt "$before" ]; }
n=0; until gone || [ $n -ge 100 ]; do sleep 0.1; n=$((n + 1)); done
check "the cancelled asks were cancelled on the workers" gone
check "serve never logs the key" bash -c "! grep -q -- '$key' $tmp/serve.log"
check "serve is still serving" curl -fsS -o /dev/null "http://127.0.0.1:$sport/health"
finish
