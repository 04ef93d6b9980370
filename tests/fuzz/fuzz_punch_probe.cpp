// Fuzz target: the hole-punch probe decoder must reject or accept any bytes without crashing; what
// it accepts re-encodes to the same bytes; and live Punchers (both roles, every socket) fed the
// bytes never crash, never send more than their bound and give at most one outcome.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "core/nat/holepunch.hpp"
#include "fuzz_punch_key.hpp"

using namespace qmesh::core::nat;
using qmesh::core::Endpoint;
using qmesh::core::dht::TimePoint;

namespace {

struct Live {
  Role role;
  std::unique_ptr<Puncher> p;
  int outcomes = 0;
  std::uint64_t sends = 0;

  void reset(TimePoint now) {
    PunchParams pp;
    pp.role = role;
    pp.local_nat = role == Role::initiator ? NatType::random : NatType::consistent;
    pp.remote_nat = role == Role::initiator ? NatType::consistent : NatType::random;
    pp.local_public = Endpoint::v4(203, 0, 113, role == Role::initiator ? 1 : 2, 4000);
    pp.remote_public = Endpoint::v4(203, 0, 113, role == Role::initiator ? 2 : 1, 4000);
    pp.remote_locals = {Endpoint::v4(192, 168, 1, 20, 4000)};
    pp.key = qmesh_fuzz::punch_key();
    pp.seed = 9;
    PunchConfig cfg;
    cfg.birthday_sockets = 8;
    cfg.birthday_min_sockets = 4;
    cfg.spray_probes = 64;
    p = std::make_unique<Puncher>(pp, now, cfg);
    p->start(p->sockets_wanted(), now);
    outcomes = 0;
    sends = 0;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  if (auto probe = decode_probe(bytes)) {
    const auto again = encode_probe(*probe);
    if (again.size() != size || !std::equal(again.begin(), again.end(), bytes.begin())) __builtin_trap();
    (void)verify_probe(*probe, qmesh_fuzz::punch_key());
  }
  static std::int64_t t = 0;
  static Live live[2] = {{Role::initiator, nullptr}, {Role::responder, nullptr}};
  t += 13;
  const TimePoint now{t};
  for (auto& l : live) {
    if (!l.p || l.p->finished()) l.reset(now);
    l.p->on_datagram(size % 10, Endpoint::v4(203, 0, 113, 7, static_cast<std::uint16_t>(size)), bytes, now);
    l.p->on_tick(now);
    while (l.p->next_send()) ++l.sends;
    while (l.p->next_outcome()) ++l.outcomes;
    if (l.outcomes > 1 || l.sends > l.p->max_packets() || l.p->counters().sent() != l.sends) __builtin_trap();
  }
  return 0;
}
