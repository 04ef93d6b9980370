#!/usr/bin/env bash
# libqmesh-client as a user gets it: `cmake --install` into a temporary prefix, the examples built
# against the installed package (find_package and pkg-config, shared and static library), then run
# against a live mesh on loopback (a DHT bootstrap node and one qmesh-worker with the tiny model).
# Also checks the rest of the install: executables, docs, the worker's systemd unit and config.
#   usage: install_test.sh BUILD_DIR SOURCE_DIR QMESH_CLI QMESH_WORKER TINY_MODEL
set -uo pipefail
build="$1"; src="$2"; cli="$3"; worker="$4"; model="$5"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QMESH_CONFIG_DIR="$tmp/cfg"  # nothing reads or writes ~/.config/qmesh
unset QMESH_BOOTSTRAP
prefix="$tmp/prefix"
cmake="${CMAKE:-cmake}"

# ---- install ----
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; rc=$?
check "cmake --install succeeds" test "$rc" -eq 0
[ "$rc" -eq 0 ] || tail -n 5 "$tmp/install.log"
for f in include/qmesh/client.h include/qmesh/client.hpp lib/libqmesh-client.a lib/libqmesh-client.so \
  lib/cmake/qmesh/qmeshConfig.cmake lib/cmake/qmesh/qmeshConfigVersion.cmake lib/cmake/qmesh/qmeshTargets.cmake \
  lib/pkgconfig/qmesh-client.pc; do
  check "installed $f" test -e "$prefix/$f"
done
# The executables, the docs, the worker's systemd unit and config file (packaging/CMakeLists.txt).
for f in bin/qmesh-cli bin/qmesh-worker share/doc/qmesh/user-guide.md share/doc/qmesh/README.md share/doc/qmesh/LICENSE \
  share/doc/qmesh/examples/worker.json share/doc/qmesh/examples/ask.c share/doc/qmesh-worker/copyright \
  lib/systemd/system/qmesh-worker.service etc/qmesh/worker.json; do
  check "installed $f" test -e "$prefix/$f"
done
unit="$prefix/lib/systemd/system/qmesh-worker.service"
check "the unit runs the installed worker on the installed config" \
  grep -qxF "ExecStart=$prefix/bin/qmesh-worker --config $prefix/etc/qmesh/worker.json" "$unit"
if command -v systemd-analyze >/dev/null; then
  out="$(systemd-analyze verify "$unit" 2>&1)"; rc=$?
  check "systemd-analyze verify of the installed unit is clean${out:+: $out}" test "$rc" -eq 0 -a -z "$out"
fi
out="$("$prefix/bin/qmesh-worker" --config "$prefix/etc/qmesh/worker.json" 2>&1)"; rc=$?
check "the installed worker on the installed config: exit 2, one line naming the file ($out)" \
  test "$rc" -eq 2 -a "$out" = "qmesh-worker: no model given: set \"model\" in $prefix/etc/qmesh/worker.json (or pass --model FILE)"
check "the installed qmesh-cli runs" "$prefix/bin/qmesh-cli" --version
echo '{"model": "/srv/edited.gguf"}' >"$prefix/etc/qmesh/worker.json"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install2.log" 2>&1
check "a second install keeps the edited worker.json" grep -q edited.gguf "$prefix/etc/qmesh/worker.json"
check "only the public headers are installed" test "$(find "$prefix/include" -type f | wc -l)" -eq 2
check "the public headers include no internal header" bash -c "! grep -E '#include \"(core|net)/' '$prefix'/include/qmesh/*"
soname="$(objdump -p "$prefix/lib/libqmesh-client.so" | awk '/SONAME/ {print $2}')"
check "the shared library has a versioned soname ($soname)" bash -c "[[ '$soname' == libqmesh-client.so.* && -e '$prefix/lib/$soname' ]]"
exports="$(nm -D -C --defined-only "$prefix/lib/libqmesh-client.so")"
check "the shared library exports the C ABI" grep -q ' T qmesh_ask_start$' <<<"$exports"
check "the shared library exports the C++ API" grep -q 'qmesh::Client::ask(' <<<"$exports"
check "the shared library hides the internals" bash -c "! grep -qE 'qmesh::(core|net)::|spdlog::|nlohmann::' <<<\"\$1\"" _ "$exports"
check "the static library holds core and net" bash -c "ar t '$prefix/lib/libqmesh-client.a' | grep -q '^peer_service.cpp.o$'"

# ---- build the examples: CMake package ----
if "$cmake" -S "$src/examples" -B "$tmp/examples" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="-Wall -Wextra -pedantic -Werror" -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" \
  >"$tmp/ex-configure.log" 2>&1; then
  ok "find_package(qmesh) against the installed prefix"
else
  bad "find_package(qmesh) against the installed prefix"; tail -n 20 "$tmp/ex-configure.log"
fi
if "$cmake" --build "$tmp/examples" -j 2 >"$tmp/ex-build.log" 2>&1; then
  ok "examples build (C++, C99 on the shared library, C99 on the static library)"
else
  bad "examples build"; grep -E -A3 'error|warning' "$tmp/ex-build.log" | head -n 30
fi

# ---- build ask.c with pkg-config ----
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
check "pkg-config knows qmesh-client" test "$(pkg-config --modversion qmesh-client 2>/dev/null)" != ""
# shellcheck disable=SC2046
if cc -std=c99 -Wall -Wextra -pedantic -Werror "$src/examples/ask.c" -o "$tmp/ask_c_pc" \
  $(pkg-config --cflags --libs qmesh-client) -Wl,-rpath,"$prefix/lib" >"$tmp/pc-build.log" 2>&1; then
  ok "cc ask.c \$(pkg-config --cflags --libs qmesh-client)"
else
  bad "cc ask.c \$(pkg-config --cflags --libs qmesh-client)"; head -n 20 "$tmp/pc-build.log"
fi

# ---- errors before any mesh: bad options, nothing listening ----
free_port=$((47600 + RANDOM % 50))
port=$((free_port + 50))
out="$("$tmp/examples/ask_c" -b not-an-address "hi" 2>&1)"; rc=$?
check "C: a bad bootstrap exits 1" test "$rc" -eq 1
check "C: a bad bootstrap reports QMESH_ERR_CONFIG ($out)" grep -q '^error: config (7): bootstrap not-an-address' <<<"$out"
out="$("$tmp/examples/ask_c" -b "127.0.0.1:$free_port" "hi" 2>&1)"; rc=$?
check "C: an unreachable bootstrap exits 1" test "$rc" -eq 1
check "C: an unreachable bootstrap reports QMESH_ERR_NETWORK ($out)" grep -q "^error: network (6): .*127.0.0.1:$free_port" <<<"$out"
out="$("$tmp/examples/ask_cpp" -b "127.0.0.1:$free_port" "hi" 2>&1)"; rc=$?
check "C++: an unreachable bootstrap: exit 1, kind network" test "$rc" -eq 1 -a -n "$(grep '^error: network: ' <<<"$out")"

# ---- a live mesh ----
"$cli" dht bootstrap --listen "127.0.0.1:$port" >"$tmp/boot.log" 2>&1 &
pids+=($!)
check "bootstrap node listens" wait_line "$tmp/boot.log" "listening on 127.0.0.1:$port" 10
"$worker" --model "$model" --threads 1 --bootstrap "127.0.0.1:$port" --identity "$tmp/w.key" \
  --status-interval 2 >"$tmp/worker.log" 2>&1 &
pids+=($!)
listed=0
for _ in $(seq 1 60); do
  if "$cli" workers --bootstrap "127.0.0.1:$port" --json 2>/dev/null | grep -q '"available":true'; then listed=1; break; fi
  sleep 1
done
if [ "$listed" -eq 1 ]; then ok "the worker is listed"; else bad "the worker is listed"; tail -n 20 "$tmp/worker.log"; fi
wid="$("$cli" id --identity "$tmp/w.key" 2>/dev/null)"

# Runs one example: exit 0, a non-empty answer on stdout, the stats naming the worker on stderr.
run_example() {
  local name="$1"; shift
  "$@" -b "127.0.0.1:$port" -n 16 "Tell me a story" >"$tmp/$name.out" 2>"$tmp/$name.err"; local rc=$?
  check "$name: exits 0" test "$rc" -eq 0
  [ "$rc" -eq 0 ] || tail -n 5 "$tmp/$name.err"
  check "$name: streamed a non-empty answer" test -n "$(tr -d '[:space:]' <"$tmp/$name.out")"
  check "$name: listed the worker" grep -q '^1 worker(s)' "$tmp/$name.err"
  check "$name: stats name the worker" grep -q "^worker ${wid:0:16}: [1-9][0-9]* tokens" "$tmp/$name.err"
}
run_example "C++ (find_package, shared)" "$tmp/examples/ask_cpp"
run_example "C (find_package, shared)" "$tmp/examples/ask_c"
run_example "C pull API (find_package, shared)" "$tmp/examples/ask_c" --pull
run_example "C (find_package, static)" "$tmp/examples/ask_c_static"
run_example "C (pkg-config)" "$tmp/ask_c_pc"
# $QMESH_BOOTSTRAP (read by the examples) with a host name: libqmesh-client resolves it.
for ex in ask_cpp ask_c; do
  QMESH_BOOTSTRAP="localhost:$port" "$tmp/examples/$ex" -n 8 "Hello" >"$tmp/env-$ex.out" 2>"$tmp/env-$ex.err"; rc=$?
  check "$ex with QMESH_BOOTSTRAP=localhost:$port: exit 0 and an answer" \
    test "$rc" -eq 0 -a -n "$(tr -d '[:space:]' <"$tmp/env-$ex.out")"
  [ "$rc" -eq 0 ] || tail -n 3 "$tmp/env-$ex.err"
done

# The C ABI's corners (tests/integration/capi_test.c), built like a user would.
# shellcheck disable=SC2046
if cc -std=c99 -Wall -Wextra -pedantic -Werror "$(dirname "${BASH_SOURCE[0]}")/capi_test.c" -o "$tmp/capi_test" \
  $(pkg-config --cflags --libs qmesh-client) -Wl,-rpath,"$prefix/lib" >"$tmp/capi-build.log" 2>&1; then
  "$tmp/capi_test" "127.0.0.1:$port" >"$tmp/capi.log" 2>&1; rc=$?
  sed 's/^/  capi_test: /' "$tmp/capi.log"
  check "C ABI test (capi_test.c) passes" test "$rc" -eq 0
else
  bad "capi_test.c builds"; head -n 20 "$tmp/capi-build.log"
fi

finish
