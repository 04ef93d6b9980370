// Session packets, packet protection and the IK session handshake (session_packet,
// session_crypto, session_handshake); the replay window has its own, replay_window_test.cpp.
#include <gtest/gtest.h>
#include <sodium.h>

#include "core/session/crypto.hpp"
#include "core/session/handshake.hpp"
#include "core/session/packet.hpp"

using namespace qmesh::core;
using namespace qmesh::core::session;

namespace {

noise::PrivateKey key_from(std::uint8_t seed) {
  std::array<std::uint8_t, 32> b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(seed * 31 + i);
  return noise::PrivateKey(b);
}

struct Pair {
  Established client;
  Established worker;
};

Pair handshake(std::uint32_t client_sid = 7, std::uint32_t worker_sid = 9) {
  auto cs = noise::KeyPair::from_private(key_from(1));
  auto ws = noise::KeyPair::from_private(key_from(2));
  HandshakePayload cp;
  cp.app = {'c'};
  HandshakePayload wp;
  wp.app = {'w', 'k'};
  auto init = HandshakeInitiator::start(cs, ws.public_key, key_from(3), client_sid, cp);
  EXPECT_TRUE(init);
  auto hello = decode_packet(init->hello());
  EXPECT_TRUE(hello && std::holds_alternative<Hello>(*hello));
  auto resp = respond(ws, std::get<Hello>(*hello), key_from(4), worker_sid, wp);
  EXPECT_TRUE(resp) << (resp ? "" : resp.error().message);
  auto welcome = decode_packet(resp->welcome);
  EXPECT_TRUE(welcome && std::holds_alternative<Welcome>(*welcome));
  auto est = init->on_welcome(std::get<Welcome>(*welcome));
  EXPECT_TRUE(est) << (est ? "" : est.error().message);
  EXPECT_EQ(est->remote_static, ws.public_key);
  EXPECT_EQ(resp->session.remote_static, cs.public_key);
  EXPECT_EQ(est->remote.app, wp.app);
  EXPECT_EQ(resp->session.remote.app, cp.app);
  EXPECT_EQ(est->peer_sid, worker_sid);
  EXPECT_EQ(resp->session.peer_sid, client_sid);
  EXPECT_EQ(est->handshake_hash, resp->session.handshake_hash);
  return Pair{std::move(*est), std::move(resp->session)};
}

}  // namespace

TEST(SessionPacket, CodecRoundTripsAndRejectsMalformed) {
  std::vector<std::uint8_t> noise(kHelloNoiseOverhead + 10, 0xab);
  auto hello = encode_hello(0x01020304, noise);
  auto p = decode_packet(hello);
  ASSERT_TRUE(p && std::holds_alternative<Hello>(*p));
  EXPECT_EQ(std::get<Hello>(*p).sender_sid, 0x01020304u);
  EXPECT_EQ(std::get<Hello>(*p).noise.size(), noise.size());
  for (std::size_t n = 0; n < 5 + kHelloNoiseOverhead; ++n) {
    EXPECT_FALSE(decode_packet(std::span(hello).first(n))) << n;
  }
  std::vector<std::uint8_t> wn(kWelcomeNoiseOverhead, 1);
  auto welcome = encode_welcome(5, 6, wn);
  p = decode_packet(welcome);
  ASSERT_TRUE(p && std::holds_alternative<Welcome>(*p));
  EXPECT_EQ(std::get<Welcome>(*p).receiver_sid, 5u);
  EXPECT_EQ(std::get<Welcome>(*p).sender_sid, 6u);
  std::vector<std::uint8_t> data(kDataHeader + 16);
  write_data_header(42, 0x1122334455667788ULL, std::span<std::uint8_t, kDataHeader>(data.data(), kDataHeader));
  p = decode_packet(data);
  ASSERT_TRUE(p && std::holds_alternative<Data>(*p));
  EXPECT_EQ(std::get<Data>(*p).pn, 0x1122334455667788ULL);
  EXPECT_EQ(std::get<Data>(*p).receiver_sid, 42u);
  data.pop_back();
  EXPECT_FALSE(decode_packet(data));  // shorter than a tag
  std::vector<std::uint8_t> big(kMaxUdpPayload + 1, 0x83);
  EXPECT_FALSE(decode_packet(big));
  EXPECT_FALSE(decode_packet(std::vector<std::uint8_t>{0x01, 0, 0, 0, 0}));  // a DHT message
  EXPECT_FALSE(decode_packet({}));
  EXPECT_FALSE(is_session_packet(std::vector<std::uint8_t>{0x84}));
}

TEST(SessionPacket, HandshakePayloadRoundTripAndBounds) {
  HandshakePayload p;
  p.max_streams = 9;
  p.app.assign(200, 'x');
  auto b = encode_handshake_payload(p);
  EXPECT_EQ(decode_handshake_payload(b), p);
  b.push_back(0);
  EXPECT_FALSE(decode_handshake_payload(b));  // trailing bytes
  p.app.assign(201, 'x');
  EXPECT_FALSE(decode_handshake_payload(encode_handshake_payload(p)));
  b = encode_handshake_payload(HandshakePayload{});
  b[0] = 2;
  EXPECT_FALSE(decode_handshake_payload(b));  // unknown version
}

TEST(SessionHandshake, IkEstablishesMatchingKeysBothWays) {
  auto pair = handshake();
  PacketProtection c(std::move(pair.client.keys), pair.client.peer_sid);
  PacketProtection w(std::move(pair.worker.keys), pair.worker.peer_sid);
  std::vector<std::uint8_t> frames = {1, 2, 3, 4, 5};
  auto dg = c.seal(0, frames);
  ASSERT_TRUE(dg);
  EXPECT_EQ(dg->size(), kDataHeader + frames.size() + 16);
  // No plaintext on the wire.
  EXPECT_EQ(std::search(dg->begin(), dg->end(), frames.begin(), frames.end()), dg->end());
  auto p = decode_packet(*dg);
  ASSERT_TRUE(p);
  auto& d = std::get<Data>(*p);
  EXPECT_EQ(d.receiver_sid, 9u);  // routed by the worker's id
  std::vector<std::uint8_t> out;
  ASSERT_TRUE(w.open(d, out));
  EXPECT_EQ(out, frames);
  EXPECT_FALSE(w.open(d, out));  // replay
  EXPECT_EQ(w.replays(), 1u);
  // The other direction uses the other key: the worker's packet does not open with its own key.
  auto back = w.seal(0, frames);
  ASSERT_TRUE(back);
  auto bp = decode_packet(*back);
  ASSERT_TRUE(c.open(std::get<Data>(*bp), out));
  PacketProtection* self = &w;
  EXPECT_FALSE(self->open(std::get<Data>(*bp), out));
}

TEST(SessionHandshake, TamperingAnywhereIsRejected) {
  auto pair = handshake();
  PacketProtection c(std::move(pair.client.keys), pair.client.peer_sid);
  PacketProtection w(std::move(pair.worker.keys), pair.worker.peer_sid);
  std::vector<std::uint8_t> frames(100, 7);
  for (std::uint64_t pn = 0; pn < 3; ++pn) {
    auto dg = c.seal(pn, frames);
    ASSERT_TRUE(dg);
    for (std::size_t i = 0; i < dg->size(); i += 7) {
      auto bad = *dg;
      bad[i] ^= 0x40;
      auto p = decode_packet(bad);
      if (!p || !std::holds_alternative<Data>(*p)) continue;
      std::vector<std::uint8_t> out;
      EXPECT_FALSE(w.open(std::get<Data>(*p), out)) << "byte " << i;
    }
    // The untouched packet still opens: failures did not move the window.
    auto p = decode_packet(*dg);
    std::vector<std::uint8_t> out;
    EXPECT_TRUE(w.open(std::get<Data>(*p), out));
  }
  EXPECT_GT(w.auth_failures(), 0u);
  EXPECT_FALSE(c.seal(1, frames));  // packet numbers only rise
  EXPECT_FALSE(c.seal(kMaxPacketNumber, frames));
  std::vector<std::uint8_t> too_big(kMaxFramesPerPacket + 1);
  EXPECT_FALSE(c.seal(10, too_big));
}

TEST(SessionHandshake, WrongResponderKeyOrForgedWelcomeFails) {
  auto cs = noise::KeyPair::from_private(key_from(1));
  auto ws = noise::KeyPair::from_private(key_from(2));
  auto other = noise::KeyPair::from_private(key_from(5));
  // The client believes the worker's key is `other`: the real worker cannot read the HELLO.
  auto init = HandshakeInitiator::start(cs, other.public_key, key_from(3), 1, {});
  ASSERT_TRUE(init);
  auto hello = decode_packet(init->hello());
  EXPECT_FALSE(respond(ws, std::get<Hello>(*hello), key_from(4), 2, {}));
  // An impostor holding `other`'s key would answer; one without it cannot forge a WELCOME.
  auto init2 = HandshakeInitiator::start(cs, ws.public_key, key_from(3), 1, {});
  ASSERT_TRUE(init2);
  auto h2 = decode_packet(init2->hello());
  auto resp = respond(ws, std::get<Hello>(*h2), key_from(4), 2, {});
  ASSERT_TRUE(resp);
  auto wrong_sid = encode_welcome(99, 2, std::get<Welcome>(*decode_packet(resp->welcome)).noise);
  auto ws_p = decode_packet(wrong_sid);
  auto r = init2->on_welcome(std::get<Welcome>(*ws_p));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, "wrong_session");
  auto forged = resp->welcome;
  forged.back() ^= 1;
  EXPECT_FALSE(init2->on_welcome(std::get<Welcome>(*decode_packet(forged))));
}
