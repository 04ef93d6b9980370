#!/usr/bin/env bash
# Private meshes with the real binaries on loopback (docs/user-guide.md, "Private meshes"): an
# owner creates a mesh, a member joins it with the invite token (on stdin), a qmesh-worker serves
# only that mesh and only the member's key. The member lists and asks the worker; an outsider with
# the bootstrap address but no token finds nothing (public topic or any topic it guesses) and
# cannot open a session even with the worker's address and key (the worker drops its HELLO at
# mac1 and says so); a second member whose key is not on the allowlist is refused. Bad tokens are
# one line and exit 2. No process's log (at trace level) holds the token, the secret or the PSK.
#   usage: private_mesh_test.sh QMESH_WORKER QMESH_CLI TINY_MODEL
set -uo pipefail
worker="$1"; cli="$2"; model="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
port=$((47500 + RANDOM % 200)); wport=$((port + 300))
boot="127.0.0.1:$port"
owner="$tmp/owner"; member="$tmp/member"; stranger="$tmp/stranger"; outsider="$tmp/outsider"
as() { local dir="$1"; shift; QMESH_CONFIG_DIR="$dir" "$@"; }

"$cli" dht bootstrap --listen "$boot" --log-level trace >"$tmp/boot.log" 2>&1 &
pids+=($!)
sleep 0.5

# The owner makes the mesh; its token file is the owner's alone.
as "$owner" "$cli" mesh create lab --bootstrap "$boot" 2>"$tmp/create.err"; rc=$?
check "mesh create exits 0" test "$rc" -eq 0
check "the mesh file is mode 0600 in a 0700 folder" \
  test "$(stat -c %a "$owner/meshes/lab")" = 600 -a "$(stat -c %a "$owner/meshes")" = 700
token="$(as "$owner" "$cli" mesh invite lab)"
check "mesh invite prints one qmesh-mesh1- token" grep -qx 'qmesh-mesh1-[A-Za-z0-9_-]*' <<<"$token"
check "mesh invite with no name picks the only mesh" test "$(as "$owner" "$cli" mesh invite)" = "$token"
# The secret as hex, and the PSK derived from it, to look for them in the logs at the end.
read -r secret psk < <(python3 - "$token" <<'PY'
import base64, hashlib, sys
b = sys.argv[1][len("qmesh-mesh1-"):]
body = base64.urlsafe_b64decode(b + "=" * (-len(b) % 4))
s = body[1:33]
print(s.hex(), hashlib.blake2b(b"qmesh mesh psk v1", key=s, digest_size=32).digest().hex())
PY
)
check "the token holds a 32-byte secret" test "${#secret}" -eq 64 -a "${#psk}" -eq 64

# Two members join (stdin and a file); each has its own identity.
as "$member" "$cli" mesh join - <<<"$token" 2>"$tmp/join.err"; rc=$?
check "mesh join - (stdin) exits 0" test "$rc" -eq 0
printf '%s\n' "$token" >"$tmp/token.txt"
as "$stranger" "$cli" mesh join --token-file "$tmp/token.txt" 2>>"$tmp/join.err"; rc=$?
check "mesh join --token-file exits 0" test "$rc" -eq 0
rm -f "$tmp/token.txt"
member_key="$(as "$member" "$cli" keygen 2>/dev/null)"
as "$stranger" "$cli" keygen >/dev/null 2>&1
check "mesh list shows the mesh and its bootstrap" \
  test "$(as "$member" "$cli" mesh list --json | jq -r '.meshes[0].name + " " + .meshes[0].bootstrap[0]')" = "lab $boot"

# Bad tokens: one line on stderr, exit 2, nothing stored.
for bad_token in "garbage" "${token:0:30}" "${token%?}" "${token}AA" "qmesh-mesh1-${token:13}" ""; do
  out="$(as "$outsider" "$cli" mesh join "$bad_token" 2>&1)"; rc=$?
  check "a bad token ('${bad_token:0:16}...') exits 2 with one line" test "$rc" -eq 2 -a "$(wc -l <<<"$out")" -eq 1
done
check "no bad token was stored" test ! -e "$outsider/meshes/lab"

# The worker: the owner's config dir (its mesh), no --bootstrap (the token's), member only.
as "$owner" "$worker" --model "$model" --mesh lab --listen "127.0.0.1:$wport" --identity "$tmp/w.key" \
  --allow-client "$member_key" --status-interval 2 --log-level trace >"$tmp/w.log" 2>&1 &
pids+=($!)
check "the worker joined the private mesh" wait_line "$tmp/w.log" "of private mesh 'lab'" 60
wkey="$(grep -o 'joined the network as [0-9a-f]*' "$tmp/w.log" | awk '{print $5}')"

# The member finds and asks it.
listed() { as "$member" "$cli" workers --mesh lab --json --log-level trace >"$tmp/workers.json" 2>>"$tmp/member.log" &&
  [ "$(jq '[.workers[] | select(.available)] | length' "$tmp/workers.json")" -eq 1 ]; }
n=0; until listed || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
check "workers --mesh lists the worker" listed
check "... under the worker's key" test "$(jq -r '.workers[0].id' "$tmp/workers.json")" = "$wkey"
as "$member" "$cli" ask --mesh lab --max-tokens 8 --json --log-level trace "Hello mesh" >"$tmp/ask.json" 2>>"$tmp/member.log"; rc=$?
check "ask --mesh exits 0 with 8 tokens from the worker" \
  jq -e >/dev/null --arg w "$wkey" ".tokens == 8 and .worker == \$w" "$tmp/ask.json"
check "... (exit code $rc)" test "$rc" -eq 0
# The worker shares its model in the mesh: holder records under the mesh's keyed topic.
root="$(jq -r '.workers[0].model_hash' "$tmp/workers.json")"
as "$member" "$cli" model get --mesh lab "$root" --out "$tmp/got" --timeout 20 --log-level trace \
  >/dev/null 2>>"$tmp/member.log"; rc=$?
check "model get --mesh fetches the worker's model (exit $rc)" test "$rc" -eq 0
check "... the same bytes" cmp -s "$model" "$(ls "$tmp"/got/*.gguf 2>/dev/null | head -1)"
as "$member" "$cli" net hello --mesh lab --to "127.0.0.1:$wport" --key "$wkey" --json >"$tmp/hello-member.json" 2>>"$tmp/member.log"; rc=$?
check "a member's handshake straight to the worker's address opens a session" test "$rc" -eq 0

# The outsider knows the bootstrap node only: no worker on the public topic, nor on guesses.
for topic in qmesh-inference lab "lab/qmesh-inference" "$wkey"; do
  out="$(as "$outsider" "$cli" workers --bootstrap "$boot" --topic "$topic" --json --log-level trace 2>>"$tmp/outsider.log")"
  check "the outsider finds no worker under topic '${topic:0:20}'" test "$(jq '.workers | length' <<<"$out")" -eq 0
done
out="$(as "$outsider" "$cli" ask --bootstrap "$boot" --max-tokens 4 "hi" 2>&1)"; rc=$?
check "the outsider's ask finds no worker (exit 3)" test "$rc" -eq 3
as "$outsider" "$cli" model get "$root" --bootstrap "$boot" --out "$tmp/stolen" --timeout 3 --log-level trace \
  >/dev/null 2>>"$tmp/outsider.log"; rc=$?
check "the outsider finds no holder of the mesh's model (exit $rc)" test "$rc" -ne 0 -a -z "$(ls "$tmp"/stolen/*.gguf 2>/dev/null)"
# ... nor opens a session with the worker's address and key: its HELLO is dropped before any work.
out="$(as "$outsider" "$cli" net hello --to "127.0.0.1:$wport" --key "$wkey" --timeout 3 --log-level trace 2>&1)"; rc=$?
echo "$out" >>"$tmp/outsider.log"
check "the outsider's handshake to the worker's address gets no answer (exit 6)" test "$rc" -eq 6
check "the worker logged the dropped HELLO" wait_line "$tmp/w.log" "dropped [0-9]* HELLO(s) whose mac1 fits no mesh" 15
check "the worker is still running" kill -0 "${pids[1]}"

# A member whose key is not on the allowlist: refused with a clear error.
out="$(as "$stranger" "$cli" ask --mesh lab --max-tokens 4 --log-level trace "hi" 2>"$tmp/stranger.log")"; rc=$?
check "a member not on the allowlist is refused (exit 6, every worker failed)" test "$rc" -eq 6
check "... saying why (allowlist)" grep -q 'allowlist' "$tmp/stranger.log"
check "the worker logged the refusal" wait_line "$tmp/w.log" "is not on the allowlist: refused" 10

# Leave: the mesh is gone for that member.
as "$stranger" "$cli" mesh leave lab 2>/dev/null
out="$(as "$stranger" "$cli" ask --mesh lab "hi" 2>&1)"; rc=$?
check "after mesh leave, --mesh lab is a usage error (exit 2)" test "$rc" -eq 2

# Nothing secret in any log, at trace level.
kill -TERM "${pids[1]}" 2>/dev/null; sleep 1
for f in "$tmp"/*.log "$tmp"/*.err; do
  check "no token, secret or PSK in $(basename "$f")" \
    bash -c "! grep -qiF -e '${token#qmesh-mesh1-}' -e '$secret' -e '$psk' '$f'"
done
finish
