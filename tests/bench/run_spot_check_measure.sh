#!/usr/bin/env bash
# Spot-check measurement (docs/trust.md "Spot checks"): how honest llama-server settings differ at
# temperature 0. Finds llama-server ($QMESH_LLAMA_SERVER, else scripts/get-llama-server.sh) and
# synthesizes the models once into build/bench-models/ (MODELS below).
#   tests/bench/run_spot_check_measure.sh [spot_check_measure.py flags, e.g. --prompts 50 --tokens 64]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=bench_lib.sh
source "$root/tests/bench/bench_lib.sh"
build="$(dirname "$(dirname "$(dirname "$(bench_binary qmesh-cli)")")")"
cli="$build/src/cli/qmesh-cli"
llama="${QMESH_LLAMA_SERVER:-$("$root/scripts/get-llama-server.sh" | tail -n 1)}"
# MODELS (default "tiny small"): tiny and small at f16, each with its q8_0 quantization (same seed:
# the same weights, rounded) as a worker that cheats by serving a cheaper file; tinyllama at q8_0.
models=()
for shape in ${MODELS:-tiny small}; do
  case "$shape" in
    tiny|small) models+=(--model "$shape=$(bench_model "$cli" "$shape" f16)" --swap "$shape=$(bench_model "$cli" "$shape" q8_0)") ;;
    tinyllama) models+=(--model "tinyllama=$(bench_model "$cli" tinyllama q8_0)") ;;
    *) echo "run_spot_check_measure.sh: unknown shape $shape in MODELS (tiny, small, tinyllama)" >&2; exit 1 ;;
  esac
done
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
python3 "$root/tests/bench/spot_check_measure.py" --llama-server "$llama" "${models[@]}" --logdir "$logs" "$@"
