#include "worker/mesh_server.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/base/hex.hpp"
#include "core/mesh/frame.hpp"
#include "core/mesh/intake.hpp"
#include "core/mesh/request_reader.hpp"
#include "core/model/transfer_frame.hpp"
#include "core/stream/event.hpp"
#include "net/dht_await.hpp"
#include "net/logger.hpp"
#include "net/loop_thread.hpp"
#include "net/peer_service.hpp"
#include "sidecar/model_file.hpp"
#include "worker/worker_metrics.hpp"

namespace qmesh::worker {

namespace dht = core::dht;
namespace mesh = core::mesh;
namespace peer = core::peer;
namespace session = core::session;
namespace stream = core::stream;
using std::chrono::milliseconds;

namespace {

constexpr std::size_t kMaxOutbox = 4 << 20;   // answer bytes a slow reader may leave unread
constexpr std::uint64_t kResetProtocol = 1;   // stream reset codes
constexpr std::uint64_t kResetOverflow = 2;
constexpr std::uint64_t kStopAnswered = 3;    // STOP_SENDING: the ask is answered, send no more


std::string short_key(const core::noise::PublicKey& k) { return core::to_hex(k).substr(0, 12); }

}  // namespace

struct MeshServer::Impl {
  using Key = std::pair<session::SessionId, stream::StreamId>;
  struct Shared {
    std::atomic<bool> cancelled{false};
    core::noise::PublicKey client{};  // whose ask it is
    std::string model;                // the model name it is served with (for DONE)
    Worker::Ticket ticket = 0;        // loop thread only: to withdraw it while it waits
  };
  // One ask on one stream (loop thread only).
  struct Ask {
    mesh::RequestReader reader;
    bool requested = false;  // the REQUEST was read (or refused): the ask runs or was answered
    bool answered = false;   // DONE or ERROR queued
    std::string out;         // frames not yet accepted by the stream
    std::size_t out_off = 0;
    bool finished = false;   // our FIN is queued
    bool peer_fin = false;   // the client's FIN arrived, or we stopped reading: nothing more comes
    bool seen = false;       // a byte was read (its first tells an ask from a transfer)
    std::shared_ptr<Shared> shared;
  };

  void forget(std::map<Key, Ask>::iterator it) {
    intake.end(it->first);
    asks.erase(it);
  }

  // The ask ends: one waiting in the worker's queue leaves it now (its place is free at once),
  // one running sees the flag at llama-server's next byte.
  void cancel(Ask& a) {
    if (!a.shared) return;
    a.shared->cancelled = true;
    worker.withdraw(a.shared->ticket);
  }

  Worker& worker;
  MeshServerOptions opts;
  dht::Topic topic{};
  std::unique_ptr<net::PeerService> svc;
  std::unique_ptr<ModelShare> share;  // loop thread (set once, before any stream)
  net::DhtAwait await;
  std::shared_ptr<spdlog::logger> log = net::component_logger("mesh");

  // Loop thread.
  std::map<Key, Ask> asks;
  std::map<session::SessionId, core::noise::PublicKey> clients;
  std::map<session::SessionId, core::IpKey> sources;  // where a session's packets come from now
  std::atomic<int> admitted{0};     // changed on the loop thread; retry_hint() reads it anywhere
  std::map<core::noise::PublicKey, int> admitted_by;  // asks running or queued, per client key
  // REQUESTs still arriving: bounded per session, per source and in all, oldest given up first,
  // and each must be whole within a deadline (core/mesh/intake.hpp).
  mesh::RequestIntake intake;
  std::size_t freed_since_trim = 0;  // bytes given back since the last malloc_trim
  bool session_dropped = false;      // its connection is freed after the session host's linger
  core::Instant trim_at = core::Instant::max();

  int announce_failures = 0;  // in a row; announce()'s caller only

  // Any thread.
  mutable std::mutex mu;
  std::condition_variable cv;
  int in_worker = 0;  // asks handed to the worker whose outcome is not handled yet
  MeshStats st;
  bool stopped = false;

  Impl(Worker& w, MeshServerOptions o) : worker(w), opts(std::move(o)), topic(dht::topic_from_name(opts.topic)) {}

  void bump(std::uint64_t MeshStats::*field) {
    std::lock_guard lk(mu);
    ++(st.*field);
  }

  void on_event(const peer::PeerEvent& e, peer::Peer& p, core::Instant now) {
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

  void drop_session(session::SessionId sid) {
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

  void on_stream(peer::Peer& p, session::SessionId sid, const stream::Event& ev, core::Instant now) {
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
  void on_request_bytes(peer::Peer& p, const Key& key, mesh::RequestReader::State st, core::Instant now) {
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
  void give_up(peer::Peer& p, const Key& key, const mesh::ErrorReply& e) {
    auto it = asks.find(key);
    if (it == asks.end()) return;
    bump(e.kind == "busy" ? &MeshStats::busy : &MeshStats::bad_requests);
    log->debug("unfinished request on session {} stream {} refused: {}", key.first, key.second, e.kind);
    answer_error(p, key, it->second, e);
  }

  void expire(peer::Peer& p, core::Instant now) {
    if (intake.next_deadline() > now) return;
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(intake.limits().deadline).count();
    for (const auto& k : intake.expire(now))
      give_up(p, k, {"timeout", "the REQUEST did not arrive whole within " + std::to_string(secs) + " s", 0});
  }

  // Periodic, on the loop thread: deadlines, and memory given back to the system after large frees
  // (glibc keeps freed heap in its arenas otherwise).
  void housekeeping(peer::Peer& p, core::Instant now) {
    expire(p, now);
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

  void admit(peer::Peer& p, const Key& key, Ask& a, const std::string& body, core::Instant) {
    bump(&MeshStats::asks);
    auto req = mesh::parse_request(body);
    if (!req) {
      bump(&MeshStats::bad_requests);
      answer_error(p, key, a, {"bad_request", req.error().message, 0});
      return;
    }
    if (!req->model.empty() && req->model != model_name && !hash_matches(req->model)) {
      bump(&MeshStats::bad_requests);
      answer_error(p, key, a, {"bad_request", "this worker serves model '" + model_name + "', not '" + req->model + "'", 0});
      return;
    }
    {
      std::lock_guard lk(mu);
      if (stopped) {
        answer_error(p, key, a, {"cancelled", "the worker is stopping", 0});
        return;
      }
    }
    // Admission here, before the worker sees it: a full worker answers "busy" at once.
    const auto& cfg = worker.config();
    if (admitted >= cfg.parallel + cfg.queue_capacity) {
      bump(&MeshStats::busy);
      answer_error(p, key, a,
                   {"busy", "worker is busy: " + std::to_string(admitted) + " asks running or queued", retry_hint()});
      return;
    }
    // One client may hold at most half the places, so that others still get in.
    core::noise::PublicKey client{};
    if (auto cl = clients.find(key.first); cl != clients.end()) client = cl->second;
    const int per_client = std::max(1, (cfg.parallel + cfg.queue_capacity + 1) / 2);
    if (admitted_by[client] >= per_client) {
      bump(&MeshStats::busy);
      answer_error(p, key, a,
                   {"busy", "worker is busy: this client has " + std::to_string(per_client) + " asks running or queued here",
                    retry_hint()});
      return;
    }
    ++admitted;
    ++admitted_by[client];
    a.shared = std::make_shared<Shared>();
    a.shared->client = client;
    a.shared->model = model_name;
    {
      std::lock_guard lk(mu);
      ++in_worker;
      st.running = admitted;
    }
    log->debug("ask from {} admitted ({} running or queued)", short_key(client), admitted.load());
    // Tokens and the outcome come back on a worker thread and are posted to the loop.
    auto on_token = [this, key](std::string_view piece) {
      if (opts.metrics) opts.metrics->token();
      svc->post([this, key, text = std::string(piece)](peer::Peer& q, core::Instant) {
        send(q, key, mesh::FrameType::Token, text, false);
      });
    };
    a.shared->ticket = worker.enqueue(completion_request(*req), on_token, [s = a.shared] { return s->cancelled.load(); },
                                      [this, key, s = a.shared](Worker::Outcome r) { answered(key, *s, std::move(r)); });
  }

  sidecar::CompletionRequest completion_request(mesh::Request& req) const {
    sidecar::CompletionRequest cr;
    cr.max_tokens = req.max_tokens;
    cr.temperature = req.temperature.value_or(worker.config().temperature);
    cr.seed = req.seed;
    cr.top_p = req.top_p;
    cr.stop = std::move(req.stop);
    if (req.messages.empty()) {
      cr.prompt = req.prompt + req.resume;
    } else {
      for (auto& m : req.messages) cr.messages.push_back({std::move(m.role), std::move(m.content)});
      // Failover: the assistant's answer so far, for llama-server to continue (assistant prefill).
      if (!req.resume.empty()) cr.messages.push_back({"assistant", req.resume});
    }
    return cr;
  }

  std::string model_name;
  std::string model_hash_hex;
  double avg_ask_ms = 0;  // under mu

  std::uint32_t retry_hint() {
    const auto& cfg = worker.config();
    double ms;
    {
      std::lock_guard lk(mu);
      ms = avg_ask_ms;
    }
    if (ms <= 0) return opts.busy_retry_max_ms;
    const double ahead = std::max(1, admitted - cfg.parallel + 1);
    const double hint = ms * ahead / cfg.parallel;
    return static_cast<std::uint32_t>(std::clamp<double>(hint, opts.busy_retry_min_ms, opts.busy_retry_max_ms));
  }
  bool hash_matches(const std::string& m) const {
    if (m.size() < 8 || m.size() > 64) return false;
    std::string lower = m;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return model_hash_hex.compare(0, lower.size(), lower) == 0;
  }

  // The ask's outcome from the worker (on its thread, or on the loop when it never ran): DONE or
  // ERROR goes to the loop, which writes it to the stream.
  void answered(const Key& key, const Shared& shared, Worker::Outcome r) {
    const std::string who = short_key(shared.client);
    if (opts.metrics) opts.metrics->ask_ended(r, shared.cancelled.load());
    if (r) {
      log->info("ask from {}: {} tokens, ttft {:.1f} ms, {:.1f} tokens/s ({})", who, r->tokens, r->ttft_ms,
                r->tokens_per_second, r->stop_reason);
      mesh::Done d{r->tokens, r->ttft_ms, r->total_ms, r->tokens_per_second, r->stop_reason, r->prompt_tokens, shared.model};
      {
        std::lock_guard lk(mu);
        ++st.completed;
        avg_ask_ms = avg_ask_ms == 0 ? r->total_ms : 0.8 * avg_ask_ms + 0.2 * r->total_ms;
      }
      svc->post([this, key, body = mesh::to_json(d), client = shared.client](peer::Peer& p, core::Instant) {
        finish_ask(p, key, client, mesh::FrameType::Done, body);
      });
    } else {
      const auto& e = r.error();
      const bool cancel = shared.cancelled.load();
      log->info("ask from {}: {} ({})", who, cancel ? "cancelled by the client" : e.message, e.kind);
      bump(cancel ? &MeshStats::cancelled : e.kind == "busy" ? &MeshStats::busy : &MeshStats::failed);
      // The detail (llama-server's stderr, paths) stays in the local log; the client gets the kind.
      const std::string kind = e.kind.empty() ? "internal" : e.kind;
      const bool tell = kind == "busy" || kind == "bad_request" || kind == "cancelled";
      mesh::ErrorReply er{kind, tell ? e.message : "the worker could not finish the answer (" + kind + ")",
                          kind == "busy" ? retry_hint() : kind == "worker_lost" ? worker.lost_retry_ms() : 0};
      svc->post([this, key, body = mesh::to_json(er), client = shared.client](peer::Peer& p, core::Instant) {
        finish_ask(p, key, client, mesh::FrameType::Error, body);
      });
    }
    std::lock_guard lk(mu);
    --in_worker;
    cv.notify_all();
  }

  void release_place(const core::noise::PublicKey& client) {
    if (auto it = admitted_by.find(client); it != admitted_by.end() && --it->second <= 0) admitted_by.erase(it);
  }

  void finish_ask(peer::Peer& p, const Key& key, const core::noise::PublicKey& client, mesh::FrameType type,
                  const std::string& body) {
    --admitted;
    release_place(client);
    {
      std::lock_guard lk(mu);
      st.running = admitted;
    }
    send(p, key, type, body, true);
  }

  void answer_error(peer::Peer& p, const Key& key, Ask& a, const mesh::ErrorReply& e) {
    if (opts.metrics && !a.shared) opts.metrics->ask_refused(e.kind);  // one the worker took ends in answered()
    intake.end(key);
    freed_since_trim += a.reader.held();
    a.reader.release();
    a.requested = true;
    if (!a.peer_fin) {
      // Whatever else the client sends on this stream is dropped by the connection, unbuffered,
      // and it is asked to stop; the ask is forgotten once our answer is out.
      if (auto* c = p.sessions().connection(key.first)) (void)c->stop_reading(key.second, kStopAnswered);
      a.peer_fin = true;
    }
    send(p, key, mesh::FrameType::Error, mesh::to_json(e), true);
  }

  // Queues a frame on the ask's stream (gone: the client left, drop it) and writes what fits.
  void send(peer::Peer& p, const Key& key, mesh::FrameType type, std::string_view body, bool last) {
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

  void pump(peer::Peer& p, const Key& key, Ask& a) {
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

  void cancel_all() {
    for (auto& [k, a] : asks) cancel(a);
  }
};

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
  auto impl = std::make_unique<Impl>(worker, opts);
  if (auto m = sidecar::inspect_model_file(worker.config().model)) {
    impl->model_name = m->name;
  }
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
  if (opts.share) {  // every session accepted completed the handshake: ModelShare's rule
    auto share_opts = *opts.share;
    share_opts.sign = opts.identity.sign;
    impl->svc->call([&](peer::Peer&, core::Instant) { impl->share = std::make_unique<ModelShare>(*impl->svc, share_opts); });
  }
  // Housekeeping on the loop: the intake's deadlines need a clock.
  impl->svc->every(milliseconds(250), [raw](peer::Peer& p, core::Instant now) { raw->housekeeping(p, now); });
  return std::unique_ptr<MeshServer>(new MeshServer(std::move(impl)));
}

void MeshServer::set_model(const std::string& name, const std::array<std::uint8_t, 32>& hash) {
  impl_->svc->call([&](peer::Peer&, core::Instant) {
    impl_->model_name = name;
    impl_->model_hash_hex = core::to_hex(hash);
  });
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
