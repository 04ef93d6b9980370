#!/usr/bin/env bash
# What qmesh-cli and qmesh-worker do with bad input before anything runs: bad flags (one line,
# exit 2), strings of a hostile model file on the terminal, prompts that are not UTF-8, a bad
# --listen / --identity / config file found before llama-server is spawned, key file modes.
# No llama-server and no network: a fake llama-server only records that it was spawned.
#   usage: cli_input_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export HOME="$tmp/home" QMESH_CONFIG_DIR="$tmp/config"

# One line on stderr, exit 2, nothing on stdout.
usage_error() {  # name, command...
  local what="$1"; shift
  err="$("$@" 2>&1 >"$tmp/stdout")"; rc=$?
  check "$what: exit 2 (got $rc)" test "$rc" -eq 2
  check "$what: one line on stderr ($(wc -l <<<"$err"))" test "$(wc -l <<<"$err")" -eq 1 -a -n "$err"
  check "$what: the line names the program" grep -q '^qmesh-\(cli\|worker\): ' <<<"$err"
}
usage_error "ask --max-tokens 0" "$cli" ask --max-tokens 0 hi
usage_error "ask --max-tokens -1" "$cli" ask --max-tokens -1 hi
usage_error "ask --max-tokens abc" "$cli" ask --max-tokens abc hi
usage_error "ask --timeout 0" "$cli" ask --timeout 0 hi
usage_error "ask --bogus" "$cli" ask --bogus hi
usage_error "run --max-tokens 0" "$cli" run --model "$model" --max-tokens 0 hi
usage_error "workers --bogus" "$cli" workers --bogus
usage_error "model inspect without a file" "$cli" model inspect
usage_error "dht lookup --topic missing its value" "$cli" dht lookup --topic
usage_error "no subcommand" "$cli"
usage_error "worker --bogus" "$worker" --bogus
usage_error "worker --port abc" "$worker" --model "$model" --port abc
usage_error "worker --max-tokens 0" "$worker" --model "$model" --max-tokens 0
out="$("$cli" --help 2>&1)"; rc=$?
check "--help still exits 0 with the usage" test "$rc" -eq 0 -a -n "$(grep -i usage <<<"$out")"

# Prompts that are not UTF-8: exit 2, one line naming the byte offset (before any network).
usage_error "ask with a non-UTF-8 prompt" "$cli" ask $'ab\xff'
check "ask names the byte offset" grep -q 'not valid UTF-8 (byte offset 2)' <<<"$err"
err="$(printf 'ok \xc3' | "$cli" ask - 2>&1)"; rc=$?
check "ask - (stdin) with a truncated sequence: exit 2 at offset 3" test "$rc" -eq 2 -a -n "$(grep 'byte offset 3' <<<"$err")"
usage_error "run with a non-UTF-8 prompt" "$cli" run --model "$model" $'\xc0\xaf'

# A GGUF file whose strings hold a clear-screen sequence, CR and NUL (written by hand: little-endian
# counts; a string is its u64 length then its bytes).
u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
u64() { u32 "$1"; u32 0; }
gstr() { u64 "$1"; printf "$2"; }  # length, printf text (escapes allowed)
{
  printf 'GGUF'; u32 3; u64 0; u64 3
  gstr 20 'general.architecture'; u32 8; gstr 9 'llama\x1b[2J'
  gstr 12 'general.name'; u32 8; gstr 15 'evil\r\x00\x1b[2Jname\x07'
  gstr 20 'tokenizer.ggml.model'; u32 8; gstr 6 '\x1b]0;t\x07'
} >"$tmp/evil.gguf"
"$cli" model inspect "$tmp/evil.gguf" >"$tmp/inspect.out" 2>&1; rc=$?
check "inspect of the hostile file exits 0" test "$rc" -eq 0
check "inspect shows the name" grep -q '^name: evil' "$tmp/inspect.out"
check "inspect output has no ESC, CR, NUL or BEL" test "$(tr -d -c '\033\r\000\007' <"$tmp/inspect.out" | wc -c)" -eq 0
"$cli" model inspect --json "$tmp/evil.gguf" >"$tmp/inspect.json" 2>&1
check "inspect --json output has no ESC, CR, NUL or BEL" test "$(tr -d -c '\033\r\000\007' <"$tmp/inspect.json" | wc -c)" -eq 0

# Worker: a bad --listen, --identity or config file is reported before llama-server is spawned
# (the fake one below only leaves a mark and waits).
printf '#!/bin/sh\ntouch "%s/spawned"\nexec sleep 30\n' "$tmp" >"$tmp/fake-llama-server"
chmod +x "$tmp/fake-llama-server"
spawned() { test -e "$tmp/spawned"; }
worker_fails_early() {  # name, expected text, args...
  local what="$1" want="$2"; shift 2
  rm -f "$tmp/spawned"
  local out rc
  out="$(timeout 60 "$worker" --model "$model" --llama-server "$tmp/fake-llama-server" --bootstrap 127.0.0.1:9 "$@" 2>&1)"; rc=$?
  check "$what: exits non-zero (got $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
  check "$what: says '$want'" grep -qF -- "$want" <<<"$out"
  check "$what: llama-server was not spawned" test ! -e "$tmp/spawned"
}
worker_fails_early "--listen not an address" "setting 'listen'" --listen nonsense:1
worker_fails_early "--listen of another host" "cannot bind 192.0.2.1:7" --listen 192.0.2.1:7
mkdir -p "$tmp/keys"
printf 'qmesh-identity-v1 %064d\n' 0 >"$tmp/keys/open"; chmod 644 "$tmp/keys/open"
worker_fails_early "--identity readable by others" "(mode 0644)" --identity "$tmp/keys/open"
printf 'not a key\n' >"$tmp/keys/garbage"; chmod 600 "$tmp/keys/garbage"
worker_fails_early "--identity not a key file" "not a QMesh identity file" --identity "$tmp/keys/garbage"
mkdir -p "$QMESH_CONFIG_DIR"
echo '{"bootstrap": ["not-an-endpoint"]}' >"$QMESH_CONFIG_DIR/config.json"
rm -f "$tmp/spawned"
out="$(timeout 60 "$worker" --model "$model" --llama-server "$tmp/fake-llama-server" --identity "$tmp/keys/w" 2>&1)"; rc=$?
check "bad bootstrap list in config.json: non-zero before the spawn" test "$rc" -ne 0 -a "$rc" -ne 124 -a ! -e "$tmp/spawned"
rm -f "$QMESH_CONFIG_DIR/config.json"

# The config file's errors name its path once.
echo '{"model": "x", "queue-capacity": "ten"}' >"$tmp/bad.json"
out="$("$worker" --config "$tmp/bad.json" 2>&1)"; rc=$?
check "bad config: exit 2 (got $rc)" test "$rc" -eq 2
check "bad config: path named once ($(grep -o 'bad.json' <<<"$out" | wc -l))" test "$(grep -o 'bad.json' <<<"$out" | wc -l)" -eq 1
# A config file without a model (as the Debian package ships /etc/qmesh/worker.json): one line
# naming the file to edit, exit 2.
echo '{"log-level": "info"}' >"$tmp/nomodel.json"
usage_error "config without a model" "$worker" --config "$tmp/nomodel.json"
check "config without a model: names the file ($err)" \
  grep -qF "qmesh-worker: no model given: set \"model\" in $tmp/nomodel.json (or pass --model FILE)" <<<"$err"
usage_error "no config and no model" "$worker"
check "no config and no model: says --model ($err)" grep -q 'no model given: pass --model FILE' <<<"$err"

# Key files: with umask 000, the directories made for the key are 0700 and the key 0600; a key
# others can read is refused with its mode in octal.
(umask 000 && "$cli" keygen --identity "$tmp/h2/.config/qmesh/identity" >/dev/null 2>&1)
check "keygen under umask 000: new directories 0700" test "$(stat -c %a "$tmp/h2" "$tmp/h2/.config" "$tmp/h2/.config/qmesh" | sort -u)" = 700
check "keygen under umask 000: key 0600" test "$(stat -c %a "$tmp/h2/.config/qmesh/identity")" = 600
chmod 644 "$tmp/h2/.config/qmesh/identity"
out="$("$cli" id --identity "$tmp/h2/.config/qmesh/identity" 2>&1)"; rc=$?
check "id of a readable key: non-zero, mode in octal" test "$rc" -ne 0 -a -n "$(grep -F '(mode 0644)' <<<"$out")"

finish
