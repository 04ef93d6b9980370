#include "core/mesh/request_reader.hpp"

#include <algorithm>

namespace qmesh::core::mesh {

RequestReader::State RequestReader::fail(std::string why) {
  state_ = State::Failed;
  error_ = std::move(why);
  release();
  return state_;
}

RequestReader::State RequestReader::feed(std::span<const std::uint8_t> bytes) {
  if (state_ == State::Failed || bytes.empty()) return state_;
  if (state_ == State::Complete) return fail("more than one REQUEST on the stream");
  while (header_len_ < kFrameHeader && !bytes.empty()) {
    header_[header_len_++] = bytes.front();
    bytes = bytes.subspan(1);
    if (header_len_ < kFrameHeader) continue;
    if (header_[0] != static_cast<std::uint8_t>(FrameType::Request))
      return fail("the first frame must be a REQUEST");
    body_len_ = static_cast<std::size_t>(header_[1]) | static_cast<std::size_t>(header_[2]) << 8 |
                static_cast<std::size_t>(header_[3]) << 16 | static_cast<std::size_t>(header_[4]) << 24;
    if (body_len_ > kMaxRequestBytes)
      return fail("frame of " + std::to_string(body_len_) + " bytes exceeds the limit of " +
                  std::to_string(kMaxRequestBytes));
  }
  if (header_len_ < kFrameHeader) return state_;
  const std::size_t n = std::min(bytes.size(), body_len_ - body_.size());
  if (body_.size() + n > body_.capacity()) {
    // Grow by doubling, but never past the announced length: held() stays within 2x what arrived.
    body_.reserve(std::min(body_len_, std::max(2 * body_.capacity(), body_.size() + n)));
  }
  body_.insert(body_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  bytes = bytes.subspan(n);
  if (body_.size() < body_len_) return state_;
  if (!bytes.empty()) return fail("more than one REQUEST on the stream");
  state_ = State::Complete;
  return state_;
}

RequestReader::State RequestReader::finish() {
  if (state_ == State::Reading) return fail("the stream ended before a complete REQUEST");
  return state_;
}

std::optional<std::string> RequestReader::take_body() {
  if (state_ != State::Complete || taken_) return std::nullopt;
  taken_ = true;
  std::string out(body_.begin(), body_.end());
  release();
  return out;
}

void RequestReader::release() { std::vector<std::uint8_t>().swap(body_); }

}  // namespace qmesh::core::mesh
