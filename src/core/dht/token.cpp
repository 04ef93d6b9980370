#include "core/dht/token.hpp"

#include <sodium.h>

#include <cstring>

namespace qmesh::core::dht {

TokenIssuer::TokenIssuer(Rng& rng, TimePoint now, std::chrono::milliseconds rotate_every)
    : rng_(rng), every_(rotate_every), rotated_at_(now) {
  rotate();
  rotate();
  rotated_at_ = now;
}

void TokenIssuer::rotate() {
  previous_ = current_;
  for (std::size_t i = 0; i < current_.size(); i += 8) {
    const std::uint64_t v = rng_.next_u64();
    std::memcpy(current_.data() + i, &v, 8);
  }
}

void TokenIssuer::on_tick(TimePoint now) {
  int n = 0;
  while (now - rotated_at_ >= every_ && n < 2) {
    rotate();
    rotated_at_ += every_;
    ++n;
  }
  if (now - rotated_at_ >= every_) rotated_at_ = now;  // long pause: both secrets are fresh already
}

Token TokenIssuer::make_with(const Secret& s, const Endpoint& e) {
  std::uint8_t buf[19];
  buf[0] = e.family;
  std::memcpy(buf + 1, e.addr.data(), e.addr_len());
  const std::size_t n = 1 + e.addr_len();
  buf[n] = static_cast<std::uint8_t>(e.port >> 8);
  buf[n + 1] = static_cast<std::uint8_t>(e.port);
  Token t;
  crypto_generichash(t.data(), t.size(), buf, n + 2, s.data(), s.size());
  return t;
}

Token TokenIssuer::make(const Endpoint& requester) const { return make_with(current_, requester); }

bool TokenIssuer::check(const Endpoint& requester, const Token& token) const {
  const Token a = make_with(current_, requester), b = make_with(previous_, requester);
  return sodium_memcmp(a.data(), token.data(), token.size()) == 0 ||
         sodium_memcmp(b.data(), token.data(), token.size()) == 0;
}

}  // namespace qmesh::core::dht
