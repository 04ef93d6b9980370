#!/usr/bin/env bash
# Issue 13's ask parameters end to end with the real binaries on loopback: a bootstrap node, two
# qmesh-workers with a real llama-server each. `qmesh-cli ask --stop` ends the answer where the
# stop string first appears (raw and chat), with stop reason "word"; --top-p and the stop strings
# reach llama-server (its /slots shows the last task's top_p); the prompt's token count comes
# back (the same for a prompt llama-server has cached); an unknown model is kind unknown_model, a
# topic without workers no_workers; a worker killed mid-answer is resumed on the other without the
# stop string ever appearing; with every worker dead (records still in the DHT) workers_failed.
#   usage: mesh_params_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
export LC_ALL=C   # byte offsets in the answers below
port=$((48700 + RANDOM % 200))
boot="127.0.0.1:$port"

"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
wpids=()
for i in 1 2; do
  "$worker" --model "$model" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval 2 \
    --max-tokens 2000 --log-level debug >"$tmp/w$i.log" 2>&1 &
  wpids+=($!); pids+=($!)
done
for i in 1 2; do check "worker $i joined the network" wait_line "$tmp/w$i.log" "joined the network as" 60; done
ready() { "$cli" workers --bootstrap "$boot" --json 2>/dev/null | jq -e '[.workers[] | select(.available)] | length == 2' >/dev/null; }
n=0; until ready || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "both workers are listed available" ready

ask() { "$cli" ask --bootstrap "$boot" "$@"; }
jqf() { jq -e "$@" >/dev/null; }
# A stop string cut from text: 4 printable ASCII bytes at offset >= $2 whose first occurrence is
# there. Prints "OFFSET STRING".
pick_stop() {
  local t="$1" k s pre
  for ((k = $2; k + 4 <= ${#t}; k++)); do
    s="${t:k:4}"
    [[ "$s" =~ ^[A-Za-z0-9.,\;:!?\'-]{4}$ ]] || continue
    pre="${t%%"$s"*}"
    [ "${#pre}" -eq "$k" ] && { echo "$k $s"; return 0; }
  done
  return 1
}

# Raw completion: the greedy answer, then the same ask stopped inside it.
ask --raw --temperature 0 --max-tokens 40 --json "Once upon a time" >"$tmp/ref.json" 2>"$tmp/ref.err"; rc=$?
check "the reference ask exits 0" test "$rc" -eq 0
check "...reports its prompt tokens (> 0), the model and stop reason limit" jqf \
  '.prompt_tokens > 0 and .model == "qmesh-synth-tiny" and .stop_reason == "limit" and .tokens == 40' "$tmp/ref.json"
ref="$(jq -j .text "$tmp/ref.json")"
if read -r k stop < <(pick_stop "$ref" 6); then
  echo "raw: stop string '$stop' at byte $k of a ${#ref}-byte answer"
  ask --raw --temperature 0 --max-tokens 40 --top-p 0.25 --stop "$stop" --stop "<never-there>" --json \
    "Once upon a time" >"$tmp/stop.json" 2>"$tmp/stop.err"; rc=$?
  check "ask --stop exits 0" test "$rc" -eq 0
  check "...with stop reason word" test "$(jq -r .stop_reason "$tmp/stop.json")" = word
  check "...the answer ends right before the stop string" test "$(jq -j .text "$tmp/stop.json")" = "${ref:0:k}"
  check "...the same prompt tokens as the first ask (llama-server cached the prompt)" \
    test "$(jq .prompt_tokens "$tmp/stop.json")" = "$(jq .prompt_tokens "$tmp/ref.json")"
  # The parameters reached llama-server: its /slots shows the last task's.
  served="$(jq -r .worker "$tmp/stop.json")"
  for i in 1 2; do grep -q "joined the network as $served" "$tmp/w$i.log" && w=$i; done
  lsport="$(grep -o 'started llama-server pid [0-9]* on 127.0.0.1:[0-9]*' "$tmp/w${w:-1}.log" | tail -n 1 | sed 's/.*://')"
  curl -s "http://127.0.0.1:$lsport/slots" >"$tmp/slots.json"
  # (/slots does not show stop strings: the answer above shows that they arrived.)
  check "llama-server got top_p 0.25" jqf 'any(.[]; .params.top_p == 0.25)' "$tmp/slots.json"
else
  bad "no stop string could be cut from the raw answer: $ref"
fi

# Chat (the model's template): the same.
ask --temperature 0 --max-tokens 30 --json "Hello there" >"$tmp/cref.json" 2>"$tmp/cref.err"; rc=$?
check "the chat reference ask exits 0 with prompt tokens" jqf '.prompt_tokens > 0 and .tokens > 0' "$tmp/cref.json"
cref="$(jq -j .text "$tmp/cref.json")"
if read -r k stop < <(pick_stop "$cref" 4); then
  echo "chat: stop string '$stop' at byte $k of a ${#cref}-byte answer"
  ask --temperature 0 --max-tokens 30 --stop "$stop" --verbose "Hello there" >"$tmp/cstop.out" 2>"$tmp/cstop.err"; rc=$?
  check "chat ask --stop exits 0" test "$rc" -eq 0
  check "...prints prompt tokens and stop word on stderr" grep -q "[1-9][0-9]* prompt tokens, .*stop word" "$tmp/cstop.err"
  check "...the answer ends right before the stop string" test "$(cat "$tmp/cstop.out")" = "${cref:0:k}"
else
  bad "no stop string could be cut from the chat answer: $cref"
fi

# Bad values: one line, exit 2, before any network.
for bad_args in "--top-p 1.5" "--top-p -0.1" "--stop ''" "--stop a --stop b --stop c --stop d --stop e" \
                "--stop $(printf 'x%.0s' {1..257})"; do
  out="$(eval "\"$cli\" ask --bootstrap 127.0.0.1:1 $bad_args hi" 2>&1)"; rc=$?
  check "ask ${bad_args:0:30} exits 2 with one line" test "$rc" -eq 2 -a "$(wc -l <<<"$out")" -eq 1
done

# Error kinds.
out="$(ask --model no-such-model --json "hi" 2>/dev/null)"; rc=$?
check "an unknown model exits 3, kind unknown_model" test "$rc" -eq 3 -a "$(jq -r .error.kind <<<"$out")" = unknown_model
out="$(ask --topic nobody-here --json "hi" 2>/dev/null)"; rc=$?
check "a topic without workers exits 3, kind no_workers" test "$rc" -eq 3 -a "$(jq -r .error.kind <<<"$out")" = no_workers

# Failover with a stop string: a long greedy answer, a stop string in its second half; the serving worker
# is killed mid-answer and the other continues from the text so far. The stop string never
# appears in the answer (llama-server holds back what may begin one, so the cut cannot split one).
ask --raw --temperature 0 --max-tokens 1500 --json "In the beginning" >"$tmp/long.json" 2>"$tmp/long.err"
long="$(jq -j .text "$tmp/long.json")"
serving() { local i; for i in 1 2; do
  [ "$(grep -c 'admitted' "$tmp/w$i.log")" -gt "${base[$i]}" ] && { echo "$i"; return 0; }
done; return 1; }
declare -a base
if read -r k stop < <(pick_stop "$long" $((${#long} / 2))); then
  echo "failover: stop string '$stop' at byte $k of a ${#long}-byte answer"
  for i in 1 2; do base[$i]="$(grep -c 'admitted' "$tmp/w$i.log")"; done
  ask --raw --temperature 0 --max-tokens 1500 --stop "$stop" --verbose "In the beginning" >"$tmp/fo.out" 2>"$tmp/fo.err" &
  apid=$!
  n=0; until { s="$(serving)" && [ -s "$tmp/fo.out" ]; } || [ $n -ge 400 ]; do sleep 0.02; n=$((n + 1)); done
  if [ -n "${s:-}" ] && kill -0 "$apid" 2>/dev/null; then
    kill -9 "${wpids[$((s - 1))]}"
    wait "$apid"; rc=$?
    cat "$tmp/fo.err"
    check "ask --stop with its worker killed mid-answer exits 0" test "$rc" -eq 0
    check "...resumed on the other worker" grep -q 'resumed on another worker' "$tmp/fo.err"
    fo="$(cat "$tmp/fo.out")"
    check "...and the stop string is not in the answer" test "${fo/"$stop"/}" = "$fo"
    grep -q 'stop word' "$tmp/fo.err" && check "...which ends right before it" test "$fo" = "${long:0:k}"
  else
    bad "the ask ended before its worker could be killed (or no worker served it)"
    wait "$apid"
  fi
  # The other worker dies too (kill -9: its record stays in the DHT for a while).
  for p in "${wpids[@]}"; do kill -9 "$p" 2>/dev/null; done
  out="$(ask --max-tokens 8 --json "Anyone?" 2>/dev/null)"; rc=$?
  check "with every worker dead, ask exits 6, kind workers_failed" \
    test "$rc" -eq 6 -a "$(jq -r .error.kind <<<"$out")" = workers_failed
else
  bad "no stop string could be cut from the long answer"
fi
finish
