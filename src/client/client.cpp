// libqmesh-client (include/qmesh/client.hpp): the Client and AskStream API. The insides are in
// client_impl.hpp; an ask's control flow in client_ask.cpp.
#include "client_impl.hpp"

namespace qmesh {

// ---- Client ----

Client::Client(ClientOptions options) : impl_(std::make_shared<Impl>()) {
  if (sodium_init() < 0) throw Error("config", "libsodium failed to initialize");
  auto& m = *impl_;
  m.opts = std::move(options);
  if (m.opts.topic.empty() || m.opts.topic.size() > 255) throw Error("config", "topic must be 1..255 bytes");
  std::vector<std::string> mesh_bootstrap;
  if (!m.opts.mesh.empty()) {
    auto joined = net::load_mesh(m.opts.mesh);
    if (!joined) throw Error("config", joined.error().message);
    m.mesh_secret = joined->secret;
    mesh_bootstrap = joined->bootstrap;
  }
  m.topic = m.topic_for(m.opts.topic);
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
  if (boot_texts.empty()) boot_texts = mesh_bootstrap;
  if (boot_texts.empty()) {
    auto listed = net::config_file_bootstrap();
    if (!listed) throw Error("config", listed.error().message);
    boot_texts = *listed;
  }
  // Host names resolve here, on the caller's thread, before the loop thread starts.
  auto resolved = net::resolve_host_ports(boot_texts);
  if (!resolved) throw Error(resolved.error().kind == "config" ? "config" : "network", "bootstrap " + resolved.error().message);
  std::vector<core::Endpoint> boot = *resolved;
  if (boot.empty()) boot = net::discover_lan_dht_nodes(std::chrono::seconds(3));
  if (boot.empty())
    throw Error("config", "no bootstrap node: none found on the LAN; give --bootstrap HOST:PORT or list \"bootstrap\" in " +
                              net::default_config_dir() + "/config.json");
  net::PeerServiceOptions so;
  if (!net::set_listen(so, m.opts.listen, boot)) throw Error("config", "listen " + m.opts.listen + ": expected HOST[:PORT]");
  so.config.dht.ephemeral = true;
  so.config.dht.report_addresses = true;
  so.config.serve_relay = false;
  so.config.punch = m.opts.punch;
  so.config.sessions.identity = m.identity.session;
  so.config.sessions.accept_incoming = false;
  if (m.mesh_secret) so.config.sessions.psk = session::mesh_psk(*m.mesh_secret);  // IKpsk2 to its workers
  // A worker that vanishes (killed, unplugged) must be noticed within seconds, not the default 30.
  so.config.sessions.connection.keepalive = milliseconds(1000);
  so.config.sessions.connection.idle_timeout = milliseconds(5000);
  std::weak_ptr<Impl> weak = impl_;
  Impl* raw = impl_.get();
  auto svc = net::PeerService::start(so, [raw](const peer::PeerEvent& e, peer::Peer& p, core::Instant) { raw->on_event(e, p); });
  if (!svc) throw Error("network", svc.error().message);
  m.svc = std::move(*svc);
  const auto q = m.svc->call([&](peer::Peer& p, core::Instant now) {
    auto id = p.dht().bootstrap(boot, now);
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
  std::vector<std::shared_ptr<AskStream::State>> live;
  {
    std::lock_guard lk(impl_->mu);
    impl_->closing = true;
    live.assign(impl_->streams.begin(), impl_->streams.end());
  }
  for (auto& st : live) st->cancel.fire();  // nobody will read them any more
  impl_->wake_waiters();
  impl_->pool.close();  // waiting asks end "cancelled" here, running ones at their next check
  if (impl_->svc) {
    std::vector<session::SessionId> open;
    {
      std::lock_guard lk(impl_->mu);
      for (const auto& [k, s] : impl_->sessions)
        if (s.state == Impl::Sess::Up) open.push_back(s.sid);
    }
    try {
      impl_->svc->call([&open](peer::Peer& p, core::Instant now) {
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

std::vector<ModelInfo> Client::models() {
  std::map<std::string, ModelInfo> by_root;
  for (const auto& w : workers()) {
    for (const auto& m : w.models) {
      auto& e = by_root[m.root];
      if (e.root.empty()) {
        e.name = m.name;
        e.root = m.root;
        e.architecture = m.architecture;
        e.quantization = m.quantization;
        e.size_class = m.size_class;
        e.parameters = m.parameters;
      }
      ++e.workers;
      if (m.loaded && w.available) {
        ++e.loaded;
        e.slots_free += std::max(0, m.slots_total - m.slots_busy);
      }
    }
  }
  std::vector<ModelInfo> out;
  for (auto& [root, m] : by_root) out.push_back(std::move(m));
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.workers != b.workers ? a.workers > b.workers : a.name < b.name;
  });
  return out;
}

AskResult Client::ask(const AskOptions& options, const TokenCallback& on_token) {
  AskCancel never;
  return impl_->run_ask(options, on_token, never);
}

AskStream Client::stream(const AskOptions& options) {
  auto st = std::make_shared<AskStream::State>();
  auto impl = impl_;
  auto end = [impl, st](std::optional<AskResult> r, std::optional<Error> e) {
    {
      std::lock_guard lk(impl->mu);
      impl->streams.erase(st);
    }
    std::shared_ptr<const std::function<void()>> ready;
    {
      std::lock_guard g(st->mu);
      st->result = std::move(r);
      st->error = std::move(e);
      st->done = true;
      ready = st->arrived();
    }
    if (ready) (*ready)();
  };
  std::lock_guard lk(impl->mu);
  if (impl->closing) throw Error("cancelled", "the client is closing");
  impl->streams.insert(st);
  const auto ticket = impl->pool.submit([impl, st, options, end](bool start) {
    if (!start) return end(std::nullopt, Error("cancelled", "the ask was cancelled before it started"));
    try {
      auto r = impl->run_ask(options, [&](std::string_view piece) {
        std::shared_ptr<const std::function<void()>> ready;
        {
          std::lock_guard g(st->mu);
          st->pieces.emplace_back(piece);
          ready = st->arrived();
        }
        if (ready) (*ready)();
      }, st->cancel);
      end(std::move(r), std::nullopt);
    } catch (const Error& e) {
      end(std::nullopt, e);
    } catch (const std::exception& e) {
      end(std::nullopt, Error("network", e.what()));
    }
  });
  if (ticket == 0) {
    impl->streams.erase(st);
    std::lock_guard g(st->mu);
    st->error = Error("busy", "this client has " + std::to_string(kMaxStreams) + " asks in flight; retry when some end");
    st->done = true;
  } else {
    std::lock_guard g(st->mu);
    st->owner = impl;
    st->ticket = ticket;
  }
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

std::optional<std::string> AskStream::try_next(bool* ended) {
  std::lock_guard lk(s_->mu);
  if (ended) *ended = s_->pieces.empty() && s_->done;
  if (s_->pieces.empty()) return std::nullopt;
  auto p = std::move(s_->pieces.front());
  s_->pieces.pop_front();
  return p;
}

void AskStream::on_ready(std::function<void()> fn) {
  auto f = fn ? std::make_shared<const std::function<void()>>(std::move(fn)) : nullptr;
  bool now;
  {
    std::lock_guard lk(s_->mu);
    s_->ready = f;
    now = !s_->pieces.empty() || s_->done;
  }
  if (f && now) (*f)();
}

const AskResult& AskStream::result() {
  std::unique_lock lk(s_->mu);
  s_->cv.wait(lk, [&] { return s_->done; });
  if (s_->error) throw *s_->error;
  return *s_->result;
}

// The ask's thread wakes at once wherever it waits and resets the stream to the worker, which
// drops the generation (its llama-server slot is free again).
void AskStream::cancel() {
  std::shared_ptr<Client::Impl> owner;
  net::TaskPool::Ticket ticket = 0;
  {
    std::lock_guard lk(s_->mu);
    if (s_->done) return;
    owner = s_->owner.lock();
    ticket = s_->ticket;
  }
  s_->cancel.fire();
  if (owner) {
    owner->wake_waiters();
    owner->pool.withdraw(ticket);  // one still waiting for a thread ends now
  }
}

}  // namespace qmesh
