# The checks inside the booted container, sourced by deb_install_test.sh (which defines inside, ours,
# lib, soname, sanitize, root and tmp).

prop() { inside systemctl show -p "$1" --value qmesh-worker.service; }
# Waits until the unit's property $1 is $2, up to $3 seconds.
wait_prop() { local i; for ((i = 0; i < $3 * 10; i++)); do [ "$(prop "$1")" = "$2" ] && return 0; sleep 0.1; done; return 1; }
journal() { inside journalctl --no-pager -o cat _SYSTEMD_UNIT=qmesh-worker.service; }
# Waits until the service's journal has a line matching $1, up to $2 seconds.
wait_journal() { local i; for ((i = 0; i < $2 * 10; i++)); do journal | grep -q "$1" && return 0; sleep 0.1; done; return 1; }
# Waits until qmesh-cli lists an available worker at bootstrap $1, up to $2 seconds.
wait_listed() {
  local i
  for ((i = 0; i < $2; i++)); do
    inside qmesh-cli workers --bootstrap "$1" --json 2>/dev/null | grep -q '"available":true' && return 0
    sleep 1
  done
  return 1
}

install_packages() {
  inside sh -c 'dpkg -i /root/debs/*.deb' >"$tmp/dpkg-i.log" 2>&1; rc=$?
  check "dpkg -i of the four packages" test "$rc" -eq 0
  [ "$rc" -eq 0 ] || tail -n 20 "$tmp/dpkg-i.log"
  for p in "${ours[@]}"; do
    check "$p is installed" test "$(inside dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed"
  done
  for f in /usr/bin/qmesh-worker /usr/bin/qmesh-cli /usr/lib/systemd/system/qmesh-worker.service /etc/qmesh/worker.json \
    /usr/share/doc/qmesh/user-guide.md /usr/share/doc/qmesh-worker/copyright /usr/include/qmesh/client.h; do
    check "installed $f" inside test -e "$f"
  done
  check "ldconfig knows $soname" grep -q "$soname" <<<"$(inside ldconfig -p)"
  out="$(inside qmesh-worker --version 2>&1)"
  check "qmesh-worker --version finds /usr/local/bin/llama-server on PATH" \
    grep -q '^llama-server: .*(/usr/local/bin/llama-server, from PATH)' <<<"$out"
  check "the unit is neither enabled nor started by the install" \
    test "$(inside systemctl is-enabled qmesh-worker.service)/$(prop ActiveState)" = disabled/inactive
  out="$(inside systemd-analyze verify qmesh-worker.service 2>&1)"; rc=$?
  check "systemd-analyze verify qmesh-worker.service is clean${out:+: $out}" test "$rc" -eq 0 -a -z "$out"
  score="$(inside systemd-analyze security --no-pager qmesh-worker.service 2>&1 |
    sed -n 's/.*Overall exposure level for qmesh-worker.service: \([0-9.]*\).*/\1/p')"
  check "systemd-analyze security: exposure ${score:-?} (at most 2.0 of 10)" \
    awk -v s="$score" 'BEGIN { exit !(s != "" && s + 0 <= 2.0) }'
  if [ "$sanitize" = 1 ]; then
    # LeakSanitizer stops the threads with ptrace, which the unit's system call filter forbids: a
    # sanitizer build of the worker runs there without it (the only drop-in of this test).
    mkdir -p "$root/etc/systemd/system/qmesh-worker.service.d"
    printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' >"$root/etc/systemd/system/qmesh-worker.service.d/asan.conf"
    inside systemctl daemon-reload
  fi
}

default_config_fails() {
  local want='qmesh-worker: no model given: set "model" in /etc/qmesh/worker.json (or pass --model FILE)'
  inside systemctl start qmesh-worker.service
  wait_prop ActiveState failed 30
  check "the packaged config: the service fails without a restart ($(prop ActiveState)/$(prop SubState), $(prop NRestarts) restarts)" \
    test "$(prop ActiveState)/$(prop SubState)/$(prop NRestarts)" = failed/failed/0
  check "the packaged config: exit status 2" test "$(prop ExecMainStatus)" = 2
  wait_journal 'no model given' 10
  out="$(journal)"
  check "the packaged config: one line in the journal ($out)" test "$out" = "$want"
  inside systemctl reset-failed qmesh-worker.service
}

# The worker's process as the unit runs it: its user, privileges, children and file system. Sets
# child (llama-server's pid).
check_sandbox() {
  local pid="$1" status uid err got
  status="$(inside cat "/proc/$pid/status")"
  uid="$(awk '/^Uid:/ {print $2}' <<<"$status")"
  check "the worker runs as a dynamic user (uid $uid)" test "${uid:-0}" -ge 61184 -a "${uid:-0}" -le 65519
  got="$(awk '$1 ~ /^(NoNewPrivs|Seccomp|CapEff|CapBnd):$/ {printf "%s%s ", $1, $2}' <<<"$status")"
  check "the worker: no new privileges, a seccomp filter, no capabilities ($got)" \
    test "$got" = "CapEff:0000000000000000 CapBnd:0000000000000000 NoNewPrivs:1 Seccomp:2 "
  child="$(inside sh -c "cat /proc/$pid/task/*/children" | tr ' ' '\n' | grep . | head -n 1)"
  check "llama-server is the worker's child" test "$(inside cat "/proc/${child:-0}/comm" 2>/dev/null)" = llama-server
  check "the key file is in the state directory (mode 0600, the dynamic user's)" \
    test "$(inside stat -c '%a %u' /var/lib/private/qmesh-worker/identity)" = "600 $uid"
  for d in /etc/qmesh /usr/local/bin /root; do
    err="$(inside nsenter -t "$pid" -m touch "$d/probe" 2>&1)"
    check "the worker's view of $d is read-only ($err)" grep -q 'Read-only file system' <<<"$err"
  done
  check "the worker's state directory is writable" \
    inside nsenter -t "$pid" -m sh -c 'touch /var/lib/qmesh-worker/probe && rm /var/lib/qmesh-worker/probe'
  err="$(inside nsenter -t "$pid" -m -- setpriv --reuid "$uid" --regid "$uid" --clear-groups ls -d /proc/self/ /proc/1/ 2>/dev/null)"
  check "as the worker's user, /proc shows its own processes, not PID 1 (ProtectProc=invisible: $err)" \
    test "$err" = /proc/self/
}

# An ask through qmesh-cli and one through the C program built against libqmesh-client-dev.
check_asks() {
  local boot="$1" wid="$2" name="$3"
  inside qmesh-cli ask --bootstrap "$boot" --max-tokens 16 --json "Tell me a story" >"$tmp/ask.json" 2>"$tmp/ask.err"; rc=$?
  check "$name: qmesh-cli ask answers from the packaged worker (exit $rc)" bash -c \
    "jq -e --arg w '$wid' '(.text | length) > 0 and .tokens > 0 and .worker == \$w' '$tmp/ask.json' >/dev/null"
  [ "$rc" -eq 0 ] || tail -n 5 "$tmp/ask.err"
  inside qmesh-ask-c -b "$boot" -n 16 "Tell me a story" >"$tmp/ask_c.out" 2>"$tmp/ask_c.err"; rc=$?
  check "$name: a C program on $lib (pkg-config of -dev) answers (exit $rc)" \
    test "$rc" -eq 0 -a -n "$(tr -d '[:space:]' <"$tmp/ask_c.out")" -a -n "$(grep "^worker ${wid:0:16}: [1-9][0-9]* tokens" "$tmp/ask_c.err")"
}

serve_from_the_package() {
  printf '{\n  "model": "/srv/qmesh/tiny.gguf",\n  "threads": 1,\n  "status-interval": 2\n}\n' >"$root/etc/qmesh/worker.json"
  out="$(inside systemctl enable --now qmesh-worker.service 2>&1)"; rc=$?
  check "systemctl enable --now qmesh-worker (exit $rc)" test "$rc" -eq 0
  wait_journal 'runs one on port [0-9]*' 60
  port="$(journal | sed -n 's/.*this worker runs one on port \([0-9]*\).*/\1/p' | tail -n 1)"
  check "with no network around, the worker runs a DHT node (port ${port:-?})" test -n "$port"
  if wait_listed "127.0.0.1:${port:-1}" 90; then ok "the worker is listed available"; else
    bad "the worker is listed available"; journal | tail -n 20; return; fi
  pid="$(prop MainPID)"
  check_sandbox "$pid"
  wid="$(inside qmesh-cli id --identity /var/lib/private/qmesh-worker/identity 2>/dev/null)"
  check_asks "127.0.0.1:$port" "$wid" "first start"

  # A crash: systemd starts it again (Restart=on-failure); llama-server went with it.
  inside sh -c "kill -9 $pid"
  wait_prop NRestarts 1 30
  wait_prop ActiveState active 30
  check "killed, the worker is started again ($(prop NRestarts) restart, pid $(prop MainPID))" \
    test "$(prop NRestarts)" = 1 -a "$(prop MainPID)" != "$pid" -a "$(prop MainPID)" != 0
  check "its llama-server went with it" inside test ! -e "/proc/$child"
  if wait_listed "127.0.0.1:$port" 90; then check_asks "127.0.0.1:$port" "$wid" "after the restart"; else
    bad "listed again after the restart"; fi

  inside systemctl stop qmesh-worker.service
  check "systemctl stop: a clean exit ($(prop Result), status $(prop ExecMainStatus))" \
    test "$(prop ActiveState)/$(prop Result)/$(prop ExecMainStatus)" = inactive/success/0
  # Running again (dpkg -r must stop it), stopped soon after the start: while llama-server loads
  # (a sanitizer build) or just after.
  inside systemctl start qmesh-worker.service
  wait_prop SubState running 30
}

remove_and_purge() {
  local files left cmake_dir got
  # Everything the packages put there, other than folders.
  files="$(inside sh -c 'for f in $(dpkg -L "$@"); do [ -d "$f" ] && [ ! -L "$f" ] || echo "$f"; done' _ "${ours[@]}")"
  cmake_dir="$(dirname "$(grep '/qmeshConfig.cmake$' <<<"$files")")"
  inside dpkg -r "${ours[@]}" >"$tmp/dpkg-r.log" 2>&1; rc=$?
  check "dpkg -r of the four packages" test "$rc" -eq 0
  [ "$rc" -eq 0 ] || tail -n 20 "$tmp/dpkg-r.log"
  got="$(prop ActiveState)/$(prop LoadState)"
  check "dpkg -r: the service was stopped and systemd forgot it ($got)" test "$got" = inactive/not-found
  left="$(inside sh -c 'cat /proc/[0-9]*/comm' 2>/dev/null | grep -xE 'qmesh-worker|llama-server')"
  check "dpkg -r: no worker or llama-server process left ($left)" test -z "$left"
  check "dpkg -r: not enabled any more" inside test ! -e /etc/systemd/system/multi-user.target.wants/qmesh-worker.service
  check "dpkg -r: the binaries are gone" inside test ! -e /usr/bin/qmesh-worker -a ! -e /usr/bin/qmesh-cli
  check "dpkg -r: the administrator's worker.json is kept" inside grep -q tiny.gguf /etc/qmesh/worker.json
  check "dpkg -r: qmesh-worker keeps its config files only" \
    test "$(inside dpkg-query -W -f='${Status}' qmesh-worker)" = "deinstall ok config-files"

  inside dpkg -P "${ours[@]}" >"$tmp/dpkg-p.log" 2>&1; rc=$?
  check "dpkg -P of the four packages" test "$rc" -eq 0
  [ "$rc" -eq 0 ] || tail -n 20 "$tmp/dpkg-p.log"
  for p in "${ours[@]}"; do
    s="$(inside dpkg-query -W -f='${Status}' "$p" 2>/dev/null)"
    check "dpkg -P: $p is not known any more (${s:-none})" test -z "$s" -o "$s" = "unknown ok not-installed"
  done
  # shellcheck disable=SC2086
  left="$(inside sh -c 'for f; do if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done' _ $files)"
  check "dpkg -P: none of the $(wc -l <<<"$files") files is left ($left)" test -z "$left"
  for d in /etc/qmesh /var/lib/private/qmesh-worker /var/lib/qmesh-worker /usr/share/doc/qmesh /usr/include/qmesh "$cmake_dir"; do
    check "dpkg -P: $d is gone" inside test ! -e "$d" -a ! -L "$d"
  done
  check "dpkg -P: ldconfig forgot $soname" bash -c "! grep -q '$soname' <<<\"\$1\"" _ "$(inside ldconfig -p)"
}
