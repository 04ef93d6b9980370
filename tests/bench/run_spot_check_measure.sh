#!/usr/bin/env bash
# Spot-check measurement (docs/trust.md "Spot checks"): how honest llama-server settings differ at
# temperature 0. Finds llama-server ($QMESH_LLAMA_SERVER, else scripts/get-llama-server.sh) and
# synthesizes the models once into build/bench-models/ (tiny and small at f16 and q8_0; tinyllama
# q8_0 with TINYLLAMA=1, slow on small machines).
#   tests/bench/run_spot_check_measure.sh [spot_check_measure.py flags, e.g. --prompts 50 --tokens 64]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=bench_lib.sh
source "$root/tests/bench/bench_lib.sh"
build="$(dirname "$(dirname "$(dirname "$(bench_binary qmesh-cli)")")")"
cli="$build/src/cli/qmesh-cli"
llama="${QMESH_LLAMA_SERVER:-$("$root/scripts/get-llama-server.sh" | tail -n 1)}"
# Each model at f16, and its q8_0 quantization (same seed: the same weights, rounded) as a worker
# that cheats by serving a cheaper file.
models=(--model "tiny=$(bench_model "$cli" tiny f16)" --swap "tiny=$(bench_model "$cli" tiny q8_0)"
        --model "small=$(bench_model "$cli" small f16)" --swap "small=$(bench_model "$cli" small q8_0)")
if [ "${TINYLLAMA:-0}" = 1 ]; then models+=(--model "tinyllama=$(bench_model "$cli" tinyllama q8_0)"); fi
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
python3 "$root/tests/bench/spot_check_measure.py" --llama-server "$llama" "${models[@]}" --logdir "$logs" "$@"
