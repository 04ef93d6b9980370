#!/usr/bin/env bash
# qmesh-worker --metrics-listen on a real mesh on loopback (a bootstrap node, one worker with a
# real llama-server, qmesh-cli ask): the text passes `promtool check metrics` and parses with
# Prometheus' Python parser; counters move by exactly what the asks did (completed, tokens, the
# TTFT and duration histograms), a cancelled ask and one whose llama-server was killed count under
# their outcomes, gauges show a running ask; bad --metrics-listen values are one line and exit 2.
#   usage: worker_metrics_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
for tool in promtool jq curl /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (scripts/setup.sh installs it)"; exit 77; }
done
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null ||
  { echo "SKIP: python3-prometheus-client not installed (scripts/setup.sh installs it)"; exit 77; }

# ---- bad values: one line, exit 2 (before anything starts) ----
one_line_exit() {  # expected-rc pattern args...
  local want="$1" pat="$2"; shift 2
  local out rc
  out="$("$worker" --model "$model" "$@" 2>&1)"; rc=$?
  [ "$rc" -eq "$want" ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q -- "$pat" <<<"$out" ||
    { echo "  got rc $rc: $out"; return 1; }
}
check "--metrics-listen foo: exit 2, one line" one_line_exit 2 "metrics-listen.*foo" --metrics-listen foo
check "--metrics-listen 127.0.0.1:70000: exit 2" one_line_exit 2 "metrics-listen" --metrics-listen 127.0.0.1:70000
check "--metrics-listen [::1] (no port): exit 2" one_line_exit 2 "metrics-listen" --metrics-listen '[::1]'
check "a non-loopback address is refused without --insecure-metrics-listen (exit 2)" \
  one_line_exit 2 "insecure-metrics-listen" --metrics-listen 0.0.0.0:9464
printf '{"metrics-listen": 9464}\n' >"$tmp/bad.json"
check "config key metrics-listen must be a string (exit 2)" one_line_exit 2 "metrics-listen" --config "$tmp/bad.json"
# With the flag the address passes the check and is bound: 192.0.2.1 (TEST-NET) is no address of
# this host, so the bind fails (exit 1), before the model loads; no packet leaves.
check "--insecure-metrics-listen lets a non-loopback address through to the bind" \
  one_line_exit 1 "cannot listen on 192.0.2.1:9464" --insecure-metrics-listen --metrics-listen 192.0.2.1:9464

# ---- a mesh: bootstrap node and one worker ----
port=$((47500 + RANDOM % 400))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
# A long context and answer limit: the long asks below are still running when they are cancelled
# or their llama-server is killed, however fast this machine is (the tiny model makes thousands
# of tokens a second). llama-server caps a slot's context at the model's training context, so the
# worker serves a copy of the tiny model synthesized with a long one.
"$cli" model synth --shape tiny --seed 7 --context 32768 --out "$tmp/long-context.gguf" >/dev/null ||
  { echo "FAIL: model synth --context 32768"; exit 1; }
"$worker" --model "$tmp/long-context.gguf" --bootstrap "$boot" --identity "$tmp/w.key" --status-interval 2 --max-tokens 16000 \
  --ctx-size 16384 \
  --metrics-listen 127.0.0.1:0 --log-level debug >"$tmp/w.log" 2>&1 &
wpid=$!; pids+=($wpid)
check "the worker says where its metrics are" wait_line "$tmp/w.log" "metrics on http://127.0.0.1:[0-9]*/metrics" 30
url="$(grep -o -m1 'metrics on http://[^ ]*' "$tmp/w.log" | cut -d' ' -f3)"
check "worker joined the network" wait_line "$tmp/w.log" "joined the network as" 60
mport="${url##*:}"; mport="${mport%%/*}"
check "a second worker on the same metrics port fails (exit 1, one line)" \
  one_line_exit 1 "cannot listen on 127.0.0.1:$mport" --metrics-listen "127.0.0.1:$mport" --identity "$tmp/w2.key"

scrape() {  # scrape NAME: the text in $tmp/NAME.txt, its samples as JSON in $tmp/NAME.json
  curl -sf "$url" >"$tmp/$1.txt" && /usr/bin/python3 "$here/prom_json.py" "$tmp/$1.txt" >"$tmp/$1.json"
}
val() { jq -r --arg k "$2" '.[$k] // "missing"' "$tmp/$1.json"; }          # val SCRAPE SAMPLE
delta() { jq -n --argjson a "$(val "$1" "$3")" --argjson b "$(val "$2" "$3")" '$b - $a' 2>/dev/null || echo "missing"; }
is() { [ "$1" = "$2" ] || { echo "  got $1, want $2"; return 1; }; }
asks() { echo "qmesh_worker_asks_total{outcome=\"$1\"}"; }

check "GET /metrics answers 200 with the 0.0.4 content type" \
  bash -c "curl -sf -D - -o /dev/null '$url' | grep -qi '^Content-Type: text/plain; version=0.0.4'"
check "other paths are 404" test "$(curl -s -o /dev/null -w '%{http_code}' "${url%/metrics}/other")" = 404
check "scrape before the asks parses (prometheus_client)" scrape before
check "promtool check metrics finds nothing to complain about" \
  bash -c "promtool check metrics <'$tmp/before.txt' >'$tmp/promtool.out' 2>&1 && ! grep -q . '$tmp/promtool.out' || { cat '$tmp/promtool.out'; false; }"
for name in qmesh_worker_asks_total qmesh_worker_tokens_generated_total qmesh_worker_time_to_first_token_seconds_count \
  qmesh_worker_ask_duration_seconds_count qmesh_worker_queue_depth qmesh_worker_slots_busy qmesh_worker_llama_server_restarts_total \
  'qmesh_worker_sessions_open{path="direct"}' 'qmesh_worker_sessions_open{path="relayed"}' 'qmesh_worker_punches_total{outcome="direct"}' \
  qmesh_worker_relay_forwarded_bytes_total qmesh_worker_dht_records_stored 'qmesh_worker_dht_queries_total{outcome="ok"}'; do
  [ "$name" = qmesh_worker_asks_total ] && name="$(asks completed)"
  check "scrape has $name" test "$(val before "$name")" != missing
done
check "gauges: 1 slot, queue capacity 10, llama-server up" \
  test "$(val before qmesh_worker_slots)/$(val before qmesh_worker_queue_capacity)/$(val before qmesh_worker_llama_server_up)" = "1/10/1"

# ---- N asks: counters move by exactly what they did ----
tokens=0
for k in 5 7 9; do
  "$cli" ask --bootstrap "$boot" --max-tokens "$k" --json "Count to $k" >"$tmp/ask$k.json" 2>"$tmp/ask$k.err" ||
    bad "ask --max-tokens $k failed: $(tail -1 "$tmp/ask$k.err")"
  tokens=$((tokens + $(jq '.tokens' "$tmp/ask$k.json")))
done
check "the three asks reported tokens" test "$tokens" -gt 0
check "scrape after the asks parses" scrape after
check "asks completed +3" is "$(delta before after "$(asks completed)")" 3
check "tokens generated += the tokens the asks reported ($tokens)" \
  is "$(delta before after qmesh_worker_tokens_generated_total)" "$tokens"
check "TTFT histogram count +3" is "$(delta before after qmesh_worker_time_to_first_token_seconds_count)" 3
check "ask duration histogram count +3" is "$(delta before after qmesh_worker_ask_duration_seconds_count)" 3
check "TTFT sum grew" jq -en --argjson d "$(delta before after qmesh_worker_time_to_first_token_seconds_sum)" '$d > 0'
for o in cancelled busy bad_request timeout worker_lost internal other; do
  check "asks $o unchanged" is "$(delta before after "$(asks "$o")")" 0
done
check "sessions accepted +3 (one per qmesh-cli ask)" is "$(delta before after qmesh_worker_sessions_accepted_total)" 3
check "no ask running or waiting now" is "$(val after qmesh_worker_slots_busy)/$(val after qmesh_worker_queue_depth)" "0/0"

# ---- a long ask: the gauges show it; cancelled by the client, it counts as cancelled ----
long_ask() {  # starts a long ask in the background (pid in $ask_pid); waits until its text streams in
  : >"$tmp/long.out"
  "$cli" ask --bootstrap "$boot" --max-tokens 16000 "Tell me a long story" >"$tmp/long.out" 2>"$tmp/long.err" &
  ask_pid=$!; pids+=($ask_pid)
  local i; for ((i = 0; i < 300; i++)); do
    [ -s "$tmp/long.out" ] && return 0
    kill -0 "$ask_pid" 2>/dev/null || { echo "  the ask failed: $(tail -1 "$tmp/long.err")"; return 1; }
    sleep 0.1
  done; return 1
}
finished() { grep -c 'ask from [0-9a-f]*: [0-9]* tokens' "$tmp/w.log"; }  # asks the worker completed
# Polls until SAMPLE's delta from scrape BASE is WANT (the worker counts when the ask has ended).
until_delta() {  # BASE SAMPLE WANT
  local i; for ((i = 0; i < 100; i++)); do
    scrape poll && [ "$(delta "$1" poll "$2")" = "$3" ] && return 0; sleep 0.1
  done; echo "  $2 moved by $(delta "$1" poll "$2"), want $3"; return 1
}
# The tiny model samples its end-of-text token now and then, so a long answer can end by itself
# before it is interrupted: such an attempt proves nothing and is made again (at most 5 times).
cancelled_ask() {  # a long ask, scraped (mid) while it streams, then interrupted by its client
  local try; for ((try = 1; try <= 5; try++)); do
    scrape mid0 && done0="$(finished)" && long_ask && scrape mid || return 1
    kill -INT "$ask_pid" 2>/dev/null; wait "$ask_pid" 2>/dev/null
    [ "$(finished)" = "$done0" ] && return 0
    echo "  attempt $try: the answer ended by itself before the interrupt; again"
  done; return 1
}
check "a long ask was streaming when its client interrupted it" cancelled_ask
check "while it ran: 1 slot busy, none queued" is "$(val mid qmesh_worker_slots_busy)/$(val mid qmesh_worker_queue_depth)" "1/0"
check "while it ran: one session open" is "$(jq -n --argjson a "$(val mid 'qmesh_worker_sessions_open{path="direct"}')" \
  --argjson b "$(val mid 'qmesh_worker_sessions_open{path="relayed"}')" '$a + $b')" 1
check "the ask cancelled by its client counts as cancelled (+1)" until_delta mid0 "$(asks cancelled)" 1
check "and not as completed" is "$(delta mid0 poll "$(asks completed)")" 0

# ---- llama-server killed mid-answer: worker_lost +1, restarts +1 ----
crashed_ask() {  # a long ask whose llama-server is killed while it streams
  local try llama_pid; for ((try = 1; try <= 5; try++)); do
    llama_pid="$(grep -o 'started llama-server pid [0-9]*' "$tmp/w.log" | tail -1 | awk '{print $4}')"
    scrape crash0 && done0="$(finished)" && long_ask || return 1
    kill -9 "$llama_pid"
    [ "$(finished)" = "$done0" ] && return 0
    echo "  attempt $try: the answer ended by itself before the kill; again"
    wait "$ask_pid" 2>/dev/null
    until_delta crash0 qmesh_worker_llama_server_restarts_total 1 && llama_up && asks_served || return 1
  done; return 1
}
asks_served() {  # until the worker serves asks again (its record says so once it announces)
  local i; for ((i = 0; i < 50; i++)); do
    "$cli" ask --bootstrap "$boot" --max-tokens 1 "Hi" >/dev/null 2>&1 && return 0; sleep 0.2
  done; return 1
}
llama_up() {  # until the restarted llama-server is up
  local i; for ((i = 0; i < 300; i++)); do
    scrape poll && [ "$(val poll qmesh_worker_llama_server_up)" = 1 ] && return 0; sleep 0.1
  done; return 1
}
check "a long ask was streaming when llama-server was killed" crashed_ask
check "the ask llama-server lost counts as worker_lost (+1)" until_delta crash0 "$(asks worker_lost)" 1
check "llama-server restarts +1" until_delta crash0 qmesh_worker_llama_server_restarts_total 1
kill -INT "$ask_pid" 2>/dev/null; wait "$ask_pid" 2>/dev/null  # it was resuming the answer on the restarted llama-server
check "the scrape after all that still passes promtool" \
  bash -c "curl -sf '$url' | promtool check metrics"

kill -INT "$wpid"; wait "$wpid"; rc=$?
check "the worker exits 0 on SIGINT" test "$rc" -eq 0
check "no sanitizer report in the worker's log" bash -c "! grep -E 'AddressSanitizer|LeakSanitizer|runtime error' '$tmp/w.log'"
finish
