#!/usr/bin/env bash
# Runs sidecar_bench with the tinyllama shape (synthesized once into build/bench-models/).
#   tests/bench/run_sidecar_bench.sh [sidecar_bench flags, e.g. --prompts 10 --tokens 64]
set -euo pipefail
export QMESH_NO_LAN=1  # the worker runs without --bootstrap: no multicast on the LAN
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" >/dev/null
model="$root/build/bench-models/tinyllama-q8_0.gguf"
if [ ! -f "$model" ]; then
  mkdir -p "$(dirname "$model")"
  "$root/build/src/cli/qmesh-cli" model synth --shape tinyllama --type q8_0 --seed 1 --out "$model"
fi
exec "$root/build/tests/bench/sidecar_bench" --model "$model" --worker "$root/build/src/cli/qmesh-worker" "$@"
