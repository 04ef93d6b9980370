#!/usr/bin/env bash
# Issue 12 §5.5: --bootstrap takes host names, not only addresses: `localhost:PORT` against a real
# bootstrap node on loopback, for qmesh-worker, qmesh-cli (workers, ask, dht lookup, net connect)
# and the config file's "bootstrap" list. An unresolvable name is one line naming the host; it is
# tried in a network namespace of its own (no DNS query leaves the machine; root only).
#   usage: bootstrap_names_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"
port=$((48300 + RANDOM % 400))
"$cli" dht bootstrap --listen "127.0.0.1:$port" >"$tmp/boot.log" 2>&1 &
pids+=($!)
check "bootstrap node listening on 127.0.0.1:$port" wait_line "$tmp/boot.log" "listening on" 10
name="localhost:$port"

"$worker" --model "$model" --bootstrap "$name" --threads 1 --status-interval 1 --identity "$tmp/w.key" \
  >"$tmp/w.log" 2>&1 &
pids+=($!)
check "qmesh-worker --bootstrap $name joined the network" wait_line "$tmp/w.log" "joined the network as" 60
wid="$("$cli" id --identity "$tmp/w.key")"
listed() { "$cli" workers --bootstrap "$name" --json 2>"$tmp/workers.err" | grep -q "\"id\":\"$wid\""; }
n=0; until listed || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "qmesh-cli workers --bootstrap $name lists the worker" listed
"$cli" ask --bootstrap "$name" --max-tokens 4 --json "Hello" >"$tmp/ask.json" 2>"$tmp/ask.err"; rc=$?
check "qmesh-cli ask --bootstrap $name is answered (exit $rc)" test "$rc" -eq 0
"$cli" dht lookup --bootstrap "$name" --json qmesh-inference >"$tmp/lookup.json" 2>"$tmp/lookup.err"; rc=$?
check "qmesh-cli dht lookup --bootstrap $name finds the worker's record (exit $rc)" grep -q "$wid" "$tmp/lookup.json"
[ "$rc" -eq 0 ] || cat "$tmp/lookup.err"

"$cli" net listen --topic names-echo --bootstrap "$name" >"$tmp/listen.log" 2>&1 &
pids+=($!)
if wait_line "$tmp/listen.log" "listening on" 20; then
  "$cli" net connect --topic names-echo --bootstrap "$name" --bytes 4096 >"$tmp/connect.out" 2>&1; rc=$?
  check "qmesh-cli net listen / net connect --bootstrap $name echo (exit $rc)" test "$rc" -eq 0
  [ "$rc" -eq 0 ] || cat "$tmp/connect.out"
else
  bad "qmesh-cli net listen --bootstrap $name announces"; cat "$tmp/listen.log"
fi

# The config file's list, with no --bootstrap.
mkdir -p "$tmp/cfg"
printf '{"bootstrap": ["%s"]}\n' "$name" >"$tmp/cfg/config.json"
"$cli" ask --max-tokens 4 "Hello" >"$tmp/ask2.out" 2>"$tmp/ask2.err"; rc=$?
check "qmesh-cli ask with \"bootstrap\": [\"$name\"] in config.json is answered (exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$tmp/ask2.err"
rm "$tmp/cfg/config.json"

# Malformed: a usage error (exit 2), one line, before anything runs.
for bad in "localhost" "localhost:0" "bad_name!:$port"; do
  out="$("$cli" workers --bootstrap "$bad" 2>&1)"; rc=$?
  check "qmesh-cli --bootstrap '$bad': exit 2, one line ($out)" \
    bash -c "test $rc -eq 2 && test \$(wc -l <<<\"\$1\") -eq 1 && grep -q 'expected HOST:PORT' <<<\"\$1\"" _ "$out"
  out="$(timeout 30 "$worker" --model "$model" --bootstrap "$bad" 2>&1)"; rc=$?
  check "qmesh-worker --bootstrap '$bad': exit 2, one line ($out)" \
    bash -c "test $rc -eq 2 && test \$(wc -l <<<\"\$1\") -eq 1 && grep -q 'is not HOST:PORT' <<<\"\$1\"" _ "$out"
done

# A name that does not resolve, in a network namespace of its own (no route: no DNS query goes out).
if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
  host="no-such-host.invalid"
  out="$(unshare -n "$cli" workers --bootstrap "$host:$port" 2>&1)"; rc=$?
  check "qmesh-cli: unresolvable $host: non-zero, one line naming the host ($out)" \
    bash -c "test $rc -ne 0 && test \$(wc -l <<<\"\$1\") -eq 1 && grep -q \"cannot resolve host '$host'\" <<<\"\$1\"" _ "$out"
  out="$(unshare -n "$cli" dht lookup --bootstrap "$host:$port" qmesh-inference 2>&1)"; rc=$?
  check "qmesh-cli dht lookup: unresolvable $host: non-zero, one line naming the host ($out)" \
    bash -c "test $rc -ne 0 && test \$(wc -l <<<\"\$1\") -eq 1 && grep -q \"cannot resolve host '$host'\" <<<\"\$1\"" _ "$out"
  out="$(timeout 30 unshare -n "$worker" --model "$model" --identity "$tmp/w2.key" --bootstrap "$host:$port" 2>&1)"; rc=$?
  check "qmesh-worker: unresolvable $host: non-zero before llama-server, one line naming the host ($out)" \
    bash -c "test $rc -ne 0 -a $rc -ne 124 && test \$(wc -l <<<\"\$1\") -eq 1 && grep -q \"^qmesh-worker: setting 'bootstrap': $host:$port: cannot resolve host '$host'\" <<<\"\$1\"" _ "$out"
else
  echo "SKIP: the unresolvable-name checks need root and unshare -n"
fi
finish
