# Shared by the integration scripts: a temp folder and child processes cleaned up on exit, and
# check/ok/bad that count results for the closing "N passed, N failed" line.
tmp="$(mktemp -d)"
# Nodes started without --bootstrap must not ask the real LAN by multicast (tests send only to
# loopback and their own namespaces).
export QMESH_NO_LAN=1
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
failures=0; passed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failures=$((failures + 1)); echo "FAIL: $*"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# Waits for a line matching $2 in file $1, up to $3 seconds.
wait_line() { local i; for ((i = 0; i < $3 * 10; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
finish() { echo "$passed passed, $failures failed"; test "$failures" -eq 0; }
