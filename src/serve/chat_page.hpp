// The chat page (src/serve/chat.html), compiled into the binary: CMake turns the file into
// chat_page.cpp at build time (src/serve/embed_file.cmake).
#pragma once

#include <string_view>

namespace qmesh::serve {
std::string_view chat_page();
}
