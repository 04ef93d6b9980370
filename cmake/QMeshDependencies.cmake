# Every dependency comes from Debian 12 packages (scripts/setup.sh installs them).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
# Prometheus metrics (src/net/metrics): Debian's prometheus-cpp-dev; only its core library is linked.
find_package(prometheus-cpp CONFIG REQUIRED)
if(QMESH_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
