#!/usr/bin/env bash
# The whole user story on loopback with the real binaries: a bootstrap node, three qmesh-workers
# with a real llama-server each, `qmesh-cli workers` and `qmesh-cli ask`; workers killed one by
# one (the first mid-answer) while every ask still completes; with all gone, a clear error.
#   usage: mesh_cli_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"   # identities and config stay in the test's folder
port=$((47100 + RANDOM % 400))
boot="127.0.0.1:$port"
alive() { kill -0 "$1" 2>/dev/null; }

"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
# The long asks below must still be running when their worker or llama-server is killed. The
# synthesized model makes thousands of tokens a second and llama-server caps a slot's context at
# the model's training context (2048 for the tiny model), so the workers serve a copy of it
# synthesized with a long context, and the long asks may run to 6000 tokens.
"$cli" model synth --shape tiny --seed 7 --context 32768 --out "$tmp/long-context.gguf" >/dev/null ||
  { echo "FAIL: model synth --context 32768"; exit 1; }
model="$tmp/long-context.gguf"
wpids=()
for i in 1 2 3; do
  "$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval 2 \
    --max-tokens 16000 --ctx-size 16384 --log-level debug >"$tmp/w$i.log" 2>&1 &
  wpids+=($!); pids+=($!)
done
for i in 1 2 3; do
  check "worker $i joined the network" wait_line "$tmp/w$i.log" "joined the network as" 60
done
check "worker identity file is mode 0600" test "$(stat -c %a "$tmp/w1.key")" = 600

# workers --json lists the three, with their health, once their records are in.
listed() { "$cli" workers --bootstrap "$boot" --json >"$tmp/workers.json" 2>"$tmp/workers.err" &&
  [ "$(jq '[.workers[] | select(.available)] | length' "$tmp/workers.json")" -eq 3 ]; }
n=0; until listed || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "workers --json lists three available workers" listed
check "each worker's record has its health" jq -e >/dev/null '[.workers[] | select(.slots_total >= 1 and .queue_capacity == 10
  and .model == "qmesh-synth-tiny" and (.model_hash | length) == 64 and .architecture == "llama"
  and (.software | startswith("qmesh-worker ")) and .cpu >= 0 and .memory > 0 and .expires_in_s > 0)] | length == 3' "$tmp/workers.json"
ids="$(jq -r '.workers[].id' "$tmp/workers.json" | sort)"
check "the listed ids are the workers' keys" test "$ids" = "$(for i in 1 2 3; do grep -o 'joined the network as [0-9a-f]*' "$tmp/w$i.log" | awk '{print $5}'; done | sort)"
out="$("$cli" workers --bootstrap "$boot")"
check "workers prints a table" grep -q '^WORKER .*MODEL .*SLOTS' <<<"$out"

# ask streams an answer (chat template by default, --raw plain completion).
"$cli" ask --bootstrap "$boot" --max-tokens 16 --json "Hello there" >"$tmp/ask.json" 2>"$tmp/ask.err"; rc=$?
check "ask exits 0" test "$rc" -eq 0
check "ask --json has text, tokens and the worker" jq -e >/dev/null '(.text | length) > 0 and .tokens == 16 and (.worker | length) == 64 and .ttft_ms > 0 and .worker_ttft_ms > 0 and .worker_ttft_ms < .ttft_ms' "$tmp/ask.json"
# The worker's queue tier comes back in DONE: a worker with no standing source gives everyone Bronze.
check "ask --json reports the tier the worker gave it (bronze)" jq -e >/dev/null '.tier == "bronze"' "$tmp/ask.json"
out="$("$cli" ask --bootstrap "$boot" --max-tokens 8 --raw --verbose - <<<"Once upon a time" 2>"$tmp/ask.err")"; rc=$?
check "ask --raw with the prompt on stdin exits 0 with text" test "$rc" -eq 0 -a -n "$out"
check "ask --verbose prints stats on stderr" grep -q 'tokens, ttft' "$tmp/ask.err"
check "the worker logged the ask (who, tokens, TTFT, tokens/s)" \
  bash -c "grep -h 'ask from [0-9a-f]*: [0-9]* tokens, ttft .* tokens/s' $tmp/w1.log $tmp/w2.log $tmp/w3.log | grep -q ."

# keygen / id: a key file of mode 0600; id prints the same public key; keygen refuses to replace it.
pub="$("$cli" keygen --identity "$tmp/me.key" 2>/dev/null)"
check "keygen prints a public key and writes a 0600 file" test "${#pub}" -eq 64 -a "$(stat -c %a "$tmp/me.key")" = 600
check "id prints the same key" test "$("$cli" id --identity "$tmp/me.key")" = "$pub"
"$cli" keygen --identity "$tmp/me.key" >/dev/null 2>&1; rc=$?
check "keygen will not replace a key without --force" test "$rc" -ne 0 -a "$("$cli" id --identity "$tmp/me.key")" = "$pub"
out="$("$cli" id --identity "$tmp/none.key" 2>&1)"; rc=$?
check "id without a key says how to make one" test "$rc" -ne 0 -a -n "$(grep 'qmesh-cli keygen' <<<"$out")"

# The config file's bootstrap list stands in for --bootstrap.
mkdir -p "$QMESH_CONFIG_DIR" && printf '{"bootstrap": ["%s"]}\n' "$boot" >"$QMESH_CONFIG_DIR/config.json"
out="$("$cli" ask --max-tokens 4 --json "From the config file" 2>&1)"; rc=$?
check "ask with no --bootstrap uses config.json's list" test "$rc" -eq 0 -a -n "$(grep '"tokens":4' <<<"$out")"
rm -f "$QMESH_CONFIG_DIR/config.json"

# Bad asks: one clear line and their exit code.
out="$("$cli" ask --bootstrap "$boot" --model no-such-model "hi" 2>&1)"; rc=$?
check "an unknown model exits 3 with one line" test "$rc" -eq 3 -a "$(wc -l <<<"$out")" -eq 1 -a -n "$(grep 'no-such-model' <<<"$out")"
out="$("$cli" ask --bootstrap 127.0.0.1:1 "hi" 2>&1)"; rc=$?
check "an unreachable bootstrap exits 6 naming it" test "$rc" -eq 6 -a -n "$(grep '127.0.0.1:1' <<<"$out")"
out="$("$cli" ask --bootstrap nonsense "hi" 2>&1)"; rc=$?
check "a malformed --bootstrap exits 2" test "$rc" -eq 2
out="$("$cli" ask --bootstrap "$boot" --topic nobody-here "hi" 2>&1)"; rc=$?
check "a topic without workers exits 3" test "$rc" -eq 3 -a -n "$(grep 'no worker announces' <<<"$out")"

# Which worker serves the ask now running (its log says "admitted").
serving() { local i; for i in 1 2 3; do
  [ "$(grep -c 'admitted' "$tmp/w$i.log")" -gt "${base[$i]}" ] && alive "${wpids[$((i - 1))]}" && { echo "$i"; return 0; }
done; return 1; }
mark() { local i; for i in 1 2 3; do base[$i]="$(grep -c 'admitted' "$tmp/w$i.log")"; done; }
declare -a base

# A client that goes away (Ctrl-C) cancels its generation on the worker.
mark
"$cli" ask --bootstrap "$boot" --raw --max-tokens 4000 "Count slowly" >"$tmp/int.out" 2>"$tmp/int.err" &
apid=$!
n=0; until { s="$(serving)" && [ -s "$tmp/int.out" ]; } || [ $n -ge 200 ]; do sleep 0.05; n=$((n + 1)); done
kill -INT "$apid"; wait "$apid"; rc=$?
check "ask interrupted by SIGINT exits 130" test "$rc" -eq 130
check "...and the worker cancelled the generation" wait_line "$tmp/w${s:-1}.log" "cancelled by the client" 10

# Fault: kill -9 the serving worker's llama-server mid-answer. The worker reports the loss at once,
# the client continues on another worker; the worker's supervisor brings llama-server back.
mark
"$cli" ask --bootstrap "$boot" --raw --max-tokens 6000 --verbose "In the beginning" >"$tmp/fault.out" 2>"$tmp/fault.err" &
apid=$!
n=0; until { s="$(serving)" && [ -s "$tmp/fault.out" ]; } || [ $n -ge 200 ]; do sleep 0.05; n=$((n + 1)); done
child="$(pgrep -P "${wpids[$((${s:-1} - 1))]}" 2>/dev/null | head -n 1)"
if [ -n "${s:-}" ] && [ -n "$child" ]; then
  t0="$(date +%s%N)"
  kill -9 "$child"
  wait "$apid"; rc=$?
  echo "llama-server killed: the ask ended $(( ($(date +%s%N) - t0) / 1000000 )) ms later"
  check "ask with llama-server killed mid-answer exits 0" test "$rc" -eq 0
  check "...resumed on another worker" grep -q 'resumed on another worker' "$tmp/fault.err"
  cat "$tmp/fault.err"
  check "the worker restarted its llama-server" wait_line "$tmp/w$s.log" "ready (pid [0-9]*, restarts 1)" 30
  n=0; until listed || [ $n -ge 20 ]; do sleep 1; n=$((n + 1)); done
  check "...and announces itself available again" listed
else
  bad "no worker streamed the ask (fault test)"
  wait "$apid"
fi

# Kill the serving worker mid-answer (after tokens arrived): the client goes on with another,
# from the text so far, and the caller sees one stream.
mark
"$cli" ask --bootstrap "$boot" --raw --max-tokens 6000 --verbose "The history of" >"$tmp/mid.out" 2>"$tmp/mid.err" &
apid=$!
n=0; until { s="$(serving)" && [ -s "$tmp/mid.out" ]; } || [ $n -ge 200 ]; do sleep 0.05; n=$((n + 1)); done
if [ -n "${s:-}" ] && [ -s "$tmp/mid.out" ]; then
  kill -9 "${wpids[$((s - 1))]}"
  killed=("$s")
  wait "$apid"; rc=$?
  check "ask with its worker killed mid-answer exits 0" test "$rc" -eq 0
  check "the answer was resumed on another worker" grep -q 'resumed on another worker' "$tmp/mid.err"
  cat "$tmp/mid.err"
else
  bad "no worker streamed the long ask"
  wait "$apid"
fi

# Kill the workers one by one: asks complete while one lives (a dead worker's record outlives it).
remaining=()
for i in 1 2 3; do [ "$i" != "${killed[0]:-0}" ] && remaining+=("$i"); done
"$cli" ask --bootstrap "$boot" --max-tokens 8 --json "Still there?" >"$tmp/a2.json" 2>"$tmp/a2.err"; rc=$?
check "ask completes with one worker killed" test "$rc" -eq 0
kill -9 "${wpids[$((${remaining[0]} - 1))]}"
"$cli" ask --bootstrap "$boot" --max-tokens 8 --json "Anyone?" >"$tmp/a3.json" 2>"$tmp/a3.err"; rc=$?
check "ask completes with two workers killed" test "$rc" -eq 0
last="${remaining[1]}"
check "...on the last worker alive" test "$(jq -r .worker "$tmp/a3.json")" = "$(grep -o 'joined the network as [0-9a-f]*' "$tmp/w$last.log" | awk '{print $5}')"
# The last one stops cleanly (SIGTERM: it unannounces); then asks end in one clear error.
kill -TERM "${wpids[$((last - 1))]}"; wait "${wpids[$((last - 1))]}" 2>/dev/null
out="$("$cli" ask --bootstrap "$boot" --max-tokens 8 "Hello?" 2>&1 >/dev/null)"; rc=$?
check "with every worker gone, ask fails (exit $rc)" test "$rc" -ne 0
check "...with one line" test "$(wc -l <<<"$out")" -eq 1
echo "last error: $out"
finish
