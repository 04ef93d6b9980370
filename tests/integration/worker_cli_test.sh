#!/usr/bin/env bash
# qmesh-worker and qmesh-cli as a user runs them, with a real llama-server:
#   usage: worker_cli_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"   # the workers' default identity stays in the test's folder
children_of() { pgrep -P "$1" 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# --version names both versions.
out="$("$worker" --version)"
check "--version prints qmesh-worker's version" grep -q '^qmesh-worker [0-9]' <<<"$out"
check "--version prints the llama-server version it resolved" grep -q '^llama-server: version' <<<"$out"

# No llama-server anywhere: a clear error that names the places and the command that gets one.
out="$(QMESH_LLAMA_SERVER=/nonexistent/llama-server "$worker" --model "$model" 2>&1)"; rc=$?
check "missing llama-server exits non-zero" test "$rc" -ne 0
check "missing llama-server names the path" grep -q '/nonexistent/llama-server' <<<"$out"
out="$(env -u QMESH_LLAMA_SERVER PATH=/usr/bin:/bin HOME="$tmp" QMESH_CACHE="$tmp/cache" "$worker" --model "$model" 2>&1)"; rc=$?
check "no llama-server at all exits non-zero" test "$rc" -ne 0
check "no llama-server names the places looked in and the fix" grep -q 'looked in:.*get-llama-server.sh' <<<"$out"

# A bad model: one line, non-zero, and no llama-server was spawned.
printf 'GGUF\003\000\000\000garbage' >"$tmp/bad.gguf"
out="$("$worker" --model "$tmp/bad.gguf" 2>&1)"; rc=$?
check "bad model exits non-zero" test "$rc" -ne 0
check "bad model error is one line naming the file" test "$(wc -l <<<"$out")" -eq 1 -a -n "$(grep bad.gguf <<<"$out")"

# Bad settings name the setting.
out="$("$worker" --model "$model" --ctx-size 5 2>&1)"; rc=$?
check "bad --ctx-size exits non-zero" test "$rc" -ne 0
check "bad --ctx-size names the setting" grep -q 'ctx-size' <<<"$out"
echo '{"model": "x", "queue-capacity": "ten"}' >"$tmp/bad.json"
out="$("$worker" --config "$tmp/bad.json" 2>&1)"; rc=$?
check "bad config exits non-zero and names the setting" test "$rc" -ne 0 -a -n "$(grep queue-capacity <<<"$out")"

# qmesh-cli run streams an answer and prints a JSON summary.
out="$("$cli" run --model "$model" --max-tokens 24 --json "Hello there" 2>"$tmp/run.err")"; rc=$?
check "run exits 0" test "$rc" -eq 0
summary="$(tail -n 1 <<<"$out")"
check "run --json reports 24 tokens" grep -q '"tokens":24' <<<"$summary"
check "run printed the answer before the summary" test "$(wc -c <<<"$out")" -gt "$(wc -c <<<"$summary")"
out="$("$cli" run --model "$tmp/bad.gguf" "hi" 2>&1)"; rc=$?
check "run with a bad model: one line, non-zero" test "$rc" -ne 0 -a "$(wc -l <<<"$out")" -eq 1

# The worker starts llama-server, reports ready; SIGTERM stops both.
"$worker" --model "$model" --threads 1 --status-interval 1 >"$tmp/w1.log" 2>&1 &
wpid=$!; pids+=("$wpid")
check "worker reports ready" wait_line "$tmp/w1.log" 'ready: llama-server pid' 60
check "worker prints status lines" wait_line "$tmp/w1.log" 'status: llama-server ready' 10
child="$(children_of "$wpid")"
check "llama-server is the worker's direct child" test -n "$child"
kill -TERM "$wpid"; wait "$wpid"; rc=$?
check "SIGTERM: worker exits 0" test "$rc" -eq 0
check "SIGTERM: llama-server is gone" bash -c "! kill -0 $child 2>/dev/null"

# A --port already served by another llama-server: refused, never mistaken for ours.
"$worker" --model "$model" --threads 1 >"$tmp/w5.log" 2>&1 &
wpid=$!; pids+=("$wpid")
if wait_line "$tmp/w5.log" 'ready: llama-server pid' 60; then
  taken="$(sed -n 's/.*on 127.0.0.1:\([0-9]*\),.*/\1/p' "$tmp/w5.log" | head -n 1)"
  cp "$model" "$tmp/other.gguf"
  # (a key of its own: the first worker holds the default one)
  out="$("$worker" --model "$tmp/other.gguf" --threads 1 --port "$taken" --identity "$tmp/other.key" 2>&1)"; rc=$?
  check "port taken by another llama-server: non-zero exit" test "$rc" -ne 0
  check "port taken by another llama-server: never reported ready" bash -c "! grep -q 'ready: llama-server' <<<\"\$1\"" _ "$out"
  # A child that has not bound yet while the other server answers /health: the readiness probe
  # must see (via /props) that the answer is not for our model.
  printf '#!/bin/sh\nexec sleep 600\n' >"$tmp/unbound-llama-server"; chmod +x "$tmp/unbound-llama-server"
  out="$(timeout 30 "$worker" --model "$tmp/other.gguf" --llama-server "$tmp/unbound-llama-server" --port "$taken" \
    --identity "$tmp/other.key" 2>&1)"; rc=$?
  check "another server's /health is not taken for ours: non-zero exit" test "$rc" -ne 0
  check "... and says the port is served by another llama-server" grep -q "is served by another llama-server" <<<"$out"
  kill -TERM "$wpid"; wait "$wpid"
else
  bad "worker for the port test did not become ready"
fi

# kill -9 of the worker: llama-server is gone within 2 s (parent-death signal).
"$worker" --model "$model" --threads 1 >"$tmp/w2.log" 2>&1 &
wpid=$!; pids+=("$wpid")
if wait_line "$tmp/w2.log" 'ready: llama-server pid' 60; then
  child="$(children_of "$wpid")"
  pids+=("$child")
  kill -9 "$wpid"; wait "$wpid" 2>/dev/null
  gone=1
  for ((i = 0; i < 20; i++)); do alive "$child" || { gone=0; break; }; sleep 0.1; done
  check "kill -9 worker: llama-server (pid $child) gone within 2 s" test "$gone" -eq 0
else
  bad "second worker did not become ready"; cat "$tmp/w2.log"
fi

# A crash loop (5 crashes within 60 s) makes the worker report unhealthy and exit with code 3.
"$worker" --model "$model" --threads 1 >"$tmp/w4.log" 2>&1 &
wpid=$!; pids+=("$wpid")
if wait_line "$tmp/w4.log" 'ready: llama-server pid' 60; then
  last=""; kills=0; t_end=$((SECONDS + 90))
  while [ "$SECONDS" -lt "$t_end" ]; do
    kill -0 "$wpid" 2>/dev/null || break
    child="$(children_of "$wpid")"
    if [ -n "$child" ] && [ "$child" != "$last" ]; then kill -9 "$child" 2>/dev/null; last="$child"; kills=$((kills + 1)); fi
    sleep 0.1
  done
  if alive "$wpid"; then  # never a hang: what the worker was doing, then it goes
    echo "crash loop: the worker is still running after $kills kills; its log and threads:"
    tail -n 30 "$tmp/w4.log"
    for t in /proc/"$wpid"/task/*; do echo "  thread $(cat "$t/comm" 2>/dev/null): $(cat "$t/wchan" 2>/dev/null) $(grep '^State' "$t/status" 2>/dev/null)"; done
    pgrep -a -P "$wpid"
    command -v gdb >/dev/null && timeout 30 gdb -p "$wpid" -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^(Thread|#)' | head -n 120
    kill -9 "$wpid"
  fi
  wait "$wpid"; rc=$?
  check "crash loop: worker exits with code 3" test "$rc" -eq 3
  check "crash loop: says llama-server crashed 5 times" grep -q 'crashed 5 times' "$tmp/w4.log"
else
  bad "crash-loop worker did not become ready"
fi

# llama-server failing at start-up: not retried, a clear message.
cat >"$tmp/crashy-llama-server" <<'SH'
#!/bin/sh
exit 1
SH
chmod +x "$tmp/crashy-llama-server"
out="$("$worker" --model "$model" --llama-server "$tmp/crashy-llama-server" 2>&1)"; rc=$?
check "llama-server failing at start-up: worker exits non-zero" test "$rc" -ne 0
check "... with a message saying so" grep -q 'during start-up' <<<"$out"

# A signal while llama-server is still loading stops the worker at once, and the child with it.
cat >"$tmp/slow-llama-server" <<'SH'
#!/bin/sh
exec sleep 600
SH
chmod +x "$tmp/slow-llama-server"
"$worker" --model "$model" --llama-server "$tmp/slow-llama-server" >"$tmp/w3.log" 2>&1 &
wpid=$!; pids+=("$wpid")
check "slow start: worker spawned llama-server" wait_line "$tmp/w3.log" 'started llama-server pid' 10
child="$(children_of "$wpid")"
kill -TERM "$wpid"; wait "$wpid"; rc=$?
check "SIGTERM during start-up: exit code 143" test "$rc" -eq 143
check "SIGTERM during start-up: says so" grep -q 'stopped before llama-server was ready' "$tmp/w3.log"
check "SIGTERM during start-up: the child is gone" bash -c "! kill -0 ${child:-999999} 2>/dev/null"
"$cli" run --model "$model" --llama-server "$tmp/slow-llama-server" "hi" >"$tmp/r3.log" 2>&1 &
rpid=$!; pids+=("$rpid")
sleep 1; kill -INT "$rpid"; wait "$rpid"; rc=$?
check "Ctrl-C of run during start-up: exit code 130" test "$rc" -eq 130

finish
