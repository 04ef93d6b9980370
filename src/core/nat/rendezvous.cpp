#include "core/nat/rendezvous.hpp"

#include "core/base/byte_reader.hpp"

namespace qmesh::core::rendezvous {

namespace {

void put(const PeerInfo& p, ByteWriter& w) {
  w.write_le(p.nat);
  const std::size_t n = std::min(p.local.size(), kMaxLocalEndpoints);
  w.write_le(static_cast<std::uint8_t>(n));
  for (std::size_t i = 0; i < n; ++i) dht::encode_endpoint(p.local[i], w);
}

std::optional<PeerInfo> get_info(ByteReader& r) {
  PeerInfo p;
  std::uint8_t n = 0;
  if (!r.read_le(p.nat) || !r.read_le(n) || n > kMaxLocalEndpoints) return std::nullopt;
  for (std::uint8_t i = 0; i < n; ++i) {
    auto e = dht::decode_endpoint(r);
    if (!e) return std::nullopt;
    p.local.push_back(*e);
  }
  return p;
}

bool only_padding(ByteReader& r) {
  for (auto b : r.read_bytes(r.remaining())) {
    if (b != 0) return false;
  }
  return r.ok();
}

}  // namespace

std::vector<std::uint8_t> encode_peer_info(const PeerInfo& p) {
  ByteWriter w;
  put(p, w);
  return std::move(w.bytes());
}

std::optional<PeerInfo> decode_peer_info(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  auto p = get_info(r);
  if (!p || r.remaining() != 0) return std::nullopt;
  return p;
}

std::vector<std::uint8_t> encode_message(const Message& m) {
  ByteWriter w;
  if (auto* c = std::get_if<Connect>(&m)) {
    w.write_le(kConnect);
    w.write_le(c->txid);
    w.write_bytes(c->token);
    w.write_bytes(c->topic);
    w.write_bytes(c->pubkey);
    put(c->info, w);
    while (w.bytes().size() < kMinConnect) w.write_le(std::uint8_t{0});
  } else if (auto* r = std::get_if<ConnectReply>(&m)) {
    w.write_le(kConnectReply);
    w.write_le(r->txid);
    w.write_le(static_cast<std::uint8_t>(r->status));
    w.write_bytes(r->channel);
    dht::encode_endpoint(r->worker, w);
    dht::encode_endpoint(r->client, w);
  } else {
    const auto& i = std::get<Introduce>(m);
    w.write_le(kIntroduce);
    w.write_bytes(i.topic);
    w.write_bytes(i.pubkey);
    w.write_bytes(i.channel);
    dht::encode_endpoint(i.client, w);
    put(i.info, w);
  }
  return std::move(w.bytes());
}

std::optional<Message> decode_message(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > dht::kMaxDatagram) return std::nullopt;
  ByteReader r(bytes);
  std::uint8_t type = 0;
  if (!r.read_le(type)) return std::nullopt;
  if (type == kConnect) {
    if (bytes.size() < kMinConnect) return std::nullopt;  // unpadded: it would not pay for its answers
    Connect c;
    if (!r.read_le(c.txid) || !r.read_array(c.token) || !r.read_array(c.topic) || !r.read_array(c.pubkey)) {
      return std::nullopt;
    }
    auto info = get_info(r);
    if (!info || !only_padding(r)) return std::nullopt;
    c.info = std::move(*info);
    return c;
  }
  if (type == kConnectReply) {
    ConnectReply c;
    std::uint8_t status = 0;
    if (!r.read_le(c.txid) || !r.read_le(status) || status > 4 || !r.read_array(c.channel)) return std::nullopt;
    c.status = static_cast<Status>(status);
    auto w = dht::decode_endpoint(r);
    auto cl = w ? dht::decode_endpoint(r) : std::nullopt;
    if (!cl || r.remaining() != 0) return std::nullopt;
    c.worker = *w;
    c.client = *cl;
    return c;
  }
  if (type == kIntroduce) {
    Introduce i;
    if (!r.read_array(i.topic) || !r.read_array(i.pubkey) || !r.read_array(i.channel)) return std::nullopt;
    auto cl = dht::decode_endpoint(r);
    auto info = cl ? get_info(r) : std::nullopt;
    if (!info || r.remaining() != 0) return std::nullopt;
    i.client = *cl;
    i.info = std::move(*info);
    return i;
  }
  return std::nullopt;
}

}  // namespace qmesh::core::rendezvous
