// libqmesh-client (include/qmesh/client.hpp): discovery, selection, sessions, streaming, failover.
// The network runs on the PeerService's loop thread; each ask's control flow runs on the thread
// that asked (or the AskStream's thread) and talks to the loop through call()/post() and a
// per-ask channel the loop fills with the answer's frames.
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

#include "core/generation_rate.hpp"
#include "core/hex.hpp"
#include "core/mesh_frame.hpp"
#include "core/mesh_record.hpp"
#include "core/printable.hpp"
#include "core/rng.hpp"
#include "core/stream_event.hpp"
#include "core/worker_select.hpp"
#include "net/bootstrap_list.hpp"
#include "net/dht_await.hpp"
#include "net/identity.hpp"
#include "net/peer_service.hpp"

namespace qmesh {

namespace dht = core::dht;
namespace mesh = core::mesh;
namespace peer = core::peer;
namespace session = core::session;
namespace stream = core::stream;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr std::uint64_t kResetCancel = 8;
constexpr auto kLookupFresh = milliseconds(2000);    // asks reuse a lookup this recent as it is,
constexpr auto kLookupUsable = milliseconds(10000);  // and one this recent while a new one runs
constexpr auto kSessionIdle = std::chrono::seconds(60);

dht::TimePoint ms(peer::Instant t) { return std::chrono::duration_cast<dht::TimePoint>(t); }
double ms_since(Clock::time_point a, Clock::time_point b = Clock::now()) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

// ---- the per-ask channel between the loop thread and the ask's thread ----

struct Answer {
  std::optional<mesh::Frame> frame;
  std::string ended;  // set: the stream is over without (more) frames, and why
};

struct Channel {
  static constexpr std::size_t kMaxQueued = 8 << 20;  // answer bytes not yet taken by the ask
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Answer> q;
  std::size_t queued = 0;  // under mu
  // Loop thread only.
  mesh::FrameDecoder dec;
  std::string out;
  std::size_t out_off = 0;
  bool fin_pending = false;

  // False when the ask is this far behind: the worker sends faster than anyone reads.
  bool push(Answer a) {
    bool ok;
    {
      std::lock_guard lk(mu);
      queued += a.frame ? a.frame->body.size() : 0;
      ok = queued <= kMaxQueued;
      q.push_back(std::move(a));
    }
    cv.notify_all();
    return ok;
  }
  std::optional<Answer> pop(milliseconds limit) {
    std::unique_lock lk(mu);
    cv.wait_for(lk, limit, [&] { return !q.empty(); });
    if (q.empty()) return std::nullopt;
    auto a = std::move(q.front());
    q.pop_front();
    queued -= a.frame ? a.frame->body.size() : 0;
    return a;
  }
};

struct AskStream::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pieces;
  bool done = false;
  std::optional<AskResult> result;
  std::optional<Error> error;
  std::atomic<bool> cancelled{false};
};

struct Client::Impl : std::enable_shared_from_this<Impl> {
  ClientOptions opts;
  net::Identity identity;
  dht::Topic topic{};
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
  std::map<dht::PublicKey, core::GenerationRate> measured;  // tokens/s this client got from each worker
  std::vector<dht::LookupRecord> records;  // newest per worker from the last lookup
  Clock::time_point looked_up{};
  bool refreshing = false;  // a background lookup runs
  std::list<std::pair<std::thread, std::shared_ptr<AskStream::State>>> threads;  // stream() asks
  bool closing = false;

  // Loop thread only.
  std::map<std::pair<session::SessionId, stream::StreamId>, std::shared_ptr<Channel>> chans;
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
          svc->post([this](peer::Peer& p, peer::Instant now) {
            refresh_query = p.dht().lookup(topic, ms(now));
            await.expect(refresh_query);
          });
        }
        return records;
      }
    }
    const auto q = svc->call([&](peer::Peer& p, peer::Instant now) {
      auto id = p.dht().lookup(topic, ms(now));
      await.expect(id);
      return id;
    });
    const auto limit = std::min(Clock::now() + std::chrono::seconds(15), deadline);
    auto out = await.wait(q, std::chrono::duration_cast<milliseconds>(limit - Clock::now()), cancelled);
    if (cancelled && *cancelled) throw Error("cancelled", "the ask was cancelled");
    if (!out) throw Error("timeout", "looking up the workers of '" + opts.topic + "' took too long");
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
    return svc->call([&](peer::Peer& p, peer::Instant) {
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
                                 double* handshake_ms = nullptr) {
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
      const auto cid = svc->call([&](peer::Peer& p, peer::Instant now) {
        const auto id = p.connect(topic, rec, now);
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
    while (!opened() && Clock::now() < deadline && !cancelled)
      cv.wait_until(lk, std::min(deadline, Clock::now() + milliseconds(50)));
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
    auto id = svc->call([&](peer::Peer& p, peer::Instant) -> std::optional<stream::StreamId> {
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
    svc->post([this, sid, id, reset](peer::Peer& p, peer::Instant) {
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
    svc->post([idle](peer::Peer& p, peer::Instant now) {
      for (auto sid : idle) p.sessions().close(sid, 0, "idle", now);
    });
  }

  WorkerInfo info(const dht::LookupRecord& r, const mesh::Candidate& c, double tps_cap, double median) const {
    const auto& w = c.record;
    WorkerInfo i;
    i.id = core::to_hex(r.record.body.pubkey);
    i.endpoint = r.from.to_string();
    i.available = w.available;
    i.model = w.model;
    i.model_hash = core::to_hex(w.model_hash);
    i.architecture = w.architecture;
    i.quantization = w.quantization;
    i.parameters = w.parameters;
    i.context = w.context;
    i.slots_total = w.slots_total;
    i.slots_busy = w.slots_busy;
    i.queue_length = w.queue_length;
    i.queue_capacity = w.queue_capacity;
    i.cpu = w.cpu_fraction();
    i.memory = w.memory_fraction();
    i.prompt_tokens_per_second = w.prompt_tps();
    i.generation_tokens_per_second = w.generation_tps();
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
    measured[key].add(tokens - 1, ms_since(*first, end) / 1000.0, since_start(end));
  }
  std::optional<double> measured_tps(const dht::PublicKey& key) {  // under mu
    auto m = measured.find(key);
    return m == measured.end() ? std::nullopt : m->second.tokens_per_second(since_start(Clock::now()));
  }
  Clock::time_point started = Clock::now();
  milliseconds since_start(Clock::time_point t) const { return std::chrono::duration_cast<milliseconds>(t - started); }

  AskResult run_ask(const AskOptions& o, const std::function<void(std::string_view)>& emit,
                    const std::atomic<bool>& cancelled);
};

// ---- the ask ----

namespace {

// A prompt that is not UTF-8 would reach the model with its bad bytes replaced: refuse it instead.
void check_utf8(std::string_view text, const char* what) {
  if (auto at = core::invalid_utf8_offset(text))
    throw Error("bad_request", std::string(what) + " is not valid UTF-8 (byte offset " + std::to_string(*at) + ")");
}

mesh::Request base_request(const AskOptions& o) {
  check_utf8(o.prompt, "the prompt");
  check_utf8(o.system, "the system message");
  for (const auto& m : o.messages) check_utf8(m.content, "a message");
  if (o.max_tokens < 1 || o.max_tokens > mesh::kMaxAskTokens)
    throw Error("bad_request", "max_tokens must be 1.." + std::to_string(mesh::kMaxAskTokens));
  if (o.temperature && !(*o.temperature >= 0 && *o.temperature <= 2))
    throw Error("bad_request", "temperature must be 0..2");
  mesh::Request r;
  if (o.raw) {
    if (!o.messages.empty()) throw Error("bad_request", "a raw completion takes a prompt, not messages");
    r.prompt = o.prompt;
  } else {
    if (!o.system.empty()) r.messages.push_back({"system", o.system});
    for (const auto& m : o.messages) r.messages.push_back({m.role, m.content});
    if (!o.prompt.empty() || o.messages.empty()) r.messages.push_back({"user", o.prompt});
  }
  r.max_tokens = o.max_tokens;
  r.temperature = o.temperature;
  r.seed = o.seed;
  r.model = o.model;
  // The worker checks it again; checking here turns a bad ask into an error before any network.
  if (auto v = mesh::parse_request(mesh::to_json(r)); !v) throw Error("bad_request", v.error().message);
  return r;
}

// When every other worker is out of this ask, a worker that lost its llama-server and said it is
// coming back gets the ask again after its hint (bounded by the deadline): its index in `of`.
// Its record may say "not available" meanwhile; the worker itself waits for llama-server.
std::optional<std::size_t> wait_for_comeback(const std::vector<const dht::LookupRecord*>& of,
                                             std::map<dht::PublicKey, std::uint32_t>& coming_back,
                                             std::set<dht::PublicKey>& failed, Clock::time_point deadline,
                                             const std::atomic<bool>& cancelled) {
  for (std::size_t i = 0; i < of.size(); ++i) {
    const auto key = of[i]->record.body.pubkey;
    auto it = coming_back.find(key);
    if (it == coming_back.end()) continue;
    const auto until = std::min(deadline, Clock::now() + milliseconds(it->second));
    while (Clock::now() < until && !cancelled) std::this_thread::sleep_for(milliseconds(10));
    if (cancelled) throw Error("cancelled", "the ask was cancelled");
    coming_back.erase(it);
    failed.erase(key);
    return i;
  }
  return std::nullopt;
}

}  // namespace

AskResult Client::Impl::run_ask(const AskOptions& o, const std::function<void(std::string_view)>& emit,
                                const std::atomic<bool>& cancelled) {
  const auto t0 = Clock::now();
  const auto deadline = t0 + o.timeout;
  mesh::Request req = base_request(o);
  close_idle_sessions();
  AskResult res;
  std::set<dht::PublicKey> failed;  // workers that failed this ask
  // Workers that lost their llama-server in this ask and said when to retry: the supervisor is
  // bringing it back. Tried again, after the hint, when no other worker is left.
  std::map<dht::PublicKey, std::uint32_t> coming_back;
  std::optional<Clock::time_point> first_token;
  std::string last_error = "no worker could be reached";
  std::string last_kind = "network";
  bool saw_busy = false;
  int bad_requests = 0;
  std::uint32_t busy_retry_ms = 0;
  for (int attempt = 0; attempt < std::max(1, o.max_attempts); ++attempt) {
    if (cancelled) throw Error("cancelled", "the ask was cancelled");
    if (Clock::now() >= deadline) throw Error("timeout", "no answer within " + std::to_string(o.timeout.count()) + " ms");
    // After a failure, look again: the failed worker may be gone and others may have come.
    const auto recs = attempt == 0 ? lookup(kLookupFresh, deadline, &cancelled, kLookupUsable)
                                   : lookup(milliseconds(500), deadline, &cancelled);
    const auto rtt = rtts();
    std::vector<mesh::Candidate> cands;
    std::vector<const dht::LookupRecord*> of;
    std::size_t busy_now = 0, usable = 0;
    {
      std::lock_guard lk(mu);
      for (const auto& r : recs) {
        auto w = mesh::decode_worker_record(r.record.body.payload);
        if (!w) continue;
        const auto& key = r.record.body.pubkey;
        const bool busy = busy_until.count(key) && busy_until[key] > Clock::now();
        if (busy) ++busy_now;
        if (w->available && mesh::model_matches(*w, o.model)) ++usable;
        auto it = rtt.find(key);
        mesh::Candidate c{*w, it != rtt.end() ? std::optional(it->second) : std::nullopt, busy || failed.count(key) > 0, std::nullopt};
        c.measured_tps = measured_tps(key);
        cands.push_back(std::move(c));
        of.push_back(&r);
      }
    }
    auto pick = [&] {
      mesh::SelectConfig sc;
      sc.ask_tokens = std::max(1, req.max_tokens - static_cast<int>(res.tokens));  // what is left to generate
      std::lock_guard lk(mu);
      return mesh::select_worker(cands, o.model, *rng, sc);
    }();
    if (!pick) pick = wait_for_comeback(of, coming_back, failed, deadline, cancelled);
    if (!pick) {
      if (recs.empty()) throw Error("no_workers", "no worker announces '" + opts.topic + "'");
      if (usable == 0)
        throw Error("no_workers", o.model.empty() ? "no worker of '" + opts.topic + "' is ready"
                                                  : "no ready worker serves model '" + o.model + "'");
      if (busy_now > 0 && attempt + 1 < o.max_attempts) {
        // Every worker said busy: wait for the earliest retry hint (with jitter, so that clients
        // turned away together do not return together), then look again.
        Clock::time_point until;
        {
          std::lock_guard lk(mu);
          until = Clock::time_point::max();
          for (const auto& [k, t] : busy_until)
            if (t > Clock::now()) until = std::min(until, t);
          if (until == Clock::time_point::max()) until = Clock::now();  // every hint ran out meanwhile
          const auto wait = until - Clock::now();
          until = Clock::now() + std::chrono::duration_cast<Clock::duration>(wait * (0.75 + 0.5 * rng->uniform()));
        }
        if (until >= deadline) throw Error("busy", "all workers are busy; retry in " + std::to_string(busy_retry_ms) + " ms");
        while (Clock::now() < until && !cancelled) std::this_thread::sleep_for(milliseconds(10));
        continue;
      }
      if (saw_busy || busy_now > 0)
        throw Error("busy", "all workers are busy; retry in " + std::to_string(std::max<std::uint32_t>(busy_retry_ms, 50)) + " ms");
      // Every usable worker failed this ask already.
      throw Error(last_kind, "every worker tried failed (" + std::to_string(res.workers_tried.size()) +
                                 "); the last: " + last_error);
    }
    const auto& rec = *of[*pick];
    const auto key = rec.record.body.pubkey;
    const auto wid = core::to_hex(key);
    if (!res.workers_tried.empty()) ++res.retries;
    res.workers_tried.push_back(wid);
    if (!res.text.empty()) res.resumed = true;
    session::SessionId sid = 0;
    try {
      // A worker that does not answer in a few seconds is likely gone (its record outlives it by
      // up to a minute): try the next one rather than wait the whole connect timeout.
      const auto limit = cands.size() > 1 ? milliseconds(3000) : opts.join_timeout;
      sid = session_for(rec, std::min(deadline, Clock::now() + limit), cancelled, &res.handshake_ms);
    } catch (const Error& e) {
      if (e.kind() == "cancelled") throw;
      failed.insert(key);
      last_error = e.what();
      last_kind = "network";
      continue;
    }
    mesh::Request r = req;
    r.resume = res.text;
    r.max_tokens = req.max_tokens - static_cast<int>(res.tokens);
    if (r.max_tokens <= 0) break;  // the earlier worker gave every token asked for
    if (!r.resume.empty() && mesh::to_json(r).size() > mesh::kMaxRequestBytes)
      throw Error(last_kind, last_error + "; the prompt and the answer so far are too long to resume on another worker");
    stream::StreamId id = 0;
    std::shared_ptr<Channel> ch;
    try {
      std::tie(id, ch) = send_request(sid, r);
    } catch (const Error& e) {
      failed.insert(key);
      last_error = e.what();
      continue;
    }
    InFlight flight(*this, key, sid, id);
    // A worker may not send more than was asked (a little slack for how llama-server counts).
    const std::uint64_t max_tokens = static_cast<std::uint64_t>(req.max_tokens) + 8;
    const std::size_t max_text = static_cast<std::size_t>(max_tokens) * 1024;
    bool retry = false;
    std::optional<Clock::time_point> attempt_first;  // this worker's first token
    std::size_t attempt_tokens = 0;
    while (!retry) {
      if (cancelled) throw Error("cancelled", "the ask was cancelled");
      if (Clock::now() >= deadline) throw Error("timeout", "no answer within " + std::to_string(o.timeout.count()) + " ms");
      auto a = ch->pop(milliseconds(50));
      if (!a) continue;
      if (!a->frame) {  // the stream ended without DONE or ERROR: the worker is lost
        failed.insert(key);
        last_error = "worker " + wid.substr(0, 12) + ": " + a->ended;
        last_kind = "network";
        retry = true;
        break;
      }
      const auto& f = *a->frame;
      if (f.type == mesh::FrameType::Token) {
        if (res.tokens + 1 > max_tokens || res.text.size() + f.body.size() > max_text) {
          failed.insert(key);
          last_error = "worker " + wid.substr(0, 12) + " sent more than was asked";
          last_kind = "network";
          retry = true;
          break;
        }
        if (!first_token) first_token = Clock::now();
        if (!attempt_first) attempt_first = Clock::now();
        ++attempt_tokens;
        res.text += f.body;
        ++res.tokens;
        if (emit) emit(f.body);
      } else if (f.type == mesh::FrameType::Done) {
        flight.whole = true;
        auto d = mesh::parse_done(f.body);
        res.stop_reason = d ? d->stop_reason : "";
        res.worker_ttft_ms = d ? d->ttft_ms : 0;
        res.worker = wid;
        const auto end = Clock::now();
        res.total_ms = ms_since(t0, end);
        res.ttft_ms = first_token ? ms_since(t0, *first_token) : res.total_ms;
        const double gen_ms = first_token ? ms_since(*first_token, end) : 0;
        res.tokens_per_second = gen_ms > 0 && res.tokens > 1 ? (res.tokens - 1) * 1000.0 / gen_ms : 0;
        note_speed(key, attempt_first, attempt_tokens, end);
        return res;
      } else if (f.type == mesh::FrameType::Error) {
        flight.whole = true;
        auto e = mesh::parse_error_reply(f.body);
        const std::string kind = e ? e->kind : "internal";
        const std::string msg = e ? e->message : "malformed error from the worker";
        // The client checked the request already, so one worker's "bad request" may be its own
        // limit (a smaller context): a second worker decides.
        if (kind == "bad_request" && ++bad_requests >= 2) throw Error("bad_request", msg);
        if (kind == "worker_lost" && e && e->retry_after_ms > 0) coming_back[key] = e->retry_after_ms;
        if (kind == "busy") {
          saw_busy = true;
          busy_retry_ms = std::max(busy_retry_ms, e ? e->retry_after_ms : 1000u);
          std::lock_guard lk(mu);
          busy_until[key] = Clock::now() + milliseconds(e ? e->retry_after_ms : 1000);
        } else {
          failed.insert(key);
        }
        last_error = "worker " + wid.substr(0, 12) + ": " + msg;
        last_kind = kind == "busy" || kind == "bad_request" ? kind : "network";
        retry = true;
      } else {
        failed.insert(key);
        last_error = "worker " + wid.substr(0, 12) + " sent an unexpected frame";
        retry = true;
      }
    }
  }
  if (res.tokens > 0 && req.max_tokens - static_cast<int>(res.tokens) <= 0) {
    res.stop_reason = "limit";
    res.worker = res.workers_tried.empty() ? "" : res.workers_tried.back();
    res.total_ms = ms_since(t0);
    res.ttft_ms = first_token ? ms_since(t0, *first_token) : res.total_ms;
    return res;
  }
  if (saw_busy && last_kind == "busy")
    throw Error("busy", "all workers are busy; retry in " + std::to_string(std::max<std::uint32_t>(busy_retry_ms, 1000)) + " ms");
  throw Error(last_kind, "gave up after " + std::to_string(res.workers_tried.size()) + " workers: " + last_error);
}

// ---- Client ----

Client::Client(ClientOptions options) : impl_(std::make_shared<Impl>()) {
  if (sodium_init() < 0) throw Error("config", "libsodium failed to initialize");
  auto& m = *impl_;
  m.opts = std::move(options);
  if (m.opts.topic.empty() || m.opts.topic.size() > 255) throw Error("config", "topic must be 1..255 bytes");
  m.topic = dht::topic_from_name(m.opts.topic);
  std::uint64_t seed = 0;
  randombytes_buf(&seed, sizeof seed);
  m.rng = std::make_unique<core::Rng>(seed);
  if (m.opts.identity.empty()) {
    m.identity = net::ephemeral_identity();
  } else {
    auto id = net::load_or_create_identity(m.opts.identity);
    if (!id) throw Error("config", id.error().message);
    m.identity = *id;
  }
  auto boot_texts = m.opts.bootstrap;
  if (boot_texts.empty()) {
    auto listed = net::config_file_bootstrap();
    if (!listed) throw Error("config", listed.error().message);
    boot_texts = *listed;
  }
  std::vector<dht::Endpoint> boot;
  for (const auto& b : boot_texts) {
    auto e = dht::Endpoint::parse(b);
    if (!e || e->port == 0) throw Error("config", "bootstrap " + b + ": expected IP:PORT (e.g. 127.0.0.1:49737 or [::1]:49737)");
    boot.push_back(*e);
  }
  if (boot.empty()) boot = net::discover_lan_dht_nodes(std::chrono::seconds(3));
  if (boot.empty())
    throw Error("config", "no bootstrap node: none found on the LAN; give --bootstrap HOST:PORT or list \"bootstrap\" in " +
                              net::default_config_dir() + "/config.json");
  net::PeerServiceOptions so;
  if (!m.opts.listen.empty()) {
    const auto& l = m.opts.listen;
    auto at = dht::Endpoint::parse(l.find(':') == std::string::npos || l.back() == ']' ? l + ":0" : l);
    if (!at) throw Error("config", "listen " + l + ": expected HOST[:PORT]");
    (at->family == 6 ? so.listen_v6 : so.listen_v4) = *at;
  } else {
    for (const auto& b : boot) {
      dht::Endpoint any;
      any.family = b.family;
      (b.family == 6 ? so.listen_v6 : so.listen_v4) = any;
    }
  }
  so.config.dht.ephemeral = true;
  so.config.dht.report_addresses = true;
  so.config.serve_relay = false;
  so.config.punch = m.opts.punch;
  so.config.sessions.identity = m.identity.session;
  so.config.sessions.accept_incoming = false;
  // A worker that vanishes (killed, unplugged) must be noticed within seconds, not the default 30.
  so.config.sessions.connection.keepalive = milliseconds(1000);
  so.config.sessions.connection.idle_timeout = milliseconds(5000);
  std::weak_ptr<Impl> weak = impl_;
  Impl* raw = impl_.get();
  auto svc = net::PeerService::start(so, [raw](const peer::PeerEvent& e, peer::Peer& p, peer::Instant) { raw->on_event(e, p); });
  if (!svc) throw Error("network", svc.error().message);
  m.svc = std::move(*svc);
  const auto q = m.svc->call([&](peer::Peer& p, peer::Instant now) {
    auto id = p.dht().bootstrap(boot, ms(now));
    m.await.expect(id);
    return id;
  });
  auto joined = m.await.wait(q, m.opts.join_timeout);
  if (!joined || !joined->ok) {
    std::string list;
    for (const auto& b : boot) list += (list.empty() ? "" : ", ") + b.to_string();
    m.svc->stop();
    throw Error("network", "no DHT node answered at " + list + " (is a bootstrap node running there?)");
  }
}

Client::~Client() {
  std::list<std::pair<std::thread, std::shared_ptr<AskStream::State>>> ts;
  {
    std::lock_guard lk(impl_->mu);
    impl_->closing = true;
    ts.swap(impl_->threads);
  }
  for (auto& t : ts) t.second->cancelled = true;  // nobody will read them any more
  for (auto& t : ts) t.first.join();  // AskStreams end: their owners cancel them or they time out
  if (impl_->svc) {
    std::vector<session::SessionId> open;
    {
      std::lock_guard lk(impl_->mu);
      for (const auto& [k, s] : impl_->sessions)
        if (s.state == Impl::Sess::Up) open.push_back(s.sid);
    }
    try {
      impl_->svc->call([&open](peer::Peer& p, peer::Instant now) {
        for (auto sid : open) p.sessions().close(sid, 0, "client closing", now);
      });
      std::this_thread::sleep_for(milliseconds(20));  // let the CLOSEs go out
    } catch (const std::exception&) {
    }
    impl_->svc->stop();
  }
}

std::string Client::id() const { return core::to_hex(impl_->identity.sign.public_key); }

std::vector<WorkerInfo> Client::workers() {
  auto recs = impl_->lookup(milliseconds(0));
  auto rtt = impl_->rtts();
  std::vector<std::pair<const dht::LookupRecord*, mesh::Candidate>> cands;
  {
    std::lock_guard lk(impl_->mu);
    for (const auto& r : recs) {
      auto w = mesh::decode_worker_record(r.record.body.payload);
      if (!w) continue;
      const auto& key = r.record.body.pubkey;
      auto it = rtt.find(key);
      mesh::Candidate c{*w, it != rtt.end() ? std::optional(it->second) : std::nullopt, false, std::nullopt};
      c.measured_tps = impl_->measured_tps(key);
      cands.emplace_back(&r, std::move(c));
    }
  }
  std::vector<mesh::Candidate> all;
  for (const auto& [r, c] : cands) all.push_back(c);
  const double cap = mesh::claim_limit(all, "");
  const double median = mesh::median_claim(all, "");
  std::vector<WorkerInfo> out;
  for (const auto& [r, c] : cands) out.push_back(impl_->info(*r, c, cap, median));
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
  return out;
}

AskResult Client::ask(const AskOptions& options, const TokenCallback& on_token) {
  std::atomic<bool> never{false};
  return impl_->run_ask(options, on_token, never);
}

AskStream Client::stream(const AskOptions& options) {
  auto st = std::make_shared<AskStream::State>();
  auto impl = impl_;
  std::lock_guard lk(impl->mu);
  if (impl->closing) throw Error("cancelled", "the client is closing");
  // Join the threads of asks that ended, so a long-lived client does not collect them.
  for (auto it = impl->threads.begin(); it != impl->threads.end();) {
    bool done;
    {
      std::lock_guard g(it->second->mu);
      done = it->second->done;
    }
    if (done) {
      it->first.join();
      it = impl->threads.erase(it);
    } else {
      ++it;
    }
  }
  impl->threads.emplace_back(std::thread([impl, st, options] {
    try {
      auto r = impl->run_ask(options, [&](std::string_view piece) {
        std::lock_guard g(st->mu);
        st->pieces.emplace_back(piece);
        st->cv.notify_all();
      }, st->cancelled);
      std::lock_guard g(st->mu);
      st->result = std::move(r);
    } catch (const Error& e) {
      std::lock_guard g(st->mu);
      st->error = e;
    } catch (const std::exception& e) {
      std::lock_guard g(st->mu);
      st->error = Error("network", e.what());
    }
    std::lock_guard g(st->mu);
    st->done = true;
    st->cv.notify_all();
  }), st);
  return AskStream(st);
}

// ---- AskStream ----

AskStream::AskStream(std::shared_ptr<State> s) : s_(std::move(s)) {}
AskStream::~AskStream() {
  if (s_) cancel();  // nobody will read it: stop the worker's generation
}
AskStream::AskStream(AskStream&&) noexcept = default;
AskStream& AskStream::operator=(AskStream&&) noexcept = default;

std::optional<std::string> AskStream::next() {
  std::unique_lock lk(s_->mu);
  s_->cv.wait(lk, [&] { return !s_->pieces.empty() || s_->done; });
  if (s_->pieces.empty()) return std::nullopt;
  auto p = std::move(s_->pieces.front());
  s_->pieces.pop_front();
  return p;
}

const AskResult& AskStream::result() {
  std::unique_lock lk(s_->mu);
  s_->cv.wait(lk, [&] { return s_->done; });
  if (s_->error) throw *s_->error;
  return *s_->result;
}

void AskStream::cancel() {
  std::lock_guard lk(s_->mu);
  if (!s_->done) s_->cancelled = true;
}

}  // namespace qmesh
