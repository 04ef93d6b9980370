#include "core/stream/ring.hpp"

#include <algorithm>
#include <cstring>

namespace qmesh::core::stream {

void ByteRing::grow(std::size_t need) {
  std::size_t cap = std::max<std::size_t>(cap_, 4096);
  while (cap < need) cap *= 2;
  if (cap == cap_) return;
  auto fresh = std::make_unique<std::uint8_t[]>(cap);
  if (end_ > base_ && cap_ > 0) {
    // Re-home the live bytes: their positions depend on the capacity.
    for (std::uint64_t off = base_; off < end_;) {
      const std::size_t from = static_cast<std::size_t>(off & (cap_ - 1));
      const std::size_t to = static_cast<std::size_t>(off & (cap - 1));
      const std::size_t n = static_cast<std::size_t>(
          std::min<std::uint64_t>({end_ - off, cap_ - from, cap - to}));
      std::memcpy(fresh.get() + to, buf_.get() + from, n);
      off += n;
    }
  }
  buf_ = std::move(fresh);
  cap_ = cap;
}

void ByteRing::write_at(std::uint64_t offset, std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return;
  const std::uint64_t end = offset + bytes.size();
  if (end - base_ > cap_) grow(static_cast<std::size_t>(end - base_));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const std::size_t pos = static_cast<std::size_t>((offset + done) & (cap_ - 1));
    const std::size_t n = std::min(bytes.size() - done, cap_ - pos);
    std::memcpy(buf_.get() + pos, bytes.data() + done, n);
    done += n;
  }
  end_ = std::max(end_, end);
}

void ByteRing::read_at(std::uint64_t offset, std::span<std::uint8_t> out) const {
  std::size_t done = 0;
  while (done < out.size()) {
    const std::size_t pos = static_cast<std::size_t>((offset + done) & (cap_ - 1));
    const std::size_t n = std::min(out.size() - done, cap_ - pos);
    std::memcpy(out.data() + done, buf_.get() + pos, n);
    done += n;
  }
}

void ByteRing::advance(std::uint64_t new_base) {
  if (new_base <= base_) return;
  base_ = new_base;
  end_ = std::max(end_, base_);
}

void ByteRing::release() {
  buf_.reset();
  cap_ = 0;
  end_ = base_;
}

}  // namespace qmesh::core::stream
