#!/usr/bin/env bash
# nat.mesh: the whole user story across home NATs (network namespaces, netns_lib.sh): a bootstrap
# node on the public segment, a qmesh-worker (real llama-server) behind a cone NAT and another
# behind a symmetric NAT, and `qmesh-cli ask` from a cone home and a symmetric home to each.
# Usage: nat_mesh_test.sh QMESH_CLI QMESH_WORKER TINY_MODEL  (root; exit 77 = skipped elsewhere)
cli="${1:?usage: $0 QMESH_CLI QMESH_WORKER TINY_MODEL}"; worker="${2:?}"; model="${3:?}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=netns_lib.sh
source "$here/netns_lib.sh"
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
cli="$(abs "$cli")"; worker="$(abs "$worker")"; model="$(abs "$model")"
netns_require
export QMESH_CONFIG_DIR="$QMN_DIR/cfg"


step "building the topology"
public b1
home wc cone
home ws symmetric
home cc cone
home cs symmetric
netns_summary >&2

PORT=49737
bg_ns b1 "$QMN_DIR/b1.log" "$cli" dht bootstrap --listen "$(ip4 b1):$PORT" --log-level info
wait_for_line "$QMN_DIR/b1.log" '^listening on' 10 || { fail setup "no bootstrap node"; netns_dump; exit 1; }
BOOT="$(ip4 b1):$PORT"

# One worker per NAT type, each under its own topic so that an ask reaches the one we mean.
for w in wc ws; do
  bg_ns "$w" "$QMN_DIR/worker-$w.log" "$worker" --model "$model" --bootstrap "$BOOT" --topic "mesh-$w" \
    --identity "$QMN_DIR/$w.key" --status-interval 2 --log-level info
done
for w in wc ws; do
  wait_for_line "$QMN_DIR/worker-$w.log" 'joined the network as' 60 ||
    { fail setup "worker in $w did not join: $(tail -n 3 "$QMN_DIR/worker-$w.log" | tr '\n' ' ')"; exit 1; }
done

# ask_cell NAME WORKER_HOME CLIENT_HOME
ask_cell() {
  local name="$1" w="$2" c="$3" out rc i
  step "cell $name: worker in $w, ask from $c"
  for i in $(seq 1 20); do  # the worker's record appears within one status interval
    out="$(in_ns "$c" timeout 60 "$cli" workers --bootstrap "$BOOT" --topic "mesh-$w" --json 2>/dev/null)"
    grep -q '"available":true' <<<"$out" && break
    sleep 1
  done
  out="$(in_ns "$c" timeout 90 "$cli" ask --bootstrap "$BOOT" --topic "mesh-$w" --max-tokens 16 --json \
         --timeout 60 "Hello from $c" 2>"$QMN_DIR/ask-$name.err")"
  rc=$?
  if [ $rc -ne 0 ] || ! grep -q '"tokens":16' <<<"$out"; then
    fail "$name" "exit $rc: $(tail -n 2 "$QMN_DIR/ask-$name.err" | tr '\n' ' ') $out"
    return
  fi
  pass "$name" "16 tokens, ttft $(json_field "$out" ttft_ms) ms, total $(json_field "$out" total_ms) ms"
}

ask_cell "cone worker <- cone client" wc cc
ask_cell "cone worker <- symmetric client" wc cs
ask_cell "symmetric worker <- cone client" ws cc
ask_cell "symmetric worker <- symmetric client" ws cs

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
