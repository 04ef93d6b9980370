#!/usr/bin/env bash
# Same-run A/B of the benchmarks in docs/PERFORMANCE.md: two Release builds (say, the commit before a
# change and after it), each benchmark run alternately on both (A B B A ..., same parameters, same
# model files, same llama-server), then one table: benchmark | figure | base | new | new/base.
#   tests/bench/ab.sh BASE_BUILD NEW_BUILD [--quick]
# BASE_BUILD, NEW_BUILD: build directories (cmake -DCMAKE_BUILD_TYPE=Release, everything built).
# --quick: smaller sizes (about 20 min on the 2-core dev VM); the sizes used are printed.
# Environment: AB_ROUNDS=N (2; rounds of A B / B A per benchmark), AB_ONLY="dht session sim sidecar
# mesh" (a subset), AB_LOG_DIR=DIR (where each run's output is kept; a new /tmp dir by default).
# HyperDHT is not run (it compares against a third party, not the two builds). Loopback only.
# Exit status: 0 when every run worked, 1 when one failed (its cells read "fail"), 2 on bad usage.
# shellcheck disable=SC2317  # the bench_* functions are called by name ("bench_$b")
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
me="ab.sh"

die() { echo "$me: $*" >&2; exit 2; }
[ $# -ge 2 ] || die "usage: tests/bench/ab.sh BASE_BUILD NEW_BUILD [--quick]"
quick=0
for a in "${@:3}"; do
  case "$a" in
    --quick) quick=1 ;;
    *) die "unknown option $a (known: --quick)" ;;
  esac
done
[ -d "$1" ] || die "$1: no such build directory"
[ -d "$2" ] || die "$2: no such build directory"
builds=("$(cd "$1" && pwd)" "$(cd "$2" && pwd)")
sides=(base new)
rounds="${AB_ROUNDS:-2}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "AB_ROUNDS must be a positive number"
only="${AB_ONLY:-dht session sim sidecar mesh}"
for b in $only; do
  case "$b" in dht|session|sim|sidecar|mesh) ;; *) die "AB_ONLY: unknown benchmark $b (known: dht session sim sidecar mesh)" ;; esac
done
export QMESH_NO_LAN=1  # no multicast on the LAN from any worker

# ---- the two builds ----
# find_bin BUILD NAME: the program NAME in BUILD (its usual place, else wherever the build put it).
find_bin() {
  local p
  for p in "$1/tests/bench/$2" "$1/tests/sim/$2" "$1/src/cli/$2"; do
    [ -x "$p" ] && { echo "$p"; return; }
  done
  find "$1" -type f -name "$2" -perm -u+x 2>/dev/null | head -n 1
}
# describe BUILD: "<commit>[ (modified)] <source dir>" from the build's CMake cache.
describe() {
  local src
  src="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt" 2>/dev/null)"
  local type
  type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$1/CMakeCache.txt" 2>/dev/null)"
  if [ -n "$src" ] && git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    local dirty=""
    git -C "$src" diff --quiet HEAD -- 2>/dev/null || dirty=" (modified)"
    echo "$(git -C "$src" log -1 --format='%h %s' | cut -c1-70)$dirty; $src; ${type:-?}"
  else
    echo "${src:-unknown source}; ${type:-?}"
  fi
}
declare -A bin
needed=(dht_bench session_bench dht_sim sidecar_bench mesh_bench qmesh-cli qmesh-worker)
for s in 0 1; do
  grep -q '^CMAKE_BUILD_TYPE:[A-Z]*=Release$' "${builds[$s]}/CMakeCache.txt" 2>/dev/null ||
    echo "$me: warning: ${builds[$s]} is not a Release build" >&2
  for n in "${needed[@]}"; do
    p="$(find_bin "${builds[$s]}" "$n")"
    [ -n "$p" ] || die "${builds[$s]}: $n not built (cmake --build ${builds[$s]} -j2)"
    bin[$s,$n]="$p"
  done
done
# The flags used must exist on both sides (a renamed flag is handled here, not silently dropped).
need_flags() {  # PROGRAM FLAG...
  local s f help
  for s in 0 1; do
    help="$("${bin[$s,$1]}" --help 2>&1)"
    for f in "${@:2}"; do
      grep -q -- "$f" <<<"$help" || die "${bin[$s,$1]} has no $f (its command line changed: adapt ab.sh)"
    done
  done
}
need_flags dht_bench --nodes --lookups --extra
need_flags session_bench --runs --mb --lossy-mb --throughput-runs --sessions
need_flags dht_sim --nodes --lookups --churn --loss --seed --reachable-ephemeral --auto-promote
need_flags sidecar_bench --model --prompts --tokens --threads --worker
need_flags mesh_bench --asks --tokens --ttft-asks --clients --concurrent-asks --idle-seconds

logdir="${AB_LOG_DIR:-$(mktemp -d /tmp/qmesh-ab.XXXXXX)}"
mkdir -p "$logdir" || die "cannot create $logdir"
results="$logdir/results.tsv"  # bench, figure, side, round, value
: >"$results"
llama="$(QMESH_CACHE="${QMESH_CACHE:-$HOME/.cache/qmesh}" "$here/../../scripts/get-llama-server.sh" 2>/dev/null | tail -n 1)"
[ -x "$llama" ] || die "no llama-server (scripts/get-llama-server.sh failed)"
export QMESH_LLAMA_SERVER="$llama"

# Models: made once by NEW's qmesh-cli (in NEW_BUILD, where the run_*_bench.sh scripts and the
# tests put them) and used by both sides.
synth() {  # FILE SYNTH-ARGS...
  [ -s "$1" ] && return
  echo "$me: synthesizing $1" >&2
  mkdir -p "$(dirname "$1")"
  if ! "${bin[1,qmesh-cli]}" model synth "${@:2}" --out "$1.tmp.gguf" >"$logdir/synth.log" 2>&1; then
    rm -f "$1.tmp.gguf"
    die "qmesh-cli model synth ${*:2} failed (see $logdir/synth.log)"
  fi
  mv "$1.tmp.gguf" "$1"
}
tiny_model="${builds[1]}/test-models/tiny.gguf"
tinyllama_model="${builds[1]}/bench-models/tinyllama-q8_0.gguf"

# ---- sizes ----
# The tiny model (4.2 M parameters) makes llama-server so fast that its tokens/s are noise on a loaded
# machine; the tokens/s rows use the tinyllama shape (q8_0, 1.1 G parameters) as PERFORMANCE.md does.
# --quick gives llama-server one thread: two threads on two busy cores spin in their barriers and a
# 4-prompt run took over 5 minutes instead of one.
if [ "$quick" = 1 ]; then
  dht_sizes=(200 500); dht_args=(--lookups 30 --extra 200)
  session_args=(--runs 20 --mb 128 --lossy-mb 16 --throughput-runs 3 --sessions 200)
  sim_nodes=2000
  sidecar_rows=("tinyllama|--prompts 4 --tokens 32 --threads 1")
  mesh_args=(--asks 4 --tokens 32 --ttft-asks 10 --clients 6 --concurrent-asks 6 --idle-seconds 5)
  limit=900
else
  dht_sizes=(200 500); dht_args=(--lookups 30 --extra 200)
  session_args=(--runs 40 --mb 256 --lossy-mb 32 --throughput-runs 3 --sessions 200)
  sim_nodes=10000
  sidecar_rows=("tinyllama|--prompts 10 --tokens 32 --threads 2" "tiny|--prompts 20 --tokens 128 --threads 2")
  mesh_args=(--asks 10 --tokens 64 --ttft-asks 40 --clients 30 --concurrent-asks 60 --idle-seconds 10)
  limit=3600
fi
sim_rows=("plain|" "churn 0.3|--churn 0.3" "churn 0.3, loss 0.01|--churn 0.3 --loss 0.01"
          "churn 0.3, 10% reachable ephemeral, auto-promote|--churn 0.3 --reachable-ephemeral 0.1 --auto-promote")

# ---- running and recording ----
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$results"; }
failed=0
# run_one BENCH SIDE ROUND LOG CMD...: runs CMD under a time limit, output to LOG; on failure
# records the failure. Prints nothing; returns CMD's status. Adds the children's CPU seconds
# (user + system) to LOG as "ab.sh cpu: S".
run_one() {
  local bench="$1" side="$2" round="$3" log="$4"
  shift 4
  echo "# $(date -u +%FT%TZ) $side round $round; load $(cut -d' ' -f1-3 /proc/loadavg): $*" >"$log"
  (
    timeout --kill-after=30 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    # times: the shell's own line, then its children's "user system" (e.g. 0m1.234s 0m0.100s).
    # Not in a pipe: a forked "times" would report the fork's children (none).
    times >"$log.times"
    sed -n 2p "$log.times" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/);
      printf "ab.sh cpu: %.2f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' >>"$log"
    rm -f "$log.times"
    exit "$rc"
  )
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    failed=1
    rec "$bench" "(run failed: exit $rc, see $log)" "${sides[$side]}" "$round" fail
    echo "$me: $bench ${sides[$side]} round $round failed (exit $rc); log: $log" >&2
  fi
  return "$rc"
}
# order ROUND: "0 1" for odd rounds, "1 0" for even ones (A B B A A B ...).
order() { if [ $(($1 % 2)) = 1 ]; then echo "0 1"; else echo "1 0"; fi; }
# field LOG SED-EXPR: the first match of a sed -n 's/.../\1/p' expression in LOG.
field() { sed -n "$2" "$1" | head -n 1; }
# put BENCH FIGURE SIDE ROUND VALUE: records VALUE, or "n/a" when it is not a number (the bench's
# output changed: the cell shows it rather than leaving the figure out).
put() {
  if [[ "$5" =~ ^[-+]?[0-9]+(\.[0-9]+)?$ ]]; then rec "$1" "$2" "${sides[$3]}" "$4" "${5#+}"
  else rec "$1" "$2" "${sides[$3]}" "$4" n/a; fi
}

bench_dht() {
  local n r s log
  for n in "${dht_sizes[@]}"; do
    for r in $(seq 1 "$rounds"); do
      for s in $(order "$r"); do
        log="$logdir/dht-$n-${sides[$s]}-$r.log"
        run_one "dht_bench N=$n" "$s" "$r" "$log" "${bin[$s,dht_bench]}" --nodes "$n" "${dht_args[@]}" || continue
        local b="dht_bench N=$n"
        put "$b" "first record, median (ms)" "$s" "$r" "$(field "$log" 's/^  qmesh *: first record *\([0-9.]*\) ms.*/\1/p')"
        put "$b" "full lookup, median (ms)" "$s" "$r" "$(field "$log" 's/^  qmesh .*full lookup *\([0-9.]*\) ms.*/\1/p')"
        put "$b" "lookups that found the record" "$s" "$r" "$(field "$log" 's/^  qmesh .*found \([0-9]*\)\/.*/\1/p')"
        put "$b" "RSS per node (KB)" "$s" "$r" "$(field "$log" 's/^  qmesh .* RSS\/node *\([0-9.]*\) KB *marginal.*/\1/p')"
        put "$b" "marginal RSS per node (KB)" "$s" "$r" "$(field "$log" 's/^  qmesh .*marginal RSS\/node *\([0-9.]*\) KB.*/\1/p')"
        put "$b" "malloc'd per added node (KB)" "$s" "$r" "$(field "$log" "s/.*malloc'd bytes in use per added node \([0-9.]*\) KB.*/\1/p")"
        put "$b" "core's estimate per node (KB)" "$s" "$r" "$(field "$log" "s/.*core's own estimate: \([0-9.]*\) KB per node.*/\1/p")"
        put "$b" "routing table entries per node" "$s" "$r" "$(field "$log" 's/.*routing table [0-9.]* KB (\([0-9.]*\) entries).*/\1/p')"
        put "$b" "bootstrap of all nodes (ms)" "$s" "$r" "$(field "$log" 's/.*bootstrap of all nodes \([0-9.]*\) ms.*/\1/p')"
        put "$b" "process CPU, whole run (s)" "$s" "$r" "$(field "$log" 's/^ab.sh cpu: \([0-9.]*\)$/\1/p')"
      done
    done
  done
}

bench_session() {
  local r s log b="session_bench"
  for r in $(seq 1 "$rounds"); do
    for s in $(order "$r"); do
      log="$logdir/session-${sides[$s]}-$r.log"
      run_one "$b" "$s" "$r" "$log" "${bin[$s,session_bench]}" "${session_args[@]}" || continue
      put "$b" "connect -> first byte echoed, median (ms)" "$s" "$r" "$(field "$log" 's/.*first byte echoed \([0-9.]*\) ms median.*/\1/p')"
      put "$b" "handshake HELLO -> WELCOME, median (ms)" "$s" "$r" "$(field "$log" 's/.*HELLO -> WELCOME \([0-9.]*\) ms median.*/\1/p')"
      local label line
      for label in "direct path" "forwarder, 0% loss" "forwarder, lossy"; do
        case "$label" in
          "direct path") line="$(grep -m1 '^  throughput, direct path' "$log")" ;;
          "forwarder, 0% loss") line="$(grep -m1 '^  throughput, forwarder, 0% loss' "$log")" ;;
          *) line="$(grep '^  throughput, forwarder' "$log" | sed -n 2p)" ;;
        esac
        put "$b" "throughput, $label (MB/s)" "$s" "$r" "$(sed -n 's/.*: *\([0-9.]*\) MB\/s median.*/\1/p' <<<"$line")"
        put "$b" "  CPU per MB, $label (ms)" "$s" "$r" "$(sed -n 's/.*process CPU \([0-9.]*\) ms per MB.*/\1/p' <<<"$line")"
        if [ "$label" = "forwarder, lossy" ]; then
          put "$b" "  retransmitted, $label (%)" "$s" "$r" "$(sed -n 's/.*retransmitted \([0-9.]*\)% of.*/\1/p' <<<"$line")"
          put "$b" "  TLP per run, $label" "$s" "$r" "$(sed -n 's/.*lost, \([0-9.]*\) TLP.*/\1/p' <<<"$line")"
        fi
      done
      put "$b" "idle session: RSS per end (KB)" "$s" "$r" "$(field "$log" 's/.*: \([0-9.]*\) KB per end.*/\1/p')"
      put "$b" "idle session: malloc'd per session, both ends (KB)" "$s" "$r" "$(field "$log" "s/.*malloc'd +\([0-9.]*\) KB per session.*/\1/p")"
      put "$b" "SessionHost::memory_estimate() per session (KB)" "$s" "$r" "$(field "$log" 's/.*SessionHost::memory_estimate() \([0-9.]*\) KB per session.*/\1/p')"
    done
  done
}

bench_sim() {
  local row name args r s log
  for row in "${sim_rows[@]}"; do
    name="${row%%|*}"; args="${row#*|}"
    local b="dht_sim $sim_nodes nodes, $name"
    for r in $(seq 1 "$rounds"); do
      for s in $(order "$r"); do
        log="$logdir/sim-$(printf '%s' "$name" | tr -c 'a-z0-9' '_')-${sides[$s]}-$r.log"
        # shellcheck disable=SC2086  # $args: the row's flags, split on purpose
        run_one "$b" "$s" "$r" "$log" "${bin[$s,dht_sim]}" --nodes "$sim_nodes" --lookups 200 --seed 1 $args || continue
        put "$b" "lookup success (%)" "$s" "$r" "$(field "$log" 's/^lookup success: \([0-9.]*\)%.*/\1/p')"
        put "$b" "rounds, median" "$s" "$r" "$(field "$log" 's/^lookup rounds: median \([0-9]*\),.*/\1/p')"
        put "$b" "rounds, p99" "$s" "$r" "$(field "$log" 's/^lookup rounds: .*p99 \([0-9]*\),.*/\1/p')"
        put "$b" "messages per lookup" "$s" "$r" "$(field "$log" 's/^messages per lookup: \([0-9.]*\);.*/\1/p')"
        put "$b" "lookup time, median (virtual ms)" "$s" "$r" "$(field "$log" 's/.*lookup time median \([0-9.]*\) ms.*/\1/p')"
        put "$b" "datagrams sent" "$s" "$r" "$(field "$log" 's/^datagrams: \([0-9]*\) sent.*/\1/p')"
        put "$b" "memory per node, DhtNode estimate (bytes)" "$s" "$r" "$(field "$log" 's/^memory per node: \([0-9.]*\) bytes (DhtNode.*/\1/p')"
        put "$b" "memory per node, heap (bytes)" "$s" "$r" "$(field "$log" 's/^memory per node: \([0-9.]*\) bytes heap.*/\1/p')"
        if [[ "$args" == *promote* ]]; then
          put "$b" "promoted reachable ephemeral nodes" "$s" "$r" "$(field "$log" 's/.*: \([0-9]*\)\/[0-9]* reachable ephemeral nodes promoted.*/\1/p')"
        fi
        put "$b" "wall time (s)" "$s" "$r" "$(field "$log" 's/^wall time: \([0-9.]*\) s.*/\1/p')"
        put "$b" "process CPU (s)" "$s" "$r" "$(field "$log" 's/^ab.sh cpu: \([0-9.]*\)$/\1/p')"
      done
    done
  done
}

bench_sidecar() {
  local row kind m sargs r s log
  for row in "${sidecar_rows[@]}"; do
    kind="${row%%|*}"
    read -r -a sargs <<<"${row#*|}"
    m="$tiny_model"
    [ "$kind" = tinyllama ] && m="$tinyllama_model"
    local b="sidecar_bench $kind"
    for r in $(seq 1 "$rounds"); do
      for s in $(order "$r"); do
        log="$logdir/sidecar-$kind-${sides[$s]}-$r.log"
        run_one "$b" "$s" "$r" "$log" "${bin[$s,sidecar_bench]}" --model "$m" --worker "${bin[$s,qmesh-worker]}" "${sargs[@]}" || continue
        put "$b" "direct tokens/s (llama-server alone: control)" "$s" "$r" "$(field "$log" 's/^  direct to llama-server : *\([0-9.]*\) tokens.*/\1/p')"
        put "$b" "engine tokens/s" "$s" "$r" "$(field "$log" 's/^  through worker engine  : *\([0-9.]*\) tokens.*/\1/p')"
        put "$b" "tokens/s ratio engine/direct" "$s" "$r" "$(field "$log" 's/.*tokens\/s ratio engine\/direct: \([0-9.]*\).*/\1/p')"
        put "$b" "added TTFT (ms)" "$s" "$r" "$(field "$log" 's/.*added TTFT: \([-+0-9.]*\) ms.*/\1/p')"
        put "$b" "qmesh-worker RSS without llama-server (MiB)" "$s" "$r" "$(field "$log" 's/.*qmesh-worker RSS (llama-server not counted): \([0-9.]*\) MiB.*/\1/p')"
      done
    done
  done
}

bench_mesh() {
  local r s log m="$tinyllama_model" b="mesh_bench tinyllama"
  for r in $(seq 1 "$rounds"); do
    for s in $(order "$r"); do
      log="$logdir/mesh-${sides[$s]}-$r.log"
      # run_mesh_bench.sh of this tree starts the bootstrap node and 3 workers of the side's build.
      run_one "$b" "$s" "$r" "$log" env QMESH_BUILD_DIR="${builds[$s]}" MODEL="$m" \
        "$here/run_mesh_bench.sh" "${mesh_args[@]}" || continue
      put "$b" "worker idle CPU, highest of 3 (%)" "$s" "$r" "$(sed -n 's/^worker [0-9]* idle: CPU \([0-9.]*\)%.*/\1/p' "$log" | sort -g | tail -n 1)"
      put "$b" "worker RSS without llama-server, highest of 3 (MB)" "$s" "$r" "$(sed -n 's/^worker [0-9]* idle: .* RSS \([0-9.]*\) MB.*/\1/p' "$log" | sort -g | tail -n 1)"
      put "$b" "one ask at a time: direct tokens/s (control)" "$s" "$r" "$(field "$log" 's/^one ask at a time .*: direct \([0-9.]*\) tokens.*/\1/p')"
      put "$b" "one ask at a time: mesh tokens/s" "$s" "$r" "$(field "$log" 's/^one ask at a time .*mesh \([0-9.]*\) tokens.*/\1/p')"
      put "$b" "one ask at a time: ratio mesh/direct" "$s" "$r" "$(field "$log" 's/^one ask at a time .*ratio \([0-9.]*\).*/\1/p')"
      put "$b" "TTFT added by the mesh per ask, median (ms)" "$s" "$r" "$(field "$log" 's/^time to first token added by the mesh.*: \([-0-9.]*\) ms median.*/\1/p')"
      put "$b" "TTFT, direct median (ms, control)" "$s" "$r" "$(field "$log" 's/^time to first token (.*: direct \([0-9.]*\) ms,.*/\1/p')"
      put "$b" "TTFT, mesh median (ms)" "$s" "$r" "$(field "$log" 's/^time to first token (.*mesh \([0-9.]*\) ms,.*/\1/p')"
      put "$b" "concurrent: direct tokens/s (control)" "$s" "$r" "$(field "$log" 's/.*concurrent clients.*: direct \([0-9.]*\) tokens.*/\1/p')"
      put "$b" "concurrent: mesh tokens/s" "$s" "$r" "$(field "$log" 's/.*concurrent clients.*mesh \([0-9.]*\) tokens.*/\1/p')"
      put "$b" "concurrent: mesh errors" "$s" "$r" "$(field "$log" 's/.*concurrent clients.*, \([0-9]*\) errors).*/\1/p')"
      put "$b" "concurrent: ratio mesh/direct" "$s" "$r" "$(field "$log" 's/.*concurrent clients.*ratio \([0-9.]*\).*/\1/p')"
    done
  done
}

# ---- the run ----
t0=$(date +%s)
if [[ " $only " == *" sidecar "* || " $only " == *" mesh "* ]]; then
  synth "$tinyllama_model" --shape tinyllama --type q8_0 --seed 1
  [[ "${sidecar_rows[*]}" == *"tiny|"* ]] && synth "$tiny_model" --shape tiny --seed 7
fi
{
  echo "ab.sh: same-run A/B, $(date -u '+%F %H:%M UTC'), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "  base: ${builds[0]} = $(describe "${builds[0]}")"
  echo "  new : ${builds[1]} = $(describe "${builds[1]}")"
  echo "  mode: $([ "$quick" = 1 ] && echo quick || echo full); $rounds round(s) per benchmark, A B / B A alternating; llama-server $llama"
  echo "  sizes:"
  echo "    dht_bench     --nodes {${dht_sizes[*]}} ${dht_args[*]}"
  echo "    session_bench ${session_args[*]}"
  echo "    dht_sim       --nodes $sim_nodes --lookups 200 --seed 1, rows: plain | --churn 0.3 | + --loss 0.01 | --churn 0.3 --reachable-ephemeral 0.1 --auto-promote"
  for row in "${sidecar_rows[@]}"; do
    echo "    sidecar_bench ${row%%|*} model: ${row#*|}"
  done
  echo "    mesh_bench    tinyllama model, 3 workers (1 llama-server thread each): ${mesh_args[*]}"
  echo "    models: $tinyllama_model (tinyllama shape, q8_0, seed 1)$([[ "${sidecar_rows[*]}" == *"tiny|"* ]] && echo ", $tiny_model (tiny, seed 7)")"
  echo "  logs: $logdir"
}
for b in $only; do
  echo "ab.sh: $b ... ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))" >&2
  "bench_$b"
done
t1=$(date +%s)

# ---- the table ----
# Cells: the median over the rounds, then each round's value in run order. Figures that are the same
# in every run of both sides (the deterministic simulator's) say "identical".
echo
echo "| benchmark | figure | base | new | new/base |"
echo "|---|---|---|---|---|"
awk -F'\t' '
  function dec(v,   i) { i = index(v, "."); return i ? length(v) - i : 0 }
  function median(list, n,   a, i, j, t, k) {
    k = split(list, a, " ")
    for (i = 2; i <= k; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  function abs(x) { return x < 0 ? -x : x }
  function fmt(m, p,   t) {  # as precise as the inputs, one digit more for a median between two values
    t = sprintf("%." p "f", m)
    if (abs(t - m) > 1e-9 * (abs(m) + 1)) t = sprintf("%." (p + 1) "f", m)
    return t
  }
  function numeric(key) { return vals[key] !~ /fail|n\/a/ }
  function cell(key) {
    if (!(key in vals)) return "-"
    if (!numeric(key)) return vals[key]
    return fmt(median(vals[key]), prec[key] + 0) (cnt[key] > 1 ? " (" vals[key] ")" : "")
  }
  {
    id = $1 SUBSEP $2
    if (!(id in seen)) { seen[id] = 1; order[++n] = id; bench[n] = $1; fig[n] = $2 }
    key = id SUBSEP $3
    # (mawk creates vals[key] before it evaluates the right-hand side: count, do not test "in")
    vals[key] = cnt[key] ? vals[key] " " $5 : $5
    cnt[key]++
    if (dec($5) > prec[key]) prec[key] = dec($5)
    if (!ncnt[id]++) first[id] = $5; else if (first[id] != $5) differs[id] = 1
  }
  END {
    for (i = 1; i <= n; i++) {
      id = order[i]; kb = id SUBSEP "base"; kn = id SUBSEP "new"
      r = "-"
      if ((kb in vals) && (kn in vals) && numeric(kb) && numeric(kn)) {
        mb = median(vals[kb]); mn = median(vals[kn])
        if (!(id in differs)) r = "identical"
        else if (mb > 0 && mn >= 0) r = sprintf("%.3f", mn / mb)
        else r = sprintf("%+." (prec[kn] > prec[kb] ? prec[kn] : prec[kb]) "f (new - base)", mn - mb)
      }
      if (fig[i] ~ /^\(run failed/) r = ""
      printf "| %s | %s | %s | %s | %s |\n", (bench[i] == last ? "" : bench[i]), fig[i], cell(kb), cell(kn), r
      last = bench[i]
    }
  }' "$results"
echo
echo "Cells: median over the rounds (each round's value in run order). Lower is better for times, CPU and"
echo "memory, higher for rates; a figure that can be 0 or below gets the difference instead of a ratio;"
echo "\"control\" rows time llama-server alone (the same binary on both sides),"
echo "so they show the noise of the run. Took $(((t1 - t0) / 60)) min $(((t1 - t0) % 60)) s; load average at the end"
echo "$(cut -d' ' -f1-3 /proc/loadavg). Each run's output: $logdir"
exit $failed
