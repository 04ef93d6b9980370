#include "core/session/handshake.hpp"

namespace qmesh::core::session {

namespace {
std::span<const std::uint8_t> prologue() {
  return {reinterpret_cast<const std::uint8_t*>(kPrologue.data()), kPrologue.size()};
}
noise::Pattern pattern(const std::optional<noise::Psk>& psk) { return psk ? noise::Pattern::IKpsk2 : noise::Pattern::IK; }
}  // namespace

Result<HandshakeInitiator> HandshakeInitiator::start(const noise::KeyPair& local_static,
                                                     const noise::PublicKey& remote_static,
                                                     const noise::PrivateKey& ephemeral, std::uint32_t local_sid,
                                                     const HandshakePayload& payload,
                                                     const std::optional<noise::Psk>& psk) {
  auto hs = noise::HandshakeState::create(pattern(psk), noise::Role::initiator, prologue(), local_static,
                                          remote_static, ephemeral, psk);
  if (!hs) return hs.error();
  auto msg = hs->write_message(encode_handshake_payload(payload));
  if (!msg) return msg.error();
  return HandshakeInitiator(std::move(*hs), local_sid, encode_hello(local_sid, *msg));
}

Result<Established> HandshakeInitiator::on_welcome(const Welcome& welcome) {
  if (welcome.receiver_sid != local_sid_) return Error{"session: WELCOME for another session", "wrong_session"};
  auto payload = hs_.read_message(welcome.noise);
  if (!payload) return Error{"session: WELCOME does not authenticate: " + payload.error().message, "handshake"};
  auto remote = decode_handshake_payload(*payload);
  if (!remote) return Error{"session: WELCOME carries a malformed payload", "handshake"};
  auto keys = hs_.split();
  if (!keys) return keys.error();
  Established e{std::move(*keys), *hs_.remote_static(), std::move(*remote), hs_.handshake_hash(),
                welcome.sender_sid};
  return e;
}

Result<Responded> respond(const noise::KeyPair& local_static, const Hello& hello, const noise::PrivateKey& ephemeral,
                          std::uint32_t local_sid, const HandshakePayload& payload,
                          const std::optional<noise::Psk>& psk) {
  auto hs = noise::HandshakeState::create(pattern(psk), noise::Role::responder, prologue(), local_static,
                                          std::nullopt, ephemeral, psk);
  if (!hs) return hs.error();
  auto in = hs->read_message(hello.noise);
  if (!in) return Error{"session: HELLO does not authenticate: " + in.error().message, "handshake"};
  auto remote = decode_handshake_payload(*in);
  if (!remote) return Error{"session: HELLO carries a malformed payload", "handshake"};
  auto out = hs->write_message(encode_handshake_payload(payload));
  if (!out) return out.error();
  auto keys = hs->split();
  if (!keys) return keys.error();
  Responded r{encode_welcome(hello.sender_sid, local_sid, *out),
              Established{std::move(*keys), *hs->remote_static(), std::move(*remote), hs->handshake_hash(),
                          hello.sender_sid}};
  return r;
}

}  // namespace qmesh::core::session
