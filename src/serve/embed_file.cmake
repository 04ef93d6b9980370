# cmake -DIN=file -DOUT=file.cpp -DNAMESPACE=ns -DFUNCTION=name -P embed_file.cmake
# Writes a C++ file whose function returns IN's bytes as a std::string_view.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE "${OUT}.tmp"
"// Generated from ${IN} by embed_file.cmake; do not edit.
#include <string_view>
namespace ${NAMESPACE} {
namespace {
const unsigned char kBytes[] = {${body}0};
}
std::string_view ${FUNCTION}() { return std::string_view(reinterpret_cast<const char*>(kBytes), ${bytes}); }
}  // namespace ${NAMESPACE}
")
file(RENAME "${OUT}.tmp" "${OUT}")
