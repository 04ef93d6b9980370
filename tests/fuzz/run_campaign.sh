#!/usr/bin/env bash
# A libFuzzer campaign over every fuzz target of a QMESH_FUZZ=ON (clang) build: each target runs
# RUNS executions from its seeds and its committed corpus (tests/fuzz/corpus/<target>), then the
# corpus it grew is minimized (-merge=1) back into tests/fuzz/corpus/<target>. Prints one line per
# target: executions, seconds, coverage (cov, ft), corpus size, crashes. Non-zero if any crashed.
#   usage: tests/fuzz/run_campaign.sh BUILD_DIR [RUNS] [TARGET...]
#   build: CXX=clang++-14 CC=clang-14 cmake -S . -B build-fuzz -DQMESH_FUZZ=ON -DQMESH_SANITIZE=ON
#          cmake --build build-fuzz --target <fuzz_* and *_fuzz_seed>   (then this script)
# JOBS (default 2) targets run at once; MAX_TIME (s, default none) bounds each run.
set -uo pipefail
build="$(cd "${1:?usage: $0 BUILD_DIR [RUNS] [TARGET...]}" && pwd)"; runs="${2:-2000000}"; shift 2 2>/dev/null || shift $#
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fuzz="$build/tests/fuzz"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$fuzz"/fuzz_*; do [ -x "$f" ] && targets+=("$(basename "$f" | sed 's/^fuzz_//')"); done
fi

# Seeds: the committed text seeds, or those the seed programs write.
seeds_of() {
  local t="$1" d="$out/seeds-$t"
  mkdir -p "$d"
  [ -d "$root/tests/fuzz/seeds/$t" ] && cp "$root/tests/fuzz/seeds/$t"/* "$d"/
  [ -x "$fuzz/${t}_fuzz_seed" ] && "$fuzz/${t}_fuzz_seed" "$d" >/dev/null 2>&1
  [ "$t" = gguf ] && "$fuzz/gguf_fuzz_seed" "$d/synth.gguf" >/dev/null 2>&1
  echo "$d"
}

one() {
  local t="$1" seeds corpus="$root/tests/fuzz/corpus/$1" work="$out/work-$1" log="$out/$1.log"
  seeds="$(seeds_of "$t")"
  mkdir -p "$corpus" "$work"
  local start; start=$(date +%s)
  local max_len=4096
  [ "$t" = gguf ] && max_len=65536  # real GGUF headers (a vocabulary) are tens of KiB
  (cd "$out" && "$fuzz/fuzz_$t" -runs="$runs" -max_total_time="${MAX_TIME:-0}" -print_final_stats=1 -max_len="$max_len" -rss_limit_mb=4096 \
     -artifact_prefix="$out/crash-$t-" "$work" "$corpus" "$seeds" >"$log" 2>&1)
  local rc=$? secs=$(( $(date +%s) - start ))
  # Minimize what grew into the committed corpus (the seeds themselves stay generated).
  local fresh="$out/min-$t"
  mkdir -p "$fresh"
  "$fuzz/fuzz_$t" -merge=1 -max_len="$max_len" "$fresh" "$corpus" "$work" >/dev/null 2>&1
  rm -rf "$corpus" && mv "$fresh" "$corpus"
  local execs cov ft crashes
  execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')"
  ft="$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')"
  crashes="$(ls "$out"/crash-"$t"-* 2>/dev/null | wc -l)"
  printf '%-16s execs %-9s %5ss  cov %-5s ft %-6s corpus %4s files %6s  crashes %s%s\n' "$t" "${execs:-?}" "$secs" \
    "${cov:-?}" "${ft:-?}" "$(ls "$corpus" | wc -l)" "$(du -sh "$corpus" | cut -f1)" "$crashes" \
    "$([ $rc -ne 0 ] && echo " (exit $rc: $(grep -m1 -E 'ERROR|SUMMARY' "$log"))")"
  [ "$crashes" -eq 0 ] && [ $rc -eq 0 ]
}

jobs_max="${JOBS:-2}"; failed=0
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || failed=1; done
  one "$t" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
exit $failed
