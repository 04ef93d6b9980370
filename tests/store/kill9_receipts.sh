#!/usr/bin/env bash
# kill -9 during receipt writes (issue 15): a real writer process (receipt_writer) stores signed
# receipts and acks each one on stdout after its commit; it is killed with SIGKILL at a random
# moment, N times, alternating the worker's and the client's role (each its own database file,
# kept across the kills). After each kill the sqlite3 CLI opens the file: PRAGMA quick_check must
# say ok, and every receipt ever acked must be there (a countersigned ack with its countersignature).
# Then 20 kills of a writer creating and migrating a new file: it is at version 0 or 1, never
# between, and opens again.
#   kill9_receipts.sh RECEIPT_WRITER [N=100]
set -euo pipefail
writer="$1"; n="${2:-100}"
command -v sqlite3 >/dev/null || { echo "kill9_receipts: the sqlite3 CLI is missing (apt-get install sqlite3)" >&2; exit 1; }
dir="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
: >"$dir/acks.worker"; : >"$dir/acks.client"
mid_write=0
for i in $(seq 1 "$n"); do
  role=worker; [ $((i % 2)) -eq 1 ] && role=client
  db="$dir/$role.db"
  "$writer" --db "$db" --role "$role" --start $((i * 1000000)) >"$dir/out" 2>"$dir/err" &
  pid=$!
  # A random moment in the first 300 ms: early ones land in open and migration, later ones in
  # inserts, commits and folds.
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", r / 32768 * 0.3 }')"
  kill -9 "$pid" 2>/dev/null || true
  status=0; { wait "$pid"; } 2>/dev/null || status=$?  # (no "Killed" line from bash)
  pid=""
  if [ "$status" -ne 137 ]; then
    echo "kill9_receipts: round $i: the $role writer ended on its own (status $status):" >&2
    cat "$dir/err" >&2
    exit 1
  fi
  # Only whole lines are acks (the kill may cut the last one).
  acked=$(grep -c -E '^[0-9A-F]{32} [01]$' "$dir/out" || true)
  [ "$acked" -gt 0 ] && mid_write=$((mid_write + 1))
  grep -E '^[0-9A-F]{32} [01]$' "$dir/out" >>"$dir/acks.$role" || true
  [ -e "$db" ] || { [ ! -s "$dir/acks.$role" ] && continue; echo "kill9_receipts: round $i: $db is gone" >&2; exit 1; }
  check="$(sqlite3 "$db" 'PRAGMA quick_check' 2>&1)"
  if [ "$check" != "ok" ]; then
    echo "kill9_receipts: round $i ($role): quick_check says: $check" >&2
    exit 1
  fi
  if ! sqlite3 "$db" "SELECT hex(ask_id) || ' ' || (worker_sig IS NOT NULL) FROM receipts" >"$dir/held" 2>"$dir/sqlerr"; then
    # Killed before the schema was committed: then nothing was acked yet.
    if [ -s "$dir/acks.$role" ]; then echo "kill9_receipts: round $i: $(cat "$dir/sqlerr")" >&2; exit 1; fi
    continue
  fi
  missing="$(awk 'NR == FNR { held[$1] = $2; next } !($1 in held) || held[$1] < $2 { print; exit }' \
    "$dir/held" "$dir/acks.$role")"
  if [ -n "$missing" ]; then
    echo "kill9_receipts: round $i ($role): acked receipt missing or not countersigned: $missing" >&2
    exit 1
  fi
done
# Then kills during creation and migration: a fresh file each time, killed in its first 40 ms.
# The file must be consistent at the old (0) or the new version, never between, and open again.
migrating=0
for i in $(seq 1 20); do
  db="$dir/fresh$i.db"
  "$writer" --db "$db" --role worker --start 1 >"$dir/out" 2>"$dir/err" &
  pid=$!
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", r / 32768 * 0.04 }')"
  kill -9 "$pid" 2>/dev/null || true
  status=0; { wait "$pid"; } 2>/dev/null || status=$?
  pid=""
  [ "$status" -eq 137 ] || { echo "kill9_receipts: fresh $i: status $status: $(cat "$dir/err")" >&2; exit 1; }
  [ -e "$db" ] || continue
  check="$(sqlite3 "$db" 'PRAGMA quick_check')"
  version="$(sqlite3 "$db" 'PRAGMA user_version')"
  tables="$(sqlite3 "$db" "SELECT count(*) FROM sqlite_schema WHERE type = 'table'")"
  if [ "$check" != ok ] || { [ "$version" = 0 ] && [ "$tables" != 0 ]; } || { [ "$version" != 0 ] && [ "$version" != 1 ]; }; then
    echo "kill9_receipts: fresh $i: quick_check $check, user_version $version with $tables tables" >&2
    exit 1
  fi
  [ "$version" = 0 ] && migrating=$((migrating + 1))
  # It opens again (and migrates, if it had not) and takes receipts.
  "$writer" --db "$db" --role worker --start 1000000 >"$dir/out" 2>"$dir/err" &
  pid=$!
  sleep 0.2
  kill -9 "$pid" 2>/dev/null || true
  status=0; { wait "$pid"; } 2>/dev/null || status=$?
  pid=""
  [ "$status" -eq 137 ] || { echo "kill9_receipts: fresh $i reopened: status $status: $(cat "$dir/err")" >&2; exit 1; }
done

echo "kill9_receipts: $n kills ($mid_write while writing), $(wc -l <"$dir/acks.worker") worker and $(wc -l <"$dir/acks.client") client acks, all present; quick_check ok every time; 20 kills of a new file (left at version 0 $migrating times), each consistent and opened again"
if [ "$mid_write" -lt $((n / 2)) ]; then
  echo "kill9_receipts: fewer than half the kills landed while receipts were being written" >&2
  exit 1
fi
