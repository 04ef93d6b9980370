#!/usr/bin/env bash
# Several models on one worker: llama-server's router mode (--models-dir, one child per model,
# started by the router) against one llama-server per model (what qmesh-worker's Supervisors run).
# Prints, for each: resident memory of all processes with both models loaded, time to the first
# answer when the model must load first, what happens to asks for model A while model B's process
# is killed -9 (and who brings B back), and whether the model processes outlive a kill -9 of their
# parent.
#   tests/bench/run_models_router_compare.sh [QMESH_CLI] [SHAPE]   (SHAPE: tiny or tinyllama)
set -u
cli="${1:-build/src/cli/qmesh-cli}"
shape="${2:-tiny}"
server="${QMESH_LLAMA_SERVER:-$HOME/.cache/qmesh/llama-server/80fb11a/llama-server}"
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/dir"
"$cli" model synth --shape "$shape" --seed 1 --out "$tmp/dir/model-a.gguf" >/dev/null || exit 1
"$cli" model synth --shape "$shape" --seed 2 --out "$tmp/dir/model-b.gguf" >/dev/null || exit 1
now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$t"; }
# A short completion; $1 port, $2 model (router) or "" (single); prints the HTTP status.
ask() {
  local body='{"prompt":"Hello","n_predict":8,"temperature":0}'
  [ -n "$2" ] && body="{\"model\":\"$2\",\"prompt\":\"Hello\",\"n_predict\":8,\"temperature\":0}"
  curl -s -o /dev/null -w '%{http_code}' -m 120 -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$1/completion"
}
wait_health() { local i; for ((i = 0; i < 1200; i++)); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] && return 0; sleep 0.1; done; return 1; }
children_of() { pgrep -P "$1" | tr '\n' ' '; }
common=(-c 2048 -np 1 -t 2 -ngl 0)

echo "== router mode ($shape) =="
port=$(free_port)
"$server" --models-dir "$tmp/dir" --models-max 4 --host 127.0.0.1 --port "$port" "${common[@]}" >"$tmp/router.log" 2>&1 &
router=$!; pids+=("$router")
wait_health "$port" || { echo "router did not start"; tail -5 "$tmp/router.log"; exit 1; }
t0=$(now_ms); code=$(ask "$port" model-a); t1=$(now_ms)
echo "first answer for model-a (load included): $((t1 - t0)) ms (HTTP $code)"
t0=$(now_ms); code=$(ask "$port" model-a); t1=$(now_ms)
echo "next answer for model-a (loaded): $((t1 - t0)) ms (HTTP $code)"
code=$(ask "$port" model-b)
kids=$(children_of "$router")
echo "processes: router $router, children $kids"
# shellcheck disable=SC2086
echo "RSS with both loaded: $(( $(rss_kb "$router" $kids) / 1024 )) MiB (router $(( $(rss_kb "$router") / 1024 )) MiB)"
pid_b=$(pgrep -P "$router" -f model-b | head -1)
# Asks for A while B is killed.
okA=0; n=0
( for i in $(seq 1 10); do ask "$port" model-a; echo; done ) >"$tmp/a.codes" &
asker=$!
sleep 0.2; kill -9 "$pid_b"; wait "$asker"
okA=$(grep -c '^200$' "$tmp/a.codes"); n=$(wc -l <"$tmp/a.codes")
echo "asks for model-a while model-b's child was killed -9: $okA/$n answered 200"
sleep 1
st=$(curl -s "http://127.0.0.1:$port/models" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(",".join(m["id"]+"="+m["status"]["value"]+("(failed, exit %s)" % m["status"].get("exit_code") if m["status"].get("failed") else "") for m in d))')
echo "router's /models after the kill: $st"
t0=$(now_ms); code=$(ask "$port" model-b); t1=$(now_ms)
echo "next ask for model-b: HTTP $code after $((t1 - t0)) ms (the router reloads it on demand; nothing restarts it before)"
kids=$(children_of "$router")
kill -9 "$router"; wait "$router" 2>/dev/null
sleep 2
left=0; for k in $kids; do kill -0 "$k" 2>/dev/null && left=$((left + 1)); done
echo "after kill -9 of the router: $left of $(echo $kids | wc -w) children still running 2 s later (they exit on stdin EOF)"
for k in $kids; do kill -9 "$k" 2>/dev/null; done

echo "== one llama-server per model ($shape) =="
all=()
for m in a b; do
  p=$(free_port)
  t0=$(now_ms)
  "$server" -m "$tmp/dir/model-$m.gguf" --host 127.0.0.1 --port "$p" "${common[@]}" >"$tmp/single-$m.log" 2>&1 &
  pid=$!; pids+=("$pid"); all+=("$pid")
  wait_health "$p" || { echo "llama-server for model-$m did not start"; exit 1; }
  code=$(ask "$p" ""); t1=$(now_ms)
  echo "model-$m: spawn to first answer $((t1 - t0)) ms (HTTP $code)"
  eval "port_$m=$p; pid_$m=$pid"
done
t0=$(now_ms); code=$(ask "$port_a" ""); t1=$(now_ms)
echo "next answer for model-a (loaded): $((t1 - t0)) ms (HTTP $code)"
echo "RSS with both loaded: $(( $(rss_kb "${all[@]}") / 1024 )) MiB"
( for i in $(seq 1 10); do ask "$port_a" ""; echo; done ) >"$tmp/a.codes" &
asker=$!
sleep 0.2; kill -9 "$pid_b"; wait "$asker"
echo "asks for model-a while model-b's process was killed -9: $(grep -c '^200$' "$tmp/a.codes")/$(wc -l <"$tmp/a.codes") answered 200"
echo "(restart and parent-death: qmesh-worker's Supervisor restarts the child after 0.5 s; the exec shim's PR_SET_PDEATHSIG kills it with the worker: tests/sidecar)"
