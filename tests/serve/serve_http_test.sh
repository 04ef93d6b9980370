#!/usr/bin/env bash
# qmesh-cli serve on a real mesh on loopback (a bootstrap node, two workers with the synthesized
# model), driven by curl: the OpenAI endpoints (JSON and the SSE sequence), every error status,
# the API key and CORS rules, a client that leaves mid-stream, and the refusal of a public listen.
#   usage: serve_http_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL CHAT_HTML
set -uo pipefail
worker="$1"; cli="$2"; model="$3"; page="$4"
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
base=$((47600 + RANDOM % 300 * 4))
boot="127.0.0.1:$base"; pa=$((base + 1)); pb=$((base + 2)); pc=$((base + 3))
A="http://127.0.0.1:$pa"; B="http://127.0.0.1:$pb"; C="http://127.0.0.1:$pc"
key="k3y-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$key" >"$tmp/key"; chmod 600 "$tmp/key"
auth=(-H "Authorization: Bearer $key")

"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
# One slot and one queue place each: four asks fill the mesh. The tiny model may write 2,000
# tokens in under a second, so where an ask must outlast a check, the workers' llama-servers are
# stopped (SIGSTOP) for that moment.
wpids=()
freeze() { local w; for w in "${wpids[@]}"; do pkill -STOP -P "$w"; done; }
thaw() { local w; for w in "${wpids[@]}"; do pkill -CONT -P "$w"; done; }
for i in 1 2; do
  "$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval 1 \
    --max-tokens 30000 --queue-capacity 1 --log-level debug >"$tmp/w$i.log" 2>&1 &
  pids+=($!); wpids+=($!)
done
for i in 1 2; do check "worker $i joined" wait_line "$tmp/w$i.log" "joined the network as" 60; done

# A: the API key and one CORS origin (the answers come from A). B: no key, asks time out after
# 1 s (errors only). C: a topic nobody serves.
"$cli" serve --listen "127.0.0.1:$pa" --bootstrap "$boot" --api-key-file "$tmp/key" \
  --cors-origin http://allowed.example >"$tmp/a.log" 2>&1 &
pids+=($!)
"$cli" serve --listen "127.0.0.1:$pb" --bootstrap "$boot" --timeout 1 >"$tmp/b.log" 2>&1 &
pids+=($!)
"$cli" serve --listen "127.0.0.1:$pc" --bootstrap "$boot" --topic nobody-here >"$tmp/c.log" 2>&1 &
pids+=($!)
for s in a b c; do check "serve $s is listening" wait_line "$tmp/$s.log" "serving on http://127.0.0.1:" 30; done

# code URL [curl args...]: the HTTP status; the body in $tmp/body, headers in $tmp/hdr.
code() { local url="$1"; shift; curl -s -o "$tmp/body" -D "$tmp/hdr" -w '%{http_code}' "$@" "$url"; }
jqq() { jq "$@" >/dev/null; }
json_is() { jq -e "$1" "$tmp/body" >/dev/null 2>&1; }
hdr() { grep -i "^$1:" "$tmp/hdr" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
chat='{"messages":[{"role":"user","content":"Hello"}],"max_tokens":8}'

# ---- open routes, the key ----
check "/health is 200 without a key" test "$(code "$A/health")" = 200
check "/ is the chat page, without a key" bash -c "test \"\$(curl -s -o $tmp/page -w '%{http_code} %{content_type}' $A/)\" = '200 text/html; charset=utf-8'"
check "...byte for byte src/serve/chat.html" cmp -s "$tmp/page" "$page"
check "401 without a key" test "$(code "$A/v1/models")" = 401
check "...as an OpenAI error with code invalid_api_key" json_is '.error.code == "invalid_api_key" and (.error.message | length) > 0 and has("error")'
check "...and WWW-Authenticate: Bearer" test "$(hdr www-authenticate)" = Bearer
check "401 with a wrong key" test "$(code "$A/v1/models" -H "Authorization: Bearer x$key")" = 401
check "401 with the key but not as Bearer" test "$(code "$A/v1/models" -H "Authorization: Basic $key")" = 401
check "401 on a POST without a key" test "$(code "$A/v1/chat/completions" -d "$chat")" = 401
listed() { [ "$(code "$A/v1/models" "${auth[@]}")" = 200 ] && json_is '.object == "list" and .data[0].id == "qmesh-synth-tiny" and .data[0].workers == 2 and .data[0].owned_by == "qmesh"'; }
n=0; until listed || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "/v1/models with the key lists the model and its two workers" listed
check "serve never logs the key" bash -c "! grep -q -- '$key' $tmp/a.log"

# ---- routes and methods ----
check "404 for an unknown route" test "$(code "$A/v1/nothing" "${auth[@]}")" = 404
check "...in OpenAI's error shape" json_is '.error.type == "invalid_request_error" and (.error.message | test("/v1/nothing")) and .error.param == null'
check "405 for GET on /v1/chat/completions" test "$(code "$A/v1/chat/completions" "${auth[@]}")" = 405
check "...with Allow: POST" bash -c "grep -qi '^allow: POST' $tmp/hdr"
check "405 for DELETE /v1/models" test "$(code "$A/v1/models" -X DELETE "${auth[@]}")" = 405

# ---- 400, 413 ----
check "400 for a body that is not JSON" test "$(code "$B/v1/chat/completions" -d '{"messages":')" = 400
check "...code invalid_json" json_is '.error.code == "invalid_json"'
check "400 for n=2, naming n" test "$(code "$B/v1/chat/completions" -d '{"messages":[{"role":"user","content":"x"}],"n":2}')" = 400
check "...param n, code unsupported_parameter" json_is '.error.param == "n" and .error.code == "unsupported_parameter" and (.error.message | test("n"))'
check "400 for tools" bash -c "test \"\$(curl -s -o $tmp/t -w '%{http_code}' $B/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}')\" = 400 && jq -e '.error.param == \"tools\"' $tmp/t >/dev/null"
check "400 for an image part" bash -c "test \"\$(curl -s -o $tmp/t -w '%{http_code}' $B/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:,\"}}]}]}')\" = 400"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$tmp/big.json"
check "413 for a body over 1 MiB" test "$(code "$B/v1/chat/completions" --data-binary @"$tmp/big.json")" = 413
check "...code request_too_large" json_is '.error.code == "request_too_large"'
check "411 for a chunked body" test "$(code "$B/v1/chat/completions" -H 'Transfer-Encoding: chunked' -d "$chat")" = 411

# ---- happy paths ----
check "chat completion: 200" test "$(code "$A/v1/chat/completions" "${auth[@]}" -H 'Content-Type: application/json' -d "$chat")" = 200
check "...a chat.completion with the answer, finish_reason length and usage" json_is '
  .object == "chat.completion" and (.id | startswith("chatcmpl-")) and (.created | type) == "number"
  and .choices[0].message.role == "assistant" and (.choices[0].message.content | length) > 0
  and .choices[0].finish_reason == "length" and .usage.completion_tokens == 8
  and .usage.total_tokens == .usage.prompt_tokens + 8 and (.qmesh.worker | length) == 64'
check "content as a list of text parts" test "$(code "$A/v1/chat/completions" "${auth[@]}" -d '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],"max_completion_tokens":3,"user":"u1","stop":null}')" = 200
check "...max_completion_tokens is the length" json_is '.usage.completion_tokens == 3'
check "completions: 200, a text_completion" bash -c "test \"\$(curl -s -o $tmp/c -w '%{http_code}' -H 'Authorization: Bearer $key' $A/v1/completions -d '{\"prompt\":\"Once upon\",\"max_tokens\":5}')\" = 200 && jq -e '.object == \"text_completion\" and (.id | startswith(\"cmpl-\")) and (.choices[0].text | length) > 0 and .usage.completion_tokens == 5' $tmp/c >/dev/null"

# SSE: role first, content deltas, finish_reason, the usage chunk, [DONE]; one id throughout.
curl -sN -D "$tmp/sse.hdr" "$A/v1/chat/completions" "${auth[@]}" \
  -d '{"messages":[{"role":"user","content":"Tell me"}],"max_tokens":12,"stream":true,"stream_options":{"include_usage":true}}' >"$tmp/sse"
grep '^data: ' "$tmp/sse" | sed 's/^data: //' >"$tmp/sse.data"
check "stream: 200 text/event-stream" bash -c "grep -qi '^content-type: text/event-stream' $tmp/sse.hdr && head -n1 $tmp/sse.hdr | grep -q ' 200'"
check "stream: ends with data: [DONE]" test "$(tail -n 1 "$tmp/sse.data")" = "[DONE]"
grep -v '^\[DONE\]$' "$tmp/sse.data" >"$tmp/sse.json"
check "stream: every event is a chat.completion.chunk with one id" \
  jqq -e -s 'all(.[]; .object == "chat.completion.chunk") and ([.[].id] | unique | length) == 1 and (.[0].id | startswith("chatcmpl-"))' "$tmp/sse.json"
check "stream: the first chunk carries the role" jqq -e -s '.[0].choices[0].delta.role == "assistant"' "$tmp/sse.json"
check "stream: content deltas, then a finish_reason chunk, then usage (12 tokens)" jqq -e -s '
  ([.[] | select(.choices | length > 0) | .choices[0].delta.content // empty] | join("") | length) > 0
  and (.[-2].choices[0].finish_reason == "length") and (.[-1].choices == []) and .[-1].usage.completion_tokens == 12
  and ([.[0:-2][] | .choices[0].finish_reason] | all(. == null))' "$tmp/sse.json"
curl -sN "$A/v1/completions" "${auth[@]}" -d '{"prompt":"Once","max_tokens":4,"stream":true}' >"$tmp/sse2"
check "completions stream: text_completion chunks, no usage chunk, [DONE]" bash -c "
  grep '^data: {' $tmp/sse2 | sed 's/^data: //' | jq -e -s 'all(.[]; .object == \"text_completion\" and (has(\"usage\") | not)) and .[-1].choices[0].finish_reason == \"length\"' >/dev/null &&
  tail -n 2 $tmp/sse2 | grep -q '^data: \[DONE\]'"

# ---- CORS ----
check "preflight from a listed origin: 204 with its Allow-Origin" bash -c "
  test \"\$(curl -s -o /dev/null -D $tmp/pf -w '%{http_code}' -X OPTIONS $A/v1/chat/completions -H 'Origin: http://allowed.example' -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization, content-type')\" = 204 &&
  grep -qi '^access-control-allow-origin: http://allowed.example' $tmp/pf && grep -qi '^access-control-allow-headers: authorization, content-type' $tmp/pf"
check "a request from the listed origin gets Access-Control-Allow-Origin" bash -c "
  curl -s -o /dev/null -D $tmp/co -H 'Origin: http://allowed.example' $A/health && grep -qi '^access-control-allow-origin: http://allowed.example' $tmp/co"
check "a request from another origin: 403, no Allow-Origin" test "$(code "$A/v1/models" "${auth[@]}" -H 'Origin: http://evil.example')" = 403
check "...none for it" bash -c "! grep -qi '^access-control-allow-origin' $tmp/hdr"
check "a preflight from another origin gets no Allow-Origin" bash -c "
  curl -s -o /dev/null -D $tmp/pf2 -X OPTIONS $A/v1/models -H 'Origin: http://evil.example'; ! grep -qi '^access-control-allow-origin' $tmp/pf2"
check "the page's own origin (same host) is allowed" test "$(code "$B/v1/models" -H "Origin: http://127.0.0.1:$pb")" = 200

# ---- mesh errors ----
check "503 when no worker serves the topic" test "$(code "$C/v1/chat/completions" -d "$chat")" = 503
check "...code no_workers" json_is '.error.code == "no_workers"'
check "404 for a model no worker serves" test "$(code "$A/v1/chat/completions" "${auth[@]}" -d '{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}')" = 404
check "...code model_not_found, param model" json_is '.error.code == "model_not_found" and .error.param == "model"'
freeze
got="$(code "$B/v1/chat/completions" -d "$chat")"
thaw
check "504 when the ask outlives serve's --timeout (llama-servers stopped)" test "$got" = 504
check "...code timeout" json_is '.error.code == "timeout"'

# A reader that never reads: its stream stalls in its socket, other requests go on; when it
# hangs up, its ask ends.
exec 3<>"/dev/tcp/127.0.0.1/$pb"
body='{"messages":[{"role":"user","content":"Count"}],"max_tokens":30000,"stream":true}'
printf 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "${#body}" "$body" >&3
sleep 0.5
check "a second client is answered while one does not read" test "$(code "$A/v1/chat/completions" "${auth[@]}" -d "$chat" -m 30)" = 200
exec 3>&-
check "two requests on one keep-alive connection" bash -c "
  curl -s -o /dev/null -o /dev/null -w '%{num_connects}\n' $A/health $A/health | tr '\n' ' ' | grep -q '^1 0 $'"

# A client that leaves mid-stream: the worker cancels the generation.
admitted() { cat "$tmp/w1.log" "$tmp/w2.log" | grep -c 'admitted'; }
count() { cat "$tmp/w1.log" "$tmp/w2.log" | grep -c "$1"; }
gone() { [ "$(count 'cancelled by the client')" -gt "$before" ]; }
whole() { [ "$(count 'tokens, ttft')" -gt "$done_before" ]; }
# The llama-servers are stopped while the client leaves, so the answer cannot end first; tried
# again (up to 5 times) when it was whole before they stopped.
for attempt in 1 2 3 4 5; do
  before="$(count 'cancelled by the client')"; done_before="$(count 'tokens, ttft')"
  curl -sN "$A/v1/chat/completions" "${auth[@]}" -d '{"messages":[{"role":"user","content":"Count slowly"}],"max_tokens":30000,"stream":true}' >"$tmp/gone" &
  cpid=$!
  n=0; until [ "$(grep -c '"content"' "$tmp/gone" 2>/dev/null)" -ge 3 ] || [ $n -ge 500 ]; do sleep 0.01; n=$((n + 1)); done
  freeze
  kill "$cpid"; wait "$cpid" 2>/dev/null
  sleep 0.5
  thaw
  n=0; until gone || whole || [ $n -ge 100 ]; do sleep 0.1; n=$((n + 1)); done
  gone && break
done
check "a client gone mid-stream: its ask is cancelled on the worker" gone

# 429: four asks from four other clients hold every slot and queue place; serve's ask is turned away.
# An occupying answer can still end (the tiny model fills its 2,048-token context in about a
# second) between its admission and the freeze: then the round is tried again (up to 3 times).
for attempt in 1 2 3; do
  a0="$(admitted)"
  occ=()
  for i in 1 2 3 4; do
    "$cli" ask --bootstrap "$boot" --raw --max-tokens 30000 --timeout 120 "Fill the slot $i" >/dev/null 2>&1 &
    occ+=($!); pids+=($!)
  done
  n=0; until [ "$(admitted)" -ge $((a0 + 4)) ] || [ $n -ge 200 ]; do sleep 0.05; n=$((n + 1)); done
  freeze
  got="$(code "$B/v1/chat/completions" -d "$chat")"
  thaw
  for p in "${occ[@]}"; do kill -INT "$p" 2>/dev/null; done
  for p in "${occ[@]}"; do wait "$p" 2>/dev/null; done
  [ "$got" = 429 ] && break
  echo "round $attempt: got $got, not 429: $(head -c 300 "$tmp/body")"
done
check "429 when every slot and queue place is taken" test "$got" = 429
check "...with Retry-After in whole seconds" bash -c "[[ \"\$(grep -i '^retry-after:' $tmp/hdr | tr -d '\r' | cut -d' ' -f2)\" =~ ^[1-9][0-9]*$ ]]"
check "...code busy, type rate_limit_error" json_is '.error.code == "busy" and .error.type == "rate_limit_error"'

# ---- /metrics: serve's own counters move by exactly what was asked ----
prom="$(dirname "${BASH_SOURCE[0]}")/../integration/prom_json.py"
scrape() { curl -sf "${auth[@]}" "$A/metrics" >"$tmp/$1.txt" && /usr/bin/python3 "$prom" "$tmp/$1.txt" >"$tmp/$1.json"; }
delta() { jq -n --slurpfile a "$tmp/m0.json" --slurpfile b "$tmp/m1.json" --arg k "$1" '($b[0][$k] // 0) - ($a[0][$k] // 0)'; }
check "/metrics needs the key" test "$(code "$A/metrics")" = 401
check "/metrics parses (prometheus_client)" scrape m0
curl -s -o /dev/null "${auth[@]}" "$A/v1/chat/completions" -d "$chat"
curl -sN -o /dev/null "${auth[@]}" "$A/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"stream":true}'
curl -s -o /dev/null "${auth[@]}" "$A/v1/chat/completions" -d '{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}'
check "/metrics parses after three asks" scrape m1
check "...chat completions answered 200: +2" test "$(delta 'qmesh_serve_requests_total{route="chat_completions",status="200"}')" = 2
check "...answered 404: +1" test "$(delta 'qmesh_serve_requests_total{route="chat_completions",status="404"}')" = 1
errors_delta() { jq -n --slurpfile a "$tmp/m0.json" --slurpfile b "$tmp/m1.json" \
  '[$b[0] | to_entries[] | select(.key | startswith("qmesh_serve_mesh_errors_total")) | .value - ($a[0][.key] // 0)] | add'; }
check "...mesh errors of kind unknown_model: +1" test "$(delta 'qmesh_serve_mesh_errors_total{kind="unknown_model"}')" = 1
check "...and of no other kind" test "$(errors_delta)" = 1
check "...time to first token observed twice" test "$(delta qmesh_serve_time_to_first_token_seconds_count)" = 2
check "...no ask in flight now" test "$(jq '.qmesh_serve_active_asks' "$tmp/m1.json")" = 0
check "...the /metrics scrape itself is counted" test "$(delta 'qmesh_serve_requests_total{route="metrics",status="200"}')" = 1
check "promtool check metrics finds nothing to complain about" \
  bash -c "promtool check metrics <'$tmp/m1.txt' >'$tmp/promtool.out' 2>&1 && ! grep -q . '$tmp/promtool.out' || { cat '$tmp/promtool.out'; false; }"

# ---- refusals at start ----
out="$("$cli" serve --listen 0.0.0.0:$((base + 9)) --bootstrap "$boot" 2>&1)"; rc=$?
check "a non-loopback --listen without a key is refused (exit 2, one line)" test "$rc" -eq 2 -a "$(wc -l <<<"$out")" -eq 1
check "...naming --insecure-listen" grep -q -- '--insecure-listen' <<<"$out"
printf 'short\n' >"$tmp/short"
out="$("$cli" serve --listen "127.0.0.1:$((base + 9))" --api-key-file "$tmp/short" --bootstrap "$boot" 2>&1)"; rc=$?
check "a key file with a short key is refused (exit 2)" test "$rc" -eq 2
out="$("$cli" serve --listen "127.0.0.1:$pa" --bootstrap "$boot" 2>&1)"; rc=$?
check "a port in use: exit 1 naming it" test "$rc" -eq 1 -a -n "$(grep "127.0.0.1:$pa" <<<"$out")"
out="$("$cli" serve --listen nonsense --bootstrap "$boot" 2>&1)"; rc=$?
check "a malformed --listen: exit 2" test "$rc" -eq 2
check "serve A is still serving" test "$(code "$A/health")" = 200
finish
