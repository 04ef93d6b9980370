// RequestReader: the worker's side of an ask's stream, which must carry exactly one REQUEST frame
// (mesh/frame.hpp). Bytes go in as they arrive; the reader says when the request is whole, and
// fails on anything else: another frame type first, a REQUEST over its limit, or any byte after
// the REQUEST (a second frame included). It holds only the request begun, so what it costs is
// what arrived, never what a header announces.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/mesh/frame.hpp"

namespace qmesh::core::mesh {

class RequestReader {
 public:
  enum class State : std::uint8_t { Reading, Complete, Failed };

  // Returns the state after `bytes`. Bytes after the REQUEST in the same call fail it before it
  // is ever Complete; bytes after a Complete one fail it then (the caller ends the ask).
  State feed(std::span<const std::uint8_t> bytes);
  // The stream's FIN arrived: a request still being read fails.
  State finish();
  State state() const { return state_; }
  // The REQUEST's body, once, when Complete.
  std::optional<std::string> take_body();
  const std::string& error() const { return error_; }
  // Heap bytes held for the request begun (what a budget on unfinished requests counts).
  std::size_t held() const { return body_.capacity(); }
  // Drops what is held (after the ask is answered: later bytes are only counted).
  void release();

 private:
  State fail(std::string why);

  State state_ = State::Reading;
  std::array<std::uint8_t, kFrameHeader> header_{};
  std::size_t header_len_ = 0;
  std::size_t body_len_ = 0;  // from the header
  std::vector<std::uint8_t> body_;
  bool taken_ = false;
  std::string error_;
};

}  // namespace qmesh::core::mesh
