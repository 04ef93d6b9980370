#!/usr/bin/env bash
# qmesh-worker with several models, as its user and the mesh's clients see it:
# 1. Bad input: the same file twice, a --models-dir that is missing or holds no model, a
#    --memory-budget that is not a size or smaller than the smallest model, a bad file named
#    explicitly: one line, non-zero exit. A bad file found in --models-dir is skipped.
# 2. One worker with two tiny models and a budget that holds one: asks alternate between them
#    (qmesh-cli ask --model), all complete, and the worker's log shows the loads and unloads.
# 3. Both loaded: kill -9 of model B's llama-server while asks for model A run: they all complete,
#    and B comes back (its own supervisor restarts it).
#   usage: multi_model_cli_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL TINY_MODEL_B
set -uo pipefail
worker="$1"; cli="$2"; model_a="$3"; model_b="$4"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"

# One error line (log lines aside), the exit code wanted, the text wanted in it.
refuses() {
  local want_rc="$1" want_text="$2"; shift 2
  "$worker" "$@" --identity "$tmp/bad.key" --bootstrap 127.0.0.1:9 >"$tmp/bad.out" 2>"$tmp/bad.err"
  local rc=$?
  if [ "$rc" -ne "$want_rc" ] || [ "$(grep -c '^qmesh-worker: ' "$tmp/bad.err")" -ne 1 ] ||
     ! grep '^qmesh-worker: ' "$tmp/bad.err" | grep -q -- "$want_text"; then
    echo "  exit $rc, stderr:"; cat "$tmp/bad.err"; return 1
  fi
}
mkdir -p "$tmp/empty" "$tmp/dir"
printf 'not a model' >"$tmp/dir/broken.gguf"
cp "$model_b" "$tmp/dir/"
check "the same file twice is refused" refuses 2 "is given twice" --model "$model_a" --model "$model_a"
check "the same file by another path is refused" refuses 2 "is given twice" --model "$model_a" --model "$(dirname "$model_a")/./$(basename "$model_a")"
check "a missing --models-dir is refused" refuses 2 "no such folder" --models-dir "$tmp/none"
check "an empty --models-dir is refused" refuses 2 "holds no .gguf file" --models-dir "$tmp/empty"
check "a --memory-budget that is no size is refused" refuses 2 "is not a size" --model "$model_a" --memory-budget junk
check "a --memory-budget smaller than the model is refused" refuses 1 "more than the memory budget" --model "$model_a" --memory-budget 8M
check "a bad file named explicitly is refused" refuses 1 "broken.gguf" --model "$model_a" --model "$tmp/dir/broken.gguf"
# With --gpu-layers the default budget is 80 % of the free GPU memory (nvidia-smi; here a
# stand-in printing what the real one prints for a GPU with 40 MiB free: too little for the model).
printf '#!/bin/sh\necho "81559, 40"\n' >"$tmp/nvidia-smi" && chmod +x "$tmp/nvidia-smi"
check "--gpu-layers: the default budget is the GPU's free memory" \
  env QMESH_NVIDIA_SMI="$tmp/nvidia-smi" bash -c "$(declare -f refuses); worker='$worker' tmp='$tmp' refuses 1 'more than the memory budget of 32 MiB' --model '$model_a' --gpu-layers 99"
mkdir -p "$tmp/broken-only" && printf 'not a model' >"$tmp/broken-only/broken.gguf"
check "--gpu-layers without a GPU found: a warning, the budget from RAM" \
  bash -c "QMESH_NVIDIA_SMI=/nonexistent '$worker' --models-dir '$tmp/broken-only' --gpu-layers 99 --bootstrap 127.0.0.1:9 --identity '$tmp/bad.key' 2>&1 | grep -q 'no GPU memory found'"

port=$((47700 + RANDOM % 90))
boot="127.0.0.1:$port"
"$cli" dht bootstrap --listen "$boot" >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5
listed() { [ "$("$cli" workers --bootstrap "$boot" --json 2>/dev/null | jq '[.workers[] | select(.available)] | length')" = "$1" ]; }

# 2. Budget for one (each tiny model is estimated at about 57 MiB); the models-dir's broken file
# is skipped with a warning.
"$worker" --model "$model_a" --models-dir "$tmp/dir" --memory-budget 80M --bootstrap "$boot" --identity "$tmp/w.key" \
  --status-interval 2 --log-level debug >"$tmp/w.log" 2>&1 &
wpid=$!
pids+=($wpid)
n=0; until listed 1 || [ $n -ge 60 ]; do sleep 1; n=$((n + 1)); done
check "the worker with two models is listed" listed 1
check "the broken file in --models-dir was skipped with a warning" grep -q "skipping .*broken.gguf" "$tmp/w.log"
check "model B did not fit at start" grep -q "model qmesh-synth-tiny-b (tiny-b) not loaded at start" "$tmp/w.log"
failed=0
for i in 1 2 3 4 5 6; do
  m=qmesh-synth-tiny; [ $((i % 2)) = 1 ] && m=qmesh-synth-tiny-b
  if ! "$cli" ask --bootstrap "$boot" --model "$m" --raw --max-tokens 8 --json "Hello $i" >"$tmp/alt$i.json" 2>"$tmp/alt$i.err"; then
    failed=$((failed + 1)); cat "$tmp/alt$i.err"
  fi
  [ "$(jq -r .model "$tmp/alt$i.json" 2>/dev/null)" = "$m" ] || { echo "  ask $i answered by $(jq -r .model "$tmp/alt$i.json" 2>/dev/null), not $m"; failed=$((failed + 1)); }
done
check "6 alternating asks (B, A, B, ...) all complete, each by its model" test "$failed" -eq 0
check "... and each reports the time its model took to load (load_ms)" \
  test "$(cat "$tmp"/alt?.json | jq -s '[.[] | select(.load_ms > 0)] | length')" -ge 5
check "... the worker loaded models on demand" test "$(grep -c 'loading model .* on demand' "$tmp/w.log")" -ge 6
check "... and unloaded the least recently used one each time" test "$(grep -c 'unloading model .* to make room' "$tmp/w.log")" -ge 6
check "... and the asks waited for the loads" test "$(grep -c 'waited [0-9]* ms for the model to load' "$tmp/w.log")" -ge 6
kill -TERM "$wpid"; wait "$wpid" 2>/dev/null

# 3. Room for both.
"$worker" --model "$model_a" --model "$model_b" --memory-budget 1G --bootstrap "$boot" --identity "$tmp/w2.key" \
  --status-interval 2 >"$tmp/w2.log" 2>&1 &
pids+=($!)
n=0; until listed 1 || [ $n -ge 60 ]; do sleep 1; n=$((n + 1)); done
pid_b="$(pgrep -f -- "llama-server --model $model_b" | head -1)"
check "model B's llama-server runs" test -n "$pid_b"
apids=()
for i in $(seq 1 8); do
  "$cli" ask --bootstrap "$boot" --model qmesh-synth-tiny --raw --max-tokens 64 "Story $i" >"$tmp/k$i.out" 2>"$tmp/k$i.err" &
  apids+=($!)
  [ "$i" = 2 ] && kill -9 "$pid_b"
done
failed=0
for i in "${!apids[@]}"; do wait "${apids[$i]}" || { failed=$((failed + 1)); cat "$tmp/k$((i + 1)).err"; }; done
check "8 asks for model A while model B's llama-server is killed -9 all complete" test "$failed" -eq 0
back() { local p; p="$(pgrep -f -- "llama-server --model $model_b" | head -1)"; [ -n "$p" ] && [ "$p" != "$pid_b" ]; }
n=0; until back || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "model B's llama-server came back (a new pid)" back
check "... and answers" "$cli" ask --bootstrap "$boot" --model qmesh-synth-tiny-b --raw --max-tokens 4 "Back?"
# An ask by a prefix of B's content root goes to B (the client and the worker match it alike).
root_b="$("$cli" model root --json "$model_b" | jq -r .root)"
by_root() { [ "$("$cli" ask --bootstrap "$boot" --model "${root_b:0:16}" --raw --max-tokens 4 --json "Root?" | jq -r .model)" = qmesh-synth-tiny-b ]; }
check "an ask by a prefix of model B's content root is answered by B" by_root
finish
