// Bounded little-endian reader and writer over byte buffers. Every read checks what is left;
// a failed read latches the reader into a failed state instead of throwing.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace qmesh::core {

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

  bool ok() const { return ok_; }
  std::size_t offset() const { return pos_; }
  std::size_t remaining() const { return ok_ ? bytes_.size() - pos_ : 0; }
  std::size_t size() const { return bytes_.size(); }

  template <class T>
  bool read_le(T& out) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!take(sizeof(T))) return false;
    std::uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, bytes_.data() + pos_ - sizeof(T), sizeof(T));
    if constexpr (std::endian::native == std::endian::big) std::reverse(tmp, tmp + sizeof(T));
    std::memcpy(&out, tmp, sizeof(T));
    return true;
  }

  // A view of the next n bytes, or an empty span (and failed state) when fewer remain.
  std::span<const std::uint8_t> read_bytes(std::size_t n) {
    if (!take(n)) return {};
    return bytes_.subspan(pos_ - n, n);
  }

  // Fills a fixed-size array from the next N bytes; false (and failed state) when fewer remain.
  template <std::size_t N>
  bool read_array(std::array<std::uint8_t, N>& out) {
    if (!take(N)) return false;
    std::memcpy(out.data(), bytes_.data() + pos_ - N, N);
    return true;
  }

  bool skip(std::size_t n) { return take(n); }

  bool seek(std::size_t pos) {
    if (!ok_ || pos > bytes_.size()) return fail();
    pos_ = pos;
    return true;
  }

  bool fail() {
    ok_ = false;
    return false;
  }

 private:
  bool take(std::size_t n) {
    if (!ok_ || n > bytes_.size() - pos_) return fail();
    pos_ += n;
    return true;
  }

  std::span<const std::uint8_t> bytes_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

class ByteWriter {
 public:
  template <class T>
  void write_le(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    if constexpr (std::endian::native == std::endian::big) std::reverse(tmp, tmp + sizeof(T));
    append(tmp, sizeof(T));
  }
  void write_bytes(std::span<const std::uint8_t> b) { append(b.data(), b.size()); }
  void write_bytes(std::string_view s) { append(s.data(), s.size()); }
  void pad_to(std::size_t alignment, std::uint8_t fill = 0) {
    while (buf_.size() % alignment) buf_.push_back(fill);
  }
  std::vector<std::uint8_t>& bytes() { return buf_; }
  const std::vector<std::uint8_t>& bytes() const { return buf_; }

 private:
  // Out of line (base/byte_reader.cpp): inlined into callers, GCC 12 at -O3 reports false
  // stringop-overflow / array-bounds warnings on the vector growth.
  void append(const void* p, std::size_t n);

  std::vector<std::uint8_t> buf_;
};

}  // namespace qmesh::core
