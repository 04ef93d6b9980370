// libqmesh-client's insides (include/qmesh/client.hpp is its API), private to src/client: the
// per-ask channel between the loop thread and an ask's thread, and Client::Impl (discovery,
// sessions, streams). The network runs on the PeerService's loop thread; each ask's control flow
// runs on the thread that asked (or, for an AskStream, on one of the client's pool threads) and
// talks to the loop through call()/post() and a per-ask channel the loop fills with the answer's
// frames (the loop never waits for an ask's thread, so a full pool cannot stall it). client_ask.cpp
// holds an ask's selection, failover and resume; client.cpp the Client and AskStream API;
// client_channel.hpp the per-ask channel, client_xfer.hpp a model download's stream queue
// (client_model.cpp).
#pragma once

#include "qmesh/client.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/mesh/generation_rate.hpp"
#include "core/base/hex.hpp"
#include "core/mesh/frame.hpp"
#include "core/mesh/record.hpp"
#include "core/base/printable.hpp"
#include "core/base/rng.hpp"
#include "core/stream/event.hpp"
#include "core/mesh/worker_select.hpp"
#include "core/model/transfer_frame.hpp"
#include "net/bootstrap_list.hpp"
#include "net/resolve.hpp"
#include "net/dht_await.hpp"
#include "net/identity.hpp"
#include "net/mesh_store.hpp"
#include "net/loop_thread.hpp"
#include "net/peer_service.hpp"
#include "net/task_pool.hpp"
#include "client/client_channel.hpp"
#include "client/client_xfer.hpp"

namespace qmesh {

namespace dht = core::dht;
namespace mesh = core::mesh;
namespace peer = core::peer;
namespace session = core::session;
namespace stream = core::stream;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace client_detail {

constexpr std::uint64_t kResetCancel = 8;
constexpr auto kLookupFresh = milliseconds(2000);    // asks reuse a lookup this recent as it is,
constexpr auto kLookupUsable = milliseconds(10000);  // and one this recent while a new one runs
constexpr auto kSessionIdle = std::chrono::seconds(60);
// AskStreams run on at most this many threads (more wait for one, first come first served; a
// thread idle this long ends); beyond this many in flight, stream() answers "busy".
constexpr std::size_t kStreamThreads = 32, kMaxStreams = 1024;
constexpr auto kStreamThreadIdle = std::chrono::seconds(10);

inline double ms_since(Clock::time_point a, Clock::time_point b = Clock::now()) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace client_detail
using namespace client_detail;

struct AskStream::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pieces;
  bool done = false;
  std::optional<AskResult> result;
  std::optional<Error> error;
  AskCancel cancel;
  std::weak_ptr<Client::Impl> owner;  // under mu, with the ticket: cancel() withdraws a waiting ask
  net::TaskPool::Ticket ticket = 0;
  std::shared_ptr<const std::function<void()>> ready;  // under mu: AskStream::on_ready's fn

  // Called with mu held after a piece or the end was added: wakes next() and returns the
  // on_ready fn for the caller to run once mu is released.
  std::shared_ptr<const std::function<void()>> arrived() {
    cv.notify_all();
    return ready;
  }
};

struct Client::Impl : std::enable_shared_from_this<Impl> {
  ClientOptions opts;
  net::Identity identity;
  dht::Topic topic{};
  std::optional<session::MeshSecret> mesh_secret;  // a private mesh's (ClientOptions::mesh)
  // A topic name's DHT topic: the public hash, or the private mesh's keyed one.
  dht::Topic topic_for(std::string_view name) const {
    return mesh_secret ? session::mesh_topic(*mesh_secret, name) : dht::topic_from_name(name);
  }
  std::unique_ptr<net::PeerService> svc;
  net::DhtAwait await;

  std::mutex mu;  // everything below except the loop-thread maps
  std::condition_variable cv;
  std::unique_ptr<core::Rng> rng;
  struct Sess {
    peer::ConnectId cid = 0;
    session::SessionId sid = 0;
    enum { Connecting, Up, Failed } state = Connecting;
    std::string error;
    Clock::time_point last_used{};
    int active = 0;  // asks streaming on it now
    double handshake_ms = 0;
  };
  std::map<dht::PublicKey, Sess> sessions;  // by worker key
  std::map<dht::PublicKey, Clock::time_point> busy_until;
  std::map<dht::PublicKey, core::mesh::GenerationRate> measured;  // tokens/s this client got from each worker
  std::vector<dht::LookupRecord> records;  // newest per worker from the last lookup
  Clock::time_point looked_up{};
  bool refreshing = false;  // a background lookup runs
  std::set<std::shared_ptr<AskStream::State>> streams;  // stream() asks not ended
  bool closing = false;
  net::TaskPool pool{kStreamThreads, kMaxStreams, kStreamThreadIdle};  // stream() asks run here

  // Loop thread only.
  std::map<std::pair<session::SessionId, stream::StreamId>, std::shared_ptr<Channel>> chans;
  std::map<std::pair<session::SessionId, stream::StreamId>, std::shared_ptr<XferStream>> xfers;
  dht::QueryId refresh_query = 0;

  // ---- loop thread ----
  void on_event(const peer::PeerEvent& e, peer::Peer& p) {
    if (const auto* de = std::get_if<dht::DhtEvent>(&e)) {
      await.on_event(*de);
      if (const auto* d = std::get_if<dht::QueryDone>(de); d && refresh_query != 0 && d->query == refresh_query) {
        refresh_query = 0;
        auto out = await.wait(d->query, milliseconds(0));
        std::lock_guard lk(mu);
        refreshing = false;
        if (out && out->ok) keep_records(out->records);
      }
      return;
    }
    if (const auto* up = std::get_if<peer::SessionUp>(&e)) {
      return connect_outcome(up->id, up->sid, {}, static_cast<double>((up->at - up->handshake_started).count()) / 1000.0);
    }
    if (const auto* f = std::get_if<peer::ConnectFailed>(&e)) return connect_outcome(f->id, 0, f->step + ": " + f->reason);
    const auto* he = std::get_if<session::HostEvent>(&e);
    if (!he) return;
    if (const auto* s = std::get_if<session::StreamActivity>(he)) {
      on_stream(p, s->sid, s->event);
    } else if (const auto* c = std::get_if<session::SessionClosed>(he)) {
      for (auto it = xfers.lower_bound({c->sid, 0}); it != xfers.end() && it->first.first == c->sid;) {
        it->second->q->push(XferEvent{XferEvent::Ended, it->second->holder, std::nullopt, "session closed (" + c->reason + ")"});
        it = xfers.erase(it);
      }
      for (auto it = chans.lower_bound({c->sid, 0}); it != chans.end() && it->first.first == c->sid;) {
        it->second->push(Answer{std::nullopt, "the session to the worker closed (" + c->reason + ")"});
        it = chans.erase(it);
      }
      std::lock_guard lk(mu);
      for (auto it = sessions.begin(); it != sessions.end(); ++it) {
        if (it->second.state == Sess::Up && it->second.sid == c->sid) {
          sessions.erase(it);
          break;
        }
      }
      cv.notify_all();
    }
  }

  void connect_outcome(peer::ConnectId id, session::SessionId sid, const std::string& error, double handshake_ms = 0) {
    std::lock_guard lk(mu);
    for (auto& [key, s] : sessions) {
      if (s.cid != id || s.state != Sess::Connecting) continue;
      if (error.empty()) {
        s.state = Sess::Up;
        s.sid = sid;
        s.handshake_ms = handshake_ms;
      } else {
        s.state = Sess::Failed;
        s.error = error;
      }
    }
    cv.notify_all();
  }

  void on_stream(peer::Peer& p, session::SessionId sid, const stream::Event& ev) {
    const auto id = stream::stream_of(ev);
    if (!id) return;
    if (auto x = xfers.find({sid, *id}); x != xfers.end()) return on_xfer(p, sid, *id, ev, x->second);
    auto it = chans.find({sid, *id});
    if (it == chans.end()) return;
    auto ch = it->second;
    auto* c = p.sessions().connection(sid);
    if (const auto* r = std::get_if<stream::StreamReset>(&ev)) {
      ch->push(Answer{std::nullopt, "the worker reset the stream (code " + std::to_string(r->code) + ")"});
      chans.erase(it);
      return;
    }
    if (!c) return;
    if (std::holds_alternative<stream::Writable>(ev)) return pump(*c, *id, *ch);
    std::uint8_t buf[16384];
    while (const auto n = c->read(*id, buf)) {
      if (!ch->dec.feed(std::span(buf, n))) {
        ch->push(Answer{std::nullopt, "malformed answer from the worker: " + ch->dec.error()});
        (void)c->reset(*id, kResetCancel);
        chans.erase(it);
        return;
      }
      while (auto f = ch->dec.next()) {
        if (!ch->push(Answer{std::move(*f), {}})) {
          ch->push(Answer{std::nullopt, "the worker sent more than the ask reads"});
          (void)c->reset(*id, kResetCancel);
          chans.erase(it);
          return;
        }
      }
    }
    if (std::holds_alternative<stream::Finished>(ev)) {
      ch->push(Answer{std::nullopt, ch->dec.partial() ? "the answer was cut short" : "the worker ended the answer"});
      chans.erase(it);
    }
  }

  static void pump(stream::Connection& c, stream::StreamId id, Channel& ch) {
    while (ch.out_off < ch.out.size()) {
      const auto n = c.write(id, std::span(reinterpret_cast<const std::uint8_t*>(ch.out.data()) + ch.out_off,
                                           ch.out.size() - ch.out_off));
      if (n == 0) return;
      ch.out_off += n;
    }
    if (ch.fin_pending) {
      ch.fin_pending = false;
      (void)c.finish(id);
    }
  }

  // ---- any thread ----

  // Under mu: the newest record per worker of a lookup's answer.
  void keep_records(const std::vector<dht::LookupRecord>& found) {
    std::map<dht::PublicKey, const dht::LookupRecord*> newest;
    for (const auto& r : found) {
      auto& slot = newest[r.record.body.pubkey];
      if (!slot || slot->record.body.seq <= r.record.body.seq) slot = &r;
    }
    records.clear();
    for (auto& [k, r] : newest) records.push_back(*r);
    looked_up = Clock::now();
  }

  // The newest record per worker; a new lookup when the last is older than max_age. A lookup
  // younger than usable is returned at once while a new one runs in the background, so that an
  // ask does not wait for the DHT. Waits at most 15 s and never past deadline; gives up when
  // cancelled turns true.
  std::vector<dht::LookupRecord> lookup(milliseconds max_age, Clock::time_point deadline = Clock::time_point::max(),
                                        const std::atomic<bool>* cancelled = nullptr, milliseconds usable = {}) {
    {
      std::lock_guard lk(mu);
      const auto age = Clock::now() - looked_up;
      if (looked_up != Clock::time_point{} && age < max_age) return records;
      if (looked_up != Clock::time_point{} && age < usable && !records.empty()) {
        if (!refreshing) {
          refreshing = true;
          svc->post([this](peer::Peer& p, core::Instant now) {
            refresh_query = p.dht().lookup(topic, now);
            await.expect(refresh_query);
          });
        }
        return records;
      }
    }
    const auto q = svc->call([&](peer::Peer& p, core::Instant now) {
      auto id = p.dht().lookup(topic, now);
      await.expect(id);
      return id;
    });
    const auto limit = std::min(Clock::now() + std::chrono::seconds(15), deadline);
    auto out = await.wait(q, std::chrono::duration_cast<milliseconds>(limit - Clock::now()), cancelled);
    if (cancelled && *cancelled) throw Error("cancelled", "the ask was cancelled");
    // Past the ask's deadline: the ask's timeout; else the DHT did not answer in 15 s: the network.
    if (!out && Clock::now() >= deadline) throw Error("timeout", "looking up the workers of '" + opts.topic + "' took too long");
    if (!out) throw Error("network", "the DHT did not answer a lookup of the workers of '" + opts.topic + "' within 15 s");
    std::lock_guard lk(mu);
    keep_records(out->records);
    return records;
  }

  std::map<dht::PublicKey, double> rtts() {
    std::vector<std::pair<dht::PublicKey, session::SessionId>> up;
    {
      std::lock_guard lk(mu);
      for (const auto& [k, s] : sessions)
        if (s.state == Sess::Up) up.emplace_back(k, s.sid);
    }
    if (up.empty()) return {};
    return svc->call([&](peer::Peer& p, core::Instant) {
      std::map<dht::PublicKey, double> out;
      for (const auto& [k, sid] : up) {
        if (auto info = p.sessions().info(sid); info && info->stats.srtt.count() > 0)
          out[k] = static_cast<double>(info->stats.srtt.count()) / 1000.0;
      }
      return out;
    });
  }

  // The session to the worker of `rec`: an open one, or a new one (rendezvous, relayed
  // handshake; the punch to a direct path goes on in the background).
  // `handshake_ms`: set to the handshake's time when this call opened the session.
  session::SessionId session_for(const dht::LookupRecord& rec, Clock::time_point deadline, const std::atomic<bool>& cancelled,
                                 double* handshake_ms = nullptr, const dht::Topic* via = nullptr) {
    const auto key = rec.record.body.pubkey;
    std::unique_lock lk(mu);
    auto it = sessions.find(key);
    if (it != sessions.end() && it->second.state == Sess::Failed) sessions.erase(it), it = sessions.end();
    const bool opening = it == sessions.end();
    if (opening) {
      Sess s;
      s.state = Sess::Connecting;
      sessions[key] = s;
      lk.unlock();
      const auto cid = svc->call([&](peer::Peer& p, core::Instant now) {
        const auto id = p.connect(via ? *via : topic, rec, now);
        std::lock_guard g(mu);  // before any outcome can be handled: we are on the loop thread
        sessions[key].cid = id;
        return id;
      });
      (void)cid;
      lk.lock();
    }
    auto opened = [&] {
      auto i = sessions.find(key);
      return i == sessions.end() || i->second.state != Sess::Connecting;
    };
    while (!opened() && Clock::now() < deadline && !cancelled) cv.wait_until(lk, deadline);  // wake_waiters() on a cancel
    if (cancelled && !opened()) throw Error("cancelled", "the ask was cancelled");
    it = sessions.find(key);
    if (it == sessions.end()) throw Error("network", "the session to the worker closed while opening");
    if (it->second.state == Sess::Connecting) throw Error("timeout", "no session to the worker in time");
    if (it->second.state == Sess::Failed) {
      auto why = it->second.error;
      sessions.erase(it);
      throw Error("network", "cannot reach the worker: " + why);
    }
    it->second.last_used = Clock::now();
    if (opening && handshake_ms) *handshake_ms = it->second.handshake_ms;
    return it->second.sid;
  }

  // Opens a stream on sid and sends the request; the channel receives the answer.
  std::pair<stream::StreamId, std::shared_ptr<Channel>> send_request(session::SessionId sid, const mesh::Request& req) {
    auto ch = std::make_shared<Channel>();
    const auto body = mesh::to_json(req);
    const auto frame = mesh::encode_frame(mesh::FrameType::Request, body);
    ch->out.assign(frame.begin(), frame.end());
    ch->fin_pending = true;
    auto id = svc->call([&](peer::Peer& p, core::Instant) -> std::optional<stream::StreamId> {
      auto* c = p.sessions().connection(sid);
      if (!c) return std::nullopt;
      auto s = c->open_stream();
      if (!s) return std::nullopt;
      chans[{sid, *s}] = ch;
      pump(*c, *s, *ch);
      return *s;
    });
    if (!id) throw Error("network", "cannot open a stream to the worker (session gone or too many asks at once)");
    return {*id, ch};
  }

  // The ask is done with the stream: forget its channel (later frames are dropped) and, unless
  // the answer arrived whole, reset it so the worker stops generating.
  void release_stream(session::SessionId sid, stream::StreamId id, bool reset) {
    svc->post([this, sid, id, reset](peer::Peer& p, core::Instant) {
      chans.erase({sid, id});
      if (reset) {
        if (auto* c = p.sessions().connection(sid)) (void)c->reset(id, kResetCancel);
      }
    });
  }
  void cancel_stream(session::SessionId sid, stream::StreamId id) { release_stream(sid, id, true); }

  // An ask streaming on a session: the session is not idle meanwhile.
  struct InFlight {
    Impl& m;
    dht::PublicKey key;
    session::SessionId sid;
    stream::StreamId id;
    bool whole = false;  // DONE or ERROR arrived
    InFlight(Impl& impl, const dht::PublicKey& k, session::SessionId s, stream::StreamId i) : m(impl), key(k), sid(s), id(i) {
      std::lock_guard lk(m.mu);
      if (auto it = m.sessions.find(key); it != m.sessions.end() && it->second.sid == sid) ++it->second.active;
    }
    ~InFlight() {
      m.release_stream(sid, id, !whole);
      std::lock_guard lk(m.mu);
      if (auto it = m.sessions.find(key); it != m.sessions.end() && it->second.sid == sid) {
        --it->second.active;
        it->second.last_used = Clock::now();
      }
    }
  };

  void close_idle_sessions() {
    std::vector<session::SessionId> idle;
    {
      std::lock_guard lk(mu);
      for (auto it = sessions.begin(); it != sessions.end();) {
        if (it->second.state == Sess::Up && it->second.active == 0 && Clock::now() - it->second.last_used > kSessionIdle) {
          idle.push_back(it->second.sid);
          it = sessions.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (idle.empty()) return;
    svc->post([idle](peer::Peer& p, core::Instant now) {
      for (auto sid : idle) p.sessions().close(sid, 0, "idle", now);
    });
  }

  WorkerInfo info(const dht::LookupRecord& r, const mesh::Candidate& c, double tps_cap, double median) const {
    const auto& w = c.record;
    WorkerInfo i;
    i.id = core::to_hex(r.record.body.pubkey);
    i.endpoint = r.from.to_string();
    i.available = w.available;
    for (const auto& m : w.models) {
      WorkerModel wm;
      wm.name = m.name;
      wm.root = core::to_hex(m.root);
      wm.architecture = m.architecture;
      wm.quantization = m.quantization;
      wm.size_class = mesh::size_class(m.parameters);
      wm.parameters = m.parameters;
      wm.context = m.context;
      wm.loaded = m.loaded;
      wm.chat_template = m.chat_template;
      wm.slots_total = m.slots_total;
      wm.slots_busy = m.slots_busy;
      wm.prompt_tokens_per_second = m.prompt_tps();
      wm.generation_tokens_per_second = m.generation_tps();
      i.models.push_back(std::move(wm));
    }
    i.models_omitted = w.models_omitted;
    if (!i.models.empty()) {
      const auto& f = i.models.front();
      i.model = f.name;
      i.model_hash = f.root;
      i.architecture = f.architecture;
      i.quantization = f.quantization;
      i.parameters = f.parameters;
      i.context = f.context;
      i.slots_total = f.slots_total;
      i.slots_busy = f.slots_busy;
      i.prompt_tokens_per_second = f.prompt_tokens_per_second;
      i.generation_tokens_per_second = f.generation_tokens_per_second;
    }
    i.queue_length = w.queue_length;
    i.queue_capacity = w.queue_capacity;
    i.cpu = w.cpu_fraction();
    i.memory = w.memory_fraction();
    i.max_tokens = w.max_tokens;
    i.software = w.software;
    i.nat = std::string(core::nat::to_string(w.nat));
    i.expires_in_s = r.record.remaining_s;
    i.score = mesh::ineligible(c, "").empty() ? mesh::score(c, {}, tps_cap, median) : 0;
    return i;
  }

  // Keeps what this client measured from a worker's answers: selection counts the worker's
  // claimed speed only up to a multiple of it. Summed over answers (GenerationRate): one short
  // answer whose tokens came in one packet says nothing about the worker's speed.
  void note_speed(const dht::PublicKey& key, std::optional<Clock::time_point> first, std::size_t tokens,
                  Clock::time_point end) {
    if (!first || tokens < 2) return;
    std::lock_guard lk(mu);
    if (!measured.count(key) && measured.size() >= 4096) measured.erase(measured.begin());  // bounded
    measured[key].add(tokens - 1, ms_since(*first, end) / 1000.0, net::to_instant(end));
  }
  std::optional<double> measured_tps(const dht::PublicKey& key) {  // under mu
    auto m = measured.find(key);
    return m == measured.end() ? std::nullopt : m->second.tokens_per_second(net::to_instant(Clock::now()));
  }

  // Wakes asks waiting on the Client (a session opening, a DHT lookup) to look at their cancel flag.
  void wake_waiters() {
    { std::lock_guard lk(mu); }  // a waiter is either before its check of the flag or inside wait
    cv.notify_all();
    await.wake();
  }

  // A model download (client_model.cpp).
  void on_xfer(peer::Peer& p, session::SessionId sid, stream::StreamId id, const stream::Event& ev,
               std::shared_ptr<XferStream> x);
  static void pump_xfer(stream::Connection& c, stream::StreamId id, XferStream& x);
  std::vector<dht::LookupRecord> lookup_topic(const dht::Topic& t, milliseconds limit, const std::atomic<bool>* cancelled);

  AskResult run_ask(const AskOptions& o, const std::function<void(std::string_view)>& emit, AskCancel& cancel);
};

}  // namespace qmesh
