#include "core/base/byte_reader.hpp"

namespace qmesh::core {

void ByteWriter::append(const void* p, std::size_t n) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  buf_.insert(buf_.end(), b, b + n);
}

}  // namespace qmesh::core
