#!/usr/bin/env bash
# Runs one Node-based serve test (openai_test.mjs, page_test.mjs) against a real mesh on loopback:
# a bootstrap node, two qmesh-workers with the synthesized model (each with its real llama-server)
# and `qmesh-cli serve` with an API key. The npm packages come from npm-deps.sh (pinned, cached).
#   usage: node_test.sh TEST.mjs QMESH_WORKER QMESH_CLI TINY_MODEL OUT_DIR
# The test gets, in its environment: QMESH_SERVE_URL, QMESH_API_KEY, QMESH_NODE_MODULES,
# QMESH_TEST_OUT (screenshots go there) and QMESH_WORKERS (JSON: [{id, llama_port, log}]).
set -uo pipefail
test_js="$1"; worker="$2"; cli="$3"; model="$4"; out="$5"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../integration/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"

command -v node >/dev/null || { echo "FAIL: node is needed (apt-get install nodejs npm)"; exit 1; }
modules="$(bash "$here/npm-deps.sh" | tail -n 1)" && [ -d "$modules" ] \
  || { echo "FAIL: the npm packages could not be installed (npm-deps.sh's error above)"; exit 1; }
rm -rf "$out" && mkdir -p "$out"

port=$((49200 + RANDOM % 300))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
# One thread per llama-server: a generating worker leaves CPU to serve and the browser (the tiny
# model still writes hundreds of tokens a second).
for i in 1 2; do
  "$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval 2 \
    --max-tokens 4000 --threads 1 --log-level debug >"$tmp/w$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2; do
  check "worker $i joined the network" wait_line "$tmp/w$i.log" "joined the network as" 60
done

# Each worker's id and its llama-server's port (for /slots), from its log.
workers="["
for i in 1 2; do
  id="$(grep -o 'joined the network as [0-9a-f]*' "$tmp/w$i.log" | head -n 1 | awk '{print $5}')"
  lport="$(grep -o 'started llama-server pid [0-9]* on 127.0.0.1:[0-9]*' "$tmp/w$i.log" | tail -n 1 | sed 's/.*://')"
  [ $i -gt 1 ] && workers+=","
  workers+="{\"id\":\"$id\",\"llama_port\":${lport:-0},\"log\":\"$tmp/w$i.log\"}"
done
workers+="]"
echo "workers: $workers"

key="qk-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
(umask 077 && printf '%s\n' "$key" >"$tmp/api.key")
sport=$((49600 + RANDOM % 300))
url="http://127.0.0.1:$sport"
"$cli" serve --listen "127.0.0.1:$sport" --api-key-file "$tmp/api.key" --bootstrap "$boot" >"$tmp/serve.log" 2>&1 &
spid=$!; pids+=($spid)
up() { curl -fsS -o /dev/null "$url/health" 2>/dev/null; }
n=0; until up || [ $n -ge 150 ] || ! kill -0 $spid 2>/dev/null; do sleep 0.2; n=$((n + 1)); done
if ! up; then
  bad "serve answers /health"; echo "--- serve.log (tail)"; tail -n 30 "$tmp/serve.log"; finish; exit
fi
ok "serve answers /health"
# Both workers' records are in before the test starts.
listed() { curl -fsS -H "Authorization: Bearer $key" "$url/v1/models" 2>/dev/null |
  jq -e '[.data[] | select(.id == "qmesh-synth-tiny" and .workers == 2)] | length == 1' >/dev/null; }
n=0; until listed || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "/v1/models lists the model on both workers" listed

echo "running $(basename "$test_js") against $url (screenshots and logs: $out)"
QMESH_SERVE_URL="$url" QMESH_API_KEY="$key" QMESH_NODE_MODULES="$modules" QMESH_TEST_OUT="$out" \
  QMESH_WORKERS="$workers" timeout 400 node "$test_js"
rc=$?
check "$(basename "$test_js") passed (exit $rc)" test "$rc" -eq 0
check "serve is still running" kill -0 $spid 2>/dev/null
cp "$tmp"/*.log "$out/" 2>/dev/null
[ "$failures" -eq 0 ] || { echo "--- serve.log (tail)"; tail -n 30 "$tmp/serve.log"; }
finish
