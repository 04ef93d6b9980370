// Text from files and the network, made safe to print on one terminal line: the one escaper for
// names, messages and metadata that a model file or a peer wrote (escape sequences, CR and NUL
// could otherwise rewrite what the terminal shows).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace qmesh::core {

// Valid UTF-8 without control characters (C0, DEL, C1): safe to print on a terminal line.
bool valid_utf8_printable(std::string_view s);

// Valid printable UTF-8 (no C0, DEL or C1 controls) comes back unchanged; otherwise every control
// byte and every non-ASCII byte becomes '?'.
std::string printable_line(std::string_view s);

// The byte offset of the first byte that does not start a well-formed UTF-8 sequence (overlong
// forms, surrogates and code points past U+10FFFF included); nullopt when all of `s` is UTF-8.
std::optional<std::size_t> invalid_utf8_offset(std::string_view s);

}  // namespace qmesh::core
