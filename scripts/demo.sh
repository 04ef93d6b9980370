#!/usr/bin/env bash
# Sets QMesh up on a fresh Debian 12 machine and runs the main job: today, the local inference
# path (a supervised llama-server and the streaming engine) with a model synthesized here.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cli="$root/build/src/cli/qmesh-cli"
model="$root/models/tiny.gguf"
if [ ! -f "$model" ]; then
  "$cli" model synth --shape tiny --out "$model" --seed 42
fi
"$cli" model inspect "$model"
echo
echo "== qmesh-cli run --model models/tiny.gguf (random weights: the words are nonsense, the streaming is real)"
"$cli" run --model "$model" --max-tokens 48 --json "${@:-Tell me about peer-to-peer networks.}"
