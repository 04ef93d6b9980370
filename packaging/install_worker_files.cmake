# Runs at install time (install(CODE) in packaging/CMakeLists.txt) for the worker component: the
# systemd unit and the default config file, with the paths of the prefix installed to rather than
# the configured one (cpack installs to /usr, `cmake --install --prefix P` to P).
# In: QMESH_PACKAGING_SOURCE_DIR, QMESH_PACKAGING_BINARY_DIR, QMESH_BINDIR, QMESH_DOCDIR (relative
# to the prefix unless absolute).
foreach(_qmesh_dir BINDIR DOCDIR)
  if(IS_ABSOLUTE "${QMESH_${_qmesh_dir}}")
    set(QMESH_FULL_${_qmesh_dir} "${QMESH_${_qmesh_dir}}")
  else()
    set(QMESH_FULL_${_qmesh_dir} "${CMAKE_INSTALL_PREFIX}/${QMESH_${_qmesh_dir}}")
  endif()
endforeach()
# As GNUInstallDirs: the prefix /usr keeps its configuration in /etc.
if(CMAKE_INSTALL_PREFIX MATCHES "^/usr/?$")
  set(_qmesh_etc /etc)
else()
  set(_qmesh_etc "${CMAKE_INSTALL_PREFIX}/etc")
endif()
set(QMESH_WORKER_EXE "${QMESH_FULL_BINDIR}/qmesh-worker")
set(QMESH_WORKER_CONFIG "${_qmesh_etc}/qmesh/worker.json")
set(QMESH_DOCDIR "${QMESH_FULL_DOCDIR}")

# One folder per destination: installs to several prefixes at once do not share the file.
string(MD5 _qmesh_key "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
set(_qmesh_unit "${QMESH_PACKAGING_BINARY_DIR}/unit-${_qmesh_key}/qmesh-worker.service")
configure_file("${QMESH_PACKAGING_SOURCE_DIR}/qmesh-worker.service.in" "${_qmesh_unit}" @ONLY)
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE FILES "${_qmesh_unit}")

# The config file is the administrator's once it exists: never overwritten by a later install.
if(EXISTS "$ENV{DESTDIR}${_qmesh_etc}/qmesh/worker.json")
  message(STATUS "Keeping: $ENV{DESTDIR}${_qmesh_etc}/qmesh/worker.json")
else()
  file(INSTALL DESTINATION "${_qmesh_etc}/qmesh" TYPE FILE FILES "${QMESH_PACKAGING_SOURCE_DIR}/worker.json")
endif()
