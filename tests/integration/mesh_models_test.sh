#!/usr/bin/env bash
# Asks routed by model on loopback, with the real binaries: two workers serve two different files
# that carry the same name (synthesized with two seeds), so the mesh holds two models, told apart
# by content root. `qmesh-cli models` lists both; an ask naming a root goes to the worker that has
# it, every time; a size class and the shared name reach either; a model nobody serves fails
# with "no workers serve MODEL" and exit 3.
#   usage: mesh_models_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
port=$((47500 + RANDOM % 400))
boot="127.0.0.1:$port"

"$cli" model synth --shape tiny --seed 8 --out "$tmp/other.gguf" >/dev/null 2>&1
check "a second tiny model is synthesized" test -s "$tmp/other.gguf"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
m=("$model" "$tmp/other.gguf")
for i in 0 1; do
  "$worker" --model "${m[$i]}" --bootstrap "$boot" --identity "$tmp/w$i.key" --status-interval 2 \
    >"$tmp/w$i.log" 2>&1 &
  pids+=($!)
done
for i in 0 1; do check "worker $i joined the network" wait_line "$tmp/w$i.log" "joined the network as" 60; done
id=("$(grep -o 'joined the network as [0-9a-f]*' "$tmp/w0.log" | awk '{print $5}')"
    "$(grep -o 'joined the network as [0-9a-f]*' "$tmp/w1.log" | awk '{print $5}')")

listed() { "$cli" models --bootstrap "$boot" --json >"$tmp/models.json" 2>"$tmp/models.err" &&
  [ "$(jq '[.models[] | select(.loaded == 1)] | length' "$tmp/models.json")" -eq 2 ]; }
n=0; until listed || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "models --json lists two models (one root each), both loaded on one worker" listed
check "both carry the same name, the size class and a 64-digit root" jq -e >/dev/null \
  '[.models[] | select(.name == "qmesh-synth-tiny" and .size_class == "1B" and (.root | length) == 64 and .workers == 1)] | length == 2' "$tmp/models.json"
"$cli" workers --bootstrap "$boot" --json >"$tmp/workers.json"
root=()
for i in 0 1; do root[$i]="$(jq -r --arg id "${id[$i]}" '.workers[] | select(.id == $id) | .models[0].root' "$tmp/workers.json")"; done
check "each worker's record names its own root" test "${#root[0]}" -eq 64 -a "${#root[1]}" -eq 64 -a "${root[0]}" != "${root[1]}"
out="$("$cli" models --bootstrap "$boot")"
check "models prints a table" grep -q '^MODEL .*ROOT .*WORKERS' <<<"$out"

# An ask naming a root (a 12-digit prefix, or in capitals) goes to the worker that has it, every time.
for i in 0 1; do
  right=0
  for k in 1 2 3 4; do
    q="${root[$i]:0:12}"; [ "$k" -eq 2 ] && q="${q^^}"
    "$cli" ask --bootstrap "$boot" --model "$q" --max-tokens 4 --json "Hello" >"$tmp/a.json" 2>"$tmp/a.err" &&
      [ "$(jq -r .worker "$tmp/a.json")" = "${id[$i]}" ] && right=$((right + 1))
  done
  check "4 of 4 asks for root ${root[$i]:0:8} went to worker $i" test "$right" -eq 4
done
"$cli" ask --bootstrap "$boot" --model 1B --max-tokens 4 --json "Hello" >"$tmp/a.json" 2>"$tmp/a.err"; rc=$?
check "a size class (1B) is served" test "$rc" -eq 0 -a "$(jq -r .model "$tmp/a.json")" = qmesh-synth-tiny
"$cli" ask --bootstrap "$boot" --model qmesh-synth-tiny --max-tokens 4 "Hello" >/dev/null 2>"$tmp/a.err"; rc=$?
check "the shared name is served" test "$rc" -eq 0
"$cli" ask --bootstrap "$boot" --model llama-70b --max-tokens 4 "Hello" >/dev/null 2>"$tmp/a.err"; rc=$?
check "a model nobody serves: exit 3" test "$rc" -eq 3
check "... and 'no workers serve llama-70b'" grep -q "no workers serve llama-70b" "$tmp/a.err"
"$cli" ask --bootstrap "$boot" --model 70B --max-tokens 4 "Hello" >/dev/null 2>"$tmp/a.err"; rc=$?
check "a size class nobody serves: exit 3" test "$rc" -eq 3

# model get resolves what it is given through the workers' records: the shared name and the size
# class name two roots here (refused, listing them); a root prefix names one, fetched from the
# worker that serves it (workers share their models by default) into a folder made for it.
err="$("$cli" model get qmesh-synth-tiny --bootstrap "$boot" --out "$tmp/get" 2>&1 >/dev/null)"; rc=$?
check "model get by a name two roots carry is refused" test "$rc" -ne 0
check "... naming both roots" bash -c "grep -q '${root[0]:0:12}' <<<'$err' && grep -q '${root[1]:0:12}' <<<'$err'"
"$cli" model get "${root[1]:0:12}" --bootstrap "$boot" --out "$tmp/get/new" --json >"$tmp/get.json" 2>"$tmp/get.err"; rc=$?
check "model get by a root prefix exits 0 into a new folder" test "$rc" -eq 0
check "... byte-identical to the file that worker serves" cmp -s "$tmp/get/new/qmesh-synth-tiny.gguf" "$tmp/other.gguf"
finish
