// Write tokens: proof that a requester receives at the address it claims. A token is
// BLAKE2b(key = rotating secret, addr || port) truncated to 16 bytes. The secret rotates every
// rotate_every; tokens made with the current or the previous secret are accepted, older ones not.
#pragma once

#include <array>
#include <chrono>

#include "core/dht/message.hpp"
#include "core/dht/types.hpp"
#include "core/base/rng.hpp"

namespace qmesh::core::dht {

class TokenIssuer {
 public:
  TokenIssuer(Rng& rng, TimePoint now, std::chrono::milliseconds rotate_every = std::chrono::minutes(5));

  Token make(const Endpoint& requester) const;
  bool check(const Endpoint& requester, const Token& token) const;
  // Rotates when due (possibly several times after a long pause).
  void on_tick(TimePoint now);
  TimePoint next_rotation() const { return rotated_at_ + every_; }

 private:
  using Secret = std::array<std::uint8_t, 32>;
  static Token make_with(const Secret& s, const Endpoint& e);
  void rotate();

  Rng& rng_;
  std::chrono::milliseconds every_;
  TimePoint rotated_at_;
  Secret current_{};
  Secret previous_{};
};

}  // namespace qmesh::core::dht
