// ByteRing: stream bytes addressed by absolute stream offset, held in a power-of-two ring that
// grows on demand. Holds offsets [base, base + capacity); the owner advances base as bytes are
// acknowledged (send side) or read (receive side). Reads and writes are one or two memcpy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace qmesh::core::stream {

class ByteRing {
 public:
  std::uint64_t base() const { return base_; }
  std::size_t capacity() const { return cap_; }
  // Stores bytes at [offset, offset + size); offset >= base. Grows to hold them.
  void write_at(std::uint64_t offset, std::span<const std::uint8_t> bytes);
  // Copies [offset, offset + out.size()) out; the range must have been written and not dropped.
  void read_at(std::uint64_t offset, std::span<std::uint8_t> out) const;
  // Drops every byte below new_base.
  void advance(std::uint64_t new_base);
  void release();  // frees the storage (base is kept)

 private:
  void grow(std::size_t need);

  std::unique_ptr<std::uint8_t[]> buf_;
  std::size_t cap_ = 0;      // power of two, or 0
  std::uint64_t base_ = 0;
  std::uint64_t end_ = 0;    // highest offset written + 1 (what a grow must keep)
};

}  // namespace qmesh::core::stream
