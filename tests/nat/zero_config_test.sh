#!/usr/bin/env bash
# lan.zero_config: on one machine (a network namespace of its own, loopback only), a bootstrap
# node, a qmesh-worker and `qmesh-cli ask` find each other with no --bootstrap and no config file:
# the node announces itself by multicast on the host, the worker and the client ask for it.
# Usage: zero_config_test.sh QMESH_CLI QMESH_WORKER TINY_MODEL  (root; exit 77 = skipped elsewhere)
set -uo pipefail
cli="${1:?usage: $0 QMESH_CLI QMESH_WORKER TINY_MODEL}"; worker="${2:?}"; model="${3:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (a network namespace of its own)"; exit 77; }
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
command -v ip >/dev/null || { echo "SKIP: no ip command"; exit 77; }
ns="qmz-$$"
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  # Whatever still runs in the namespace (a child of a killed process) goes too.
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$ns" && ip -n "$ns" link set lo up || { echo "FAIL: cannot create namespace $ns"; exit 1; }
run() { ip netns exec "$ns" env -u QMESH_NO_LAN QMESH_CONFIG_DIR="$tmp/cfg" "$@"; }
# In the background: `run ... &` would record the pid of a subshell, not of the program.
bg_run() { local log="$1"; shift; ip netns exec "$ns" env -u QMESH_NO_LAN QMESH_CONFIG_DIR="$tmp/cfg" "$@" >"$log" 2>&1 & pids+=($!); }
failures=0
check() { local what="$1"; shift; if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi; }
wait_line() { local i; for ((i = 0; i < $3 * 10; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

bg_run "$tmp/boot.log" "$cli" dht bootstrap --listen 127.0.0.1:49737 --log-level info
check "the bootstrap node announces itself on the host" wait_line "$tmp/boot.log" "announcing this node on the host" 10
bg_run "$tmp/w.log" "$worker" --model "$model" --identity "$tmp/w.key" --status-interval 2
check "the worker found the node on its own and joined" wait_line "$tmp/w.log" "joined the network as" 60
grep -h "found .* DHT node" "$tmp/w.log"
out=""
for _ in $(seq 1 20); do
  out="$(run "$cli" workers --json 2>"$tmp/workers.err")"
  grep -q '"available":true' <<<"$out" && break
  sleep 1
done
check "workers with no flags lists the worker" grep -q '"available":true' <<<"$out"
out="$(run "$cli" ask --max-tokens 8 --json "Hello" 2>"$tmp/ask.err")"; rc=$?
check "ask with no flags answers" test "$rc" -eq 0 -a -n "$(grep '"tokens":8' <<<"$out")"
out="$(run "$cli" ask --max-tokens 8 --topic x --bootstrap 127.0.0.1:1 "Hello" 2>&1)"; rc=$?
check "an explicit --bootstrap is used as given (no LAN fallback)" test "$rc" -eq 6
[ "$failures" -eq 0 ] || { tail -n 5 "$tmp"/*.log "$tmp"/*.err; exit 1; }
echo "all passed"
