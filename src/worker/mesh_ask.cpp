// An ask on the worker: the model it names, admission, the worker's queue, and its one DONE or
// ERROR (MeshServer::Impl's ask half; the stream half is in mesh_server.cpp).
#include <algorithm>

#include "worker/mesh_server_impl.hpp"
#include "worker/worker_metrics.hpp"

namespace qmesh::worker {

bool MeshServer::Impl::refuse_unlisted(peer::Peer& p, const Key& key, Ask& a) {
  if (!opts.allow_clients) return false;
  core::noise::PublicKey client{};
  if (auto cl = clients.find(key.first); cl != clients.end()) client = cl->second;
  if (allowed.count(client)) return false;
  a.seen = true;
  log->info("session {}: client {} is not on the allowlist: refused", key.first, short_key(client));
  answer_error(p, key, a,
               {"forbidden", "this worker serves only the clients on its allowlist (--allow-client); ask its operator",
                0});
  return true;
}

void MeshServer::Impl::admit(peer::Peer& p, const Key& key, Ask& a, const std::string& body, core::Instant) {
  bump(&MeshStats::asks);
  auto req = mesh::parse_request(body);
  if (!req) {
    bump(&MeshStats::bad_requests);
    answer_error(p, key, a, {"bad_request", req.error().message, 0});
    return;
  }
  // The model it names (a name, a file stem, a hash prefix; none: the first model).
  const auto model = worker.find_model(req->model);
  if (!model) {
    bump(&MeshStats::bad_requests);
    std::string served;
    for (std::size_t i = 0; i < worker.model_count() && served.size() < 200; ++i)
      served += (served.empty() ? "'" : ", '") + worker.model_info(i).name + "'";
    answer_error(p, key, a, {"unknown_model", "this worker serves " + served + ", not '" + req->model + "'", 0});
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
  const int limit = worker.admission_limit();
  if (admitted >= limit) {
    bump(&MeshStats::busy);
    answer_error(p, key, a,
                 {"busy", "worker is busy: " + std::to_string(admitted) + " asks running or queued", retry_hint()});
    return;
  }
  // One client may hold at most half the places, so that others still get in.
  core::noise::PublicKey client{};
  if (auto cl = clients.find(key.first); cl != clients.end()) client = cl->second;
  const int per_client = std::max(1, (limit + 1) / 2);
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
  a.shared->model = worker.model_info(*model).name;
  a.shared->model_index = *model;
  a.shared->tier = opts.tier_of ? opts.tier_of(client) : core::trust::Tier::Bronze;
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
                                    [this, key, s = a.shared](Worker::Outcome r) { answered(key, *s, std::move(r)); },
                                    *model, a.shared->tier);
}

sidecar::CompletionRequest MeshServer::Impl::completion_request(mesh::Request& req) const {
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

std::uint32_t MeshServer::Impl::retry_hint() {
  double ms;
  {
    std::lock_guard lk(mu);
    ms = avg_ask_ms;
  }
  if (ms <= 0) return opts.busy_retry_max_ms;
  const int slots = worker.admission_limit() - worker.config().queue_capacity;  // parallel per model
  const double ahead = std::max(1, admitted - slots + 1);
  const double hint = ms * ahead / slots;
  return static_cast<std::uint32_t>(std::clamp<double>(hint, opts.busy_retry_min_ms, opts.busy_retry_max_ms));
}

// The ask's outcome from the worker (on its thread, or on the loop when it never ran): DONE or
// ERROR goes to the loop, which writes it to the stream.
void MeshServer::Impl::answered(const Key& key, const Shared& shared, Worker::Outcome r) {
  const std::string who = short_key(shared.client);
  if (opts.metrics) opts.metrics->ask_ended(r, shared.cancelled.load());
  if (r) {
    if (r->load_ms > 0)
      log->info("ask from {} for {}: {} tokens, ttft {:.1f} ms, {:.1f} tokens/s ({}), waited {:.0f} ms for the model to load",
                who, shared.model, r->tokens, r->ttft_ms, r->tokens_per_second, r->stop_reason, r->load_ms);
    else
      log->info("ask from {}: {} tokens, ttft {:.1f} ms, {:.1f} tokens/s ({})", who, r->tokens, r->ttft_ms,
                r->tokens_per_second, r->stop_reason);
    mesh::Done d{r->tokens, r->ttft_ms, r->total_ms, r->tokens_per_second, r->stop_reason, r->prompt_tokens, shared.model};
    d.load_ms = r->load_ms;
    d.tier = shared.tier;
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
                        kind == "busy" ? retry_hint() : kind == "worker_lost" ? worker.lost_retry_ms(shared.model_index) : 0};
    svc->post([this, key, body = mesh::to_json(er), client = shared.client](peer::Peer& p, core::Instant) {
      finish_ask(p, key, client, mesh::FrameType::Error, body);
    });
  }
  std::lock_guard lk(mu);
  --in_worker;
  cv.notify_all();
}

void MeshServer::Impl::finish_ask(peer::Peer& p, const Key& key, const core::noise::PublicKey& client,
                                  mesh::FrameType type, const std::string& body) {
  --admitted;
  release_place(client);
  {
    std::lock_guard lk(mu);
    st.running = admitted;
  }
  send(p, key, type, body, true);
}

void MeshServer::Impl::answer_error(peer::Peer& p, const Key& key, Ask& a, const mesh::ErrorReply& e) {
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

}  // namespace qmesh::worker
