#include "worker/mesh_server.hpp"

#include <sodium.h>

#include <algorithm>
#include <thread>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/model/transfer_frame.hpp"
#include "net/loop_thread.hpp"
#include "worker/mesh_server_impl.hpp"
#include "worker/worker_metrics.hpp"

namespace qmesh::worker {

using std::chrono::milliseconds;

void MeshServer::Impl::on_event(const peer::PeerEvent& e, peer::Peer& p, core::Instant now) {
  if (const auto* de = std::get_if<dht::DhtEvent>(&e)) {
    if (const auto* qd = std::get_if<dht::QueryDone>(de); qd && opts.metrics) opts.metrics->dht_query_done(qd->ok);
    await.on_event(*de);
    if (share) share->on_dht_event(*de);
    return;
  }
  const auto* he = std::get_if<session::HostEvent>(&e);
  if (!he) return;
  if (const auto* a = std::get_if<session::Accepted>(he)) {
    clients[a->sid] = a->remote_static;
    sources[a->sid] = core::ip_key(a->path.to);
    bump(&MeshStats::sessions);
    log->debug("session {} from {} ({})", a->sid, short_key(a->remote_static), a->path.relayed() ? "relayed" : "direct");
  } else if (const auto* s = std::get_if<session::StreamActivity>(he)) {
    on_stream(p, s->sid, s->event, now);
  } else if (const auto* pc = std::get_if<session::PathChanged>(he)) {
    sources[pc->sid] = core::ip_key(pc->path.to);
  } else if (const auto* c = std::get_if<session::SessionClosed>(he)) {
    drop_session(c->sid);
  }
  expire(p, now);
}

void MeshServer::Impl::drop_session(session::SessionId sid) {
  for (auto it = asks.lower_bound({sid, 0}); it != asks.end() && it->first.first == sid;) {
    cancel(it->second);
    auto next = std::next(it);
    forget(it);
    it = next;
  }
  clients.erase(sid);
  sources.erase(sid);
  session_dropped = true;
  if (share) share->on_session_closed(sid, net::steady_now());
}

void MeshServer::Impl::on_stream(peer::Peer& p, session::SessionId sid, const stream::Event& ev, core::Instant now) {
  const auto id = stream::stream_of(ev);
  if (!id) {  // the connection closed: SessionClosed follows
    drop_session(sid);
    return;
  }
  const Key key{sid, *id};
  if (share && share->owns(sid, *id)) return share->on_stream(p, sid, ev, now);
  auto it = asks.find(key);
  if (std::holds_alternative<stream::StreamReset>(ev)) {
    if (it != asks.end()) {
      cancel(it->second);  // the client went away
      forget(it);
    }
    return;
  }
  if (std::holds_alternative<stream::Writable>(ev)) {
    if (it != asks.end()) pump(p, key, it->second);
    return;
  }
  if (it == asks.end()) {
    // Every stream the client opens starts with StreamOpened; a later event for an unknown one
    // belongs to an ask already forgotten (e.g. data dropped after our answer) and is not new.
    if (!std::holds_alternative<stream::StreamOpened>(ev)) return;
    it = asks.emplace(key, Ask{}).first;
  }
  stream::Connection* c = p.sessions().connection(sid);
  if (!c) return;
  std::uint8_t buf[16384];
  while (const auto n = c->read(*id, buf)) {
    Ask& a = it->second;
    if (!a.seen && refuse_unlisted(p, key, a)) return;
    if (share && !a.seen && core::model::is_transfer_type(buf[0])) {  // a model transfer
      forget(it);
      return share->adopt(p, sid, ev, std::span(buf, n), now);
    }
    a.seen = true;
    if (a.answered) continue;  // what the client sends after our answer is only drained
    on_request_bytes(p, key, a.reader.feed(std::span(buf, n)), now);
    if ((it = asks.find(key)) == asks.end()) return;
  }
  if (std::holds_alternative<stream::Finished>(ev)) {
    Ask& a = it->second;
    a.peer_fin = true;
    if (!a.requested) {
      on_request_bytes(p, key, a.reader.finish(), now);
    } else if (a.finished) {
      forget(it);  // both sides are done
    }
  }
}

// After the stream's bytes went into the ask's reader: a request still arriving is held within
// the intake's bounds (others may be given up for it), a whole one is admitted, a bad one (a
// second REQUEST too, even while the first runs) is answered bad_request.
void MeshServer::Impl::on_request_bytes(peer::Peer& p, const Key& key, mesh::RequestReader::State st, core::Instant now) {
  Ask& a = asks.at(key);
  switch (st) {
    case mesh::RequestReader::State::Reading: {
      // The deadline runs from the first byte; a request whole in its first read is never held.
      auto src = sources.find(key.first);
      intake.begin(key, src != sources.end() ? src->second : core::IpKey{}, now);
      for (const auto& k : intake.hold(key, a.reader.held()))
        give_up(p, k, {"busy", "worker is busy: too many unfinished requests (this one was the oldest)", retry_hint()});
      return;
    }
    case mesh::RequestReader::State::Complete: {
      intake.end(key);
      a.requested = true;
      freed_since_trim += a.reader.held();
      auto body = a.reader.take_body();
      admit(p, key, a, *body, now);
      return;
    }
    case mesh::RequestReader::State::Failed:
      cancel(a);  // it was running: the ask ends here
      bump(&MeshStats::bad_requests);
      answer_error(p, key, a, {"bad_request", "bad request: " + a.reader.error(), 0});
      return;
  }
}

// A request still arriving that the intake gave up (or whose deadline passed): refused, freed.
void MeshServer::Impl::give_up(peer::Peer& p, const Key& key, const mesh::ErrorReply& e) {
  auto it = asks.find(key);
  if (it == asks.end()) return;
  bump(e.kind == "busy" ? &MeshStats::busy : &MeshStats::bad_requests);
  log->debug("unfinished request on session {} stream {} refused: {}", key.first, key.second, e.kind);
  answer_error(p, key, it->second, e);
}

void MeshServer::Impl::expire(peer::Peer& p, core::Instant now) {
  if (intake.next_deadline() > now) return;
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(intake.limits().deadline).count();
  for (const auto& k : intake.expire(now))
    give_up(p, k, {"timeout", "the REQUEST did not arrive whole within " + std::to_string(secs) + " s", 0});
}

// Periodic, on the loop thread: deadlines, and memory given back to the system after large frees
// (glibc keeps freed heap in its arenas otherwise).
void MeshServer::Impl::housekeeping(peer::Peer& p, core::Instant now) {
  expire(p, now);
  if (const auto drops = p.sessions().counters().drop_mac1; drops > mac1_drops_logged && now >= next_mac1_log) {
    log->info("dropped {} HELLO(s) whose mac1 fits no mesh this worker serves{}", drops - mac1_drops_logged,
              opts.mesh ? " (not members of its private mesh)" : "");
    mac1_drops_logged = drops;
    next_mac1_log = now + std::chrono::seconds(10);
  }
  if (session_dropped && trim_at == core::Instant::max()) trim_at = now + std::chrono::seconds(4);
  session_dropped = false;
  if (now >= trim_at) {
    trim_at = core::Instant::max();
    freed_since_trim = 1 << 20;
  }
#ifdef __GLIBC__
  if (freed_since_trim >= (1u << 20)) {
    freed_since_trim = 0;
    malloc_trim(0);
  }
#endif
}

// Queues a frame on the ask's stream (gone: the client left, drop it) and writes what fits.
void MeshServer::Impl::send(peer::Peer& p, const Key& key, mesh::FrameType type, std::string_view body, bool last) {
  auto it = asks.find(key);
  if (it == asks.end() || it->second.answered) return;
  Ask& a = it->second;
  const auto f = mesh::encode_frame(type, body);
  a.out.append(f.begin(), f.end());
  if (last) a.answered = true;
  if (a.out.size() - a.out_off > kMaxOutbox) {
    // The client stopped reading: end the ask rather than hold its answer forever.
    cancel(a);
    if (auto* c = p.sessions().connection(key.first)) (void)c->reset(key.second, kResetOverflow);
    forget(it);
    return;
  }
  pump(p, key, a);
}

void MeshServer::Impl::pump(peer::Peer& p, const Key& key, Ask& a) {
  stream::Connection* c = p.sessions().connection(key.first);
  if (!c) return;
  while (a.out_off < a.out.size()) {
    const auto n = c->write(key.second, std::span(reinterpret_cast<const std::uint8_t*>(a.out.data()) + a.out_off,
                                                  a.out.size() - a.out_off));
    if (n == 0) break;
    a.out_off += n;
  }
  if (a.out_off == a.out.size()) {
    a.out.clear();
    a.out_off = 0;
    if (a.answered && !a.finished) {
      a.finished = true;
      (void)c->finish(key.second);
      // Forgotten once the client's FIN is in too (until then its late FIN must not look like
      // a new stream); a session that closes drops it either way.
      if (a.peer_fin) forget(asks.find(key));
    }
  }
}

MeshServer::MeshServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MeshServer::~MeshServer() {
  stop();
  // Asks still inside llama-server (stop() waited only a while) finish before we go.
  std::unique_lock lk(impl_->mu);
  impl_->cv.wait(lk, [&] { return impl_->in_worker == 0; });
}

core::Result<std::unique_ptr<MeshServer>> MeshServer::start(Worker& worker, MeshServerOptions opts) {
  if (opts.bootstrap.empty()) return core::make_error("no bootstrap node given");
#ifdef __GLIBC__
  // Fixed thresholds: glibc raises both after large frees (up to 32 and 64 MiB), so memory a
  // burst of requests used would stay in the heap for good; with them it goes back (housekeeping).
  mallopt(M_MMAP_THRESHOLD, 128 << 10);
  mallopt(M_TRIM_THRESHOLD, 128 << 10);
#endif
  // Asks may name a model by a prefix of its content root: every root is known before the first ask.
  if (auto h = worker.compute_roots(); !h) return h.error();
  auto impl = std::make_unique<Impl>(worker, opts);
  net::PeerServiceOptions so;
  if (opts.listen) {
    (opts.listen->family == 6 ? so.listen_v6 : so.listen_v4) = *opts.listen;
  } else {
    for (const auto& b : opts.bootstrap) {  // a host name may give both families
      core::Endpoint any;
      any.family = b.family;
      (any.family == 6 ? so.listen_v6 : so.listen_v4) = any;
    }
  }
  so.config.dht.ephemeral = true;
  so.config.dht.report_addresses = true;
  so.config.serve_relay = false;
  so.config.punch = opts.punch;
  so.config.sessions.identity = opts.identity.session;
  so.config.sessions.accept_incoming = true;
  if (opts.mesh) {  // members only: IKpsk2 with the mesh's PSK, public HELLOs dropped at mac1
    const auto psk = core::session::mesh_psk(*opts.mesh);
    so.config.sessions.psk = psk;
    so.config.sessions.mesh_psks = {psk};
    so.config.sessions.accept_public = false;
  }
  Impl* raw = impl.get();
  auto svc = net::PeerService::start(so, [raw](const peer::PeerEvent& e, peer::Peer& p, core::Instant now) {
    raw->on_event(e, p, now);
  });
  if (!svc) return svc.error();
  impl->svc = std::move(*svc);
  const auto q = impl->svc->call([&](peer::Peer& p, core::Instant now) {
    auto id = p.dht().bootstrap(impl->opts.bootstrap, now);
    impl->await.expect(id);
    return id;
  });
  auto joined = impl->await.wait(q, std::chrono::seconds(10));
  if (!joined || !joined->ok) {
    std::string list;
    for (const auto& b : opts.bootstrap) list += (list.empty() ? "" : ", ") + b.to_string();
    impl->svc->stop();
    return core::make_error("no DHT node answered at " + list + " (is a bootstrap node running there?)");
  }
  // Housekeeping on the loop: the intake's deadlines need a clock.
  if (opts.share) {  // every session accepted completed the handshake: ModelShare's rule
    auto share_opts = *opts.share;
    share_opts.sign = opts.identity.sign;
    share_opts.mesh = opts.mesh;
    impl->svc->call([&](peer::Peer&, core::Instant) { impl->share = std::make_unique<ModelShare>(*impl->svc, share_opts); });
  }
  impl->svc->every(milliseconds(250), [raw](peer::Peer& p, core::Instant now) { raw->housekeeping(p, now); });
  return std::unique_ptr<MeshServer>(new MeshServer(std::move(impl)));
}

core::Result<std::uint32_t> MeshServer::announce(const mesh::WorkerRecord& record, milliseconds wait) {
  const auto payload = mesh::encode_worker_record(record);
  const auto q = impl_->svc->call([&](peer::Peer& p, core::Instant now) {
    auto id = p.dht().announce(impl_->topic, payload, impl_->opts.identity.sign, now);
    impl_->await.expect(id);
    return id;
  });
  auto done = impl_->await.wait(q, wait);
  // The DHT node rejoins through the bootstrap list by itself (docs/protocol.md, "Rejoin"); the
  // log says when the record is out there again after failures.
  auto& failures = impl_->announce_failures;
  if (!done) {
    ++failures;
    return core::make_error("announcing took longer than " + std::to_string(wait.count()) + " ms", "timeout");
  }
  if (!done->ok || done->stats.stored == 0) {
    ++failures;
    return core::make_error("no DHT node stored the worker record");
  }
  if (failures > 0)
    impl_->log->info("worker record stored again, at {} node(s), after {} failed announce(s)", done->stats.stored,
                     failures);
  failures = 0;
  return done->stats.stored;
}

ModelShare* MeshServer::share() const { return impl_->share.get(); }

core::nat::NatType MeshServer::nat_type() const {
  return impl_->svc->call([](peer::Peer& p, core::Instant now) {
    const auto v4 = p.nat_type(4, now);
    return v4 != core::nat::NatType::unknown ? v4 : p.nat_type(6, now);
  });
}

std::optional<core::Endpoint> MeshServer::local_endpoint() const {
  auto v4 = impl_->svc->local_endpoint(4);
  return v4 ? v4 : impl_->svc->local_endpoint(6);
}

MeshStats MeshServer::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->st;
}

void MeshServer::collect_metrics() {
  if (!impl_->opts.metrics) return;
  try {
    impl_->svc->call([this](peer::Peer& p, core::Instant) {
      std::vector<session::SessionId> sids;
      for (const auto& [sid, key] : impl_->clients) sids.push_back(sid);
      impl_->opts.metrics->collect_peer(p, sids);
    });
  } catch (const std::exception&) {  // net::LoopStopped: the server is stopping
  }
}

void MeshServer::stop() {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  auto& svc = *impl_->svc;
  try {
    svc.call([this](peer::Peer&, core::Instant) { impl_->cancel_all(); });
    // Asks see the cancel at llama-server's next byte; their ERROR frames go out before we leave.
    {
      std::unique_lock lk(impl_->mu);
      impl_->cv.wait_for(lk, std::chrono::seconds(5), [&] { return impl_->in_worker == 0; });
    }
    if (impl_->share) impl_->share->stop();
    svc.call([this](peer::Peer& p, core::Instant now) {
      (void)p.dht().unannounce(impl_->topic, now);
      for (const auto& [sid, key] : impl_->clients) p.sessions().close(sid, 0, "worker stopping", now);
    });
    std::this_thread::sleep_for(milliseconds(200));  // let the UNANNOUNCE and CLOSEs go out
  } catch (const std::exception&) {
    // The loop is already gone: nothing left to tell the network.
  }
  svc.stop();
}

}  // namespace qmesh::worker
