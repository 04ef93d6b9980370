# Warnings and sanitizers for every QMesh target (third-party headers are system includes).
add_library(qmesh_flags INTERFACE)
target_compile_options(qmesh_flags INTERFACE -Wall -Wextra -Wshadow=local -Wnon-virtual-dtor)
if(QMESH_SANITIZE)
  target_compile_options(qmesh_flags INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                         -fno-sanitize-recover=undefined)
  target_link_options(qmesh_flags INTERFACE -fsanitize=address,undefined)
  # GCC 12 reports false maybe-uninitialized warnings inside libstdc++ (std::function, <regex>)
  # once ASan instruments it.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(qmesh_flags INTERFACE -Wno-maybe-uninitialized)
  endif()
endif()
target_compile_definitions(qmesh_flags INTERFACE QMESH_VERSION="${PROJECT_VERSION}")
