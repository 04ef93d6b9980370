// The C ABI (include/qmesh/client.h) over the C++ API (include/qmesh/client.hpp). Every entry
// point catches everything: no exception crosses into C.
#include "qmesh/client.h"

#include "client/worker_json.hpp"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "qmesh/client.hpp"

struct qmesh_options {
  qmesh::ClientOptions opts;
};

namespace {

// The client's unfinished pull-style asks, so that qmesh_client_free can cancel them (the C++
// Client waits for its AskStreams). Shared with the asks: they may outlive the client.
struct AskRegistry {
  std::mutex mu;
  std::set<qmesh_stream*> asks;
};

}  // namespace

struct qmesh_client {
  std::unique_ptr<qmesh::Client> client;
  std::shared_ptr<AskRegistry> registry = std::make_shared<AskRegistry>();
};

struct qmesh_stream {
  std::optional<qmesh::AskStream> stream;
  std::shared_ptr<AskRegistry> registry;
  std::string piece;  // the last piece qmesh_stream_next returned
};

namespace {

thread_local std::string t_last_error;

qmesh_status fail(qmesh_status s, std::string message) {
  try {
    t_last_error = std::move(message);
  } catch (...) {
    t_last_error.clear();
  }
  return s;
}

qmesh_status status_of_kind(const std::string& kind) {
  // The C ABI's statuses are fixed (a caller may switch over them): the C++ kinds added later map
  // to the status that covered them before.
  if (kind == "no_workers" || kind == "unknown_model") return QMESH_ERR_NO_WORKERS;
  if (kind == "workers_failed") return QMESH_ERR_NETWORK;
  if (kind == "busy") return QMESH_ERR_BUSY;
  if (kind == "timeout") return QMESH_ERR_TIMEOUT;
  if (kind == "bad_request") return QMESH_ERR_BAD_REQUEST;
  if (kind == "cancelled") return QMESH_ERR_CANCELLED;
  if (kind == "network") return QMESH_ERR_NETWORK;
  if (kind == "config") return QMESH_ERR_CONFIG;
  return QMESH_ERR_INTERNAL;
}

// Runs f (which returns a qmesh_status) and turns any exception into a status and a message.
template <class F>
qmesh_status guarded(F&& f) noexcept {
  try {
    return f();
  } catch (const qmesh::Error& e) {
    return fail(status_of_kind(e.kind()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(QMESH_ERR_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(QMESH_ERR_INTERNAL, e.what());
  } catch (...) {
    return fail(QMESH_ERR_INTERNAL, "unknown error");
  }
}

qmesh_status invalid(const char* what) { return fail(QMESH_ERR_INVALID_ARGUMENT, what); }

std::string str(const char* s) { return s ? std::string(s) : std::string(); }

// A malloc'd copy, so that the C side's strings are all freed the same way.
char* dup(const std::string& s) {
  auto* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

qmesh::AskOptions ask_options(const qmesh_ask_options& in) {
  qmesh::AskOptions o;
  o.prompt = str(in.prompt);
  if (in.messages_count > 0 && !in.messages) throw qmesh::Error("bad_request", "messages is NULL but messages_count is not 0");
  for (std::size_t i = 0; i < in.messages_count; ++i) o.messages.push_back({str(in.messages[i].role), str(in.messages[i].content)});
  o.system = str(in.system);
  o.raw = in.raw != 0;
  o.model = str(in.model);
  o.max_tokens = in.max_tokens;
  if (!(in.temperature < 0)) o.temperature = in.temperature;  // NaN is passed on, and refused
  if (in.has_seed) o.seed = in.seed;
  o.timeout = std::chrono::milliseconds(in.timeout_ms);
  o.max_attempts = in.max_attempts;
  return o;
}

void fill(const qmesh::AskResult& r, qmesh_result* out) {
  if (!out) return;
  qmesh_result tmp{};
  try {
    tmp.text = dup(r.text);
    tmp.text_len = r.text.size();
    tmp.worker = dup(r.worker);
    tmp.stop_reason = dup(r.stop_reason);
  } catch (...) {
    qmesh_result_clear(&tmp);
    throw;
  }
  tmp.tokens = r.tokens;
  tmp.ttft_ms = r.ttft_ms;
  tmp.total_ms = r.total_ms;
  tmp.tokens_per_second = r.tokens_per_second;
  tmp.retries = r.retries;
  tmp.resumed = r.resumed ? 1 : 0;
  *out = tmp;
}

void free_worker_strings(qmesh_worker& w) {
  for (const char* s : {w.id, w.endpoint, w.model, w.model_hash, w.architecture, w.quantization, w.software, w.nat})
    std::free(const_cast<char*>(s));
}

}  // namespace

extern "C" {

const char* qmesh_status_name(qmesh_status status) {
  switch (status) {
    case QMESH_OK: return "ok";
    case QMESH_ERR_NO_WORKERS: return "no_workers";
    case QMESH_ERR_BUSY: return "busy";
    case QMESH_ERR_TIMEOUT: return "timeout";
    case QMESH_ERR_BAD_REQUEST: return "bad_request";
    case QMESH_ERR_CANCELLED: return "cancelled";
    case QMESH_ERR_NETWORK: return "network";
    case QMESH_ERR_CONFIG: return "config";
    case QMESH_ERR_INVALID_ARGUMENT: return "invalid_argument";
    case QMESH_ERR_NO_MEMORY: return "no_memory";
    case QMESH_ERR_INTERNAL: return "internal";
  }
  return "unknown";
}

const char* qmesh_last_error(void) { return t_last_error.c_str(); }

const char* qmesh_version(void) { return QMESH_VERSION; }

// ---- options ----

qmesh_options* qmesh_options_new(void) { return new (std::nothrow) qmesh_options(); }

void qmesh_options_free(qmesh_options* options) { delete options; }

qmesh_status qmesh_options_add_bootstrap(qmesh_options* options, const char* host_port) {
  if (!options || !host_port) return invalid("qmesh_options_add_bootstrap: NULL argument");
  return guarded([&] {
    options->opts.bootstrap.emplace_back(host_port);
    return QMESH_OK;
  });
}

qmesh_status qmesh_options_set_topic(qmesh_options* options, const char* topic) {
  if (!options || !topic) return invalid("qmesh_options_set_topic: NULL argument");
  return guarded([&] {
    options->opts.topic = topic;
    return QMESH_OK;
  });
}

qmesh_status qmesh_options_set_identity(qmesh_options* options, const char* path) {
  if (!options) return invalid("qmesh_options_set_identity: NULL options");
  return guarded([&] {
    options->opts.identity = str(path);
    return QMESH_OK;
  });
}

qmesh_status qmesh_options_set_listen(qmesh_options* options, const char* host_port) {
  if (!options) return invalid("qmesh_options_set_listen: NULL options");
  return guarded([&] {
    options->opts.listen = str(host_port);
    return QMESH_OK;
  });
}

qmesh_status qmesh_options_set_punch(qmesh_options* options, int punch) {
  if (!options) return invalid("qmesh_options_set_punch: NULL options");
  options->opts.punch = punch != 0;
  return QMESH_OK;
}

qmesh_status qmesh_options_set_join_timeout_ms(qmesh_options* options, uint32_t ms) {
  if (!options) return invalid("qmesh_options_set_join_timeout_ms: NULL options");
  options->opts.join_timeout = std::chrono::milliseconds(ms);
  return QMESH_OK;
}

// ---- client ----

qmesh_status qmesh_client_new(const qmesh_options* options, qmesh_client** out) {
  if (!out) return invalid("qmesh_client_new: NULL out");
  *out = nullptr;
  return guarded([&] {
    auto c = std::make_unique<qmesh_client>();
    c->client = std::make_unique<qmesh::Client>(options ? options->opts : qmesh::ClientOptions{});
    *out = c.release();
    return QMESH_OK;
  });
}

void qmesh_client_free(qmesh_client* client) {
  if (!client) return;
  try {
    {
      std::lock_guard lk(client->registry->mu);
      for (auto* a : client->registry->asks) a->stream->cancel();
      client->registry->asks.clear();  // the asks no longer need the client
    }
    delete client;  // ~Client waits for the asks, which end at once now
  } catch (...) {
    // Only a mutex can throw here (std::system_error): nothing sensible is left to do.
  }
}

size_t qmesh_client_id(const qmesh_client* client, char* buf, size_t size) {
  if (!client) return 0;
  try {
    const auto id = client->client->id();
    if (buf && size > 0) {
      const auto n = std::min(size - 1, id.size());
      std::memcpy(buf, id.data(), n);
      buf[n] = '\0';
    }
    return id.size();
  } catch (...) {
    if (buf && size > 0) buf[0] = '\0';
    return 0;
  }
}

// ---- workers ----

qmesh_status qmesh_workers(qmesh_client* client, qmesh_worker** out, size_t* count) {
  if (!out || !count) return invalid("qmesh_workers: NULL out or count");
  *out = nullptr;
  *count = 0;
  if (!client) return invalid("qmesh_workers: NULL client");
  return guarded([&] {
    const auto ws = client->client->workers();
    if (ws.empty()) return QMESH_OK;
    auto* arr = static_cast<qmesh_worker*>(std::calloc(ws.size(), sizeof(qmesh_worker)));
    if (!arr) throw std::bad_alloc();
    std::size_t done = 0;
    try {
      for (; done < ws.size(); ++done) {
        const auto& w = ws[done];
        auto& c = arr[done];
        c.id = dup(w.id);
        c.endpoint = dup(w.endpoint);
        c.available = w.available ? 1 : 0;
        c.model = dup(w.model);
        c.model_hash = dup(w.model_hash);
        c.architecture = dup(w.architecture);
        c.quantization = dup(w.quantization);
        c.parameters = w.parameters;
        c.context = w.context;
        c.slots_total = w.slots_total;
        c.slots_busy = w.slots_busy;
        c.queue_length = w.queue_length;
        c.queue_capacity = w.queue_capacity;
        c.cpu = w.cpu;
        c.memory = w.memory;
        c.prompt_tokens_per_second = w.prompt_tokens_per_second;
        c.generation_tokens_per_second = w.generation_tokens_per_second;
        c.max_tokens = w.max_tokens;
        c.software = dup(w.software);
        c.nat = dup(w.nat);
        c.expires_in_s = w.expires_in_s;
        c.score = w.score;
      }
    } catch (...) {
      qmesh_workers_free(arr, done + 1);  // calloc'd: the unfilled strings of the last one are NULL
      throw;
    }
    *out = arr;
    *count = ws.size();
    return QMESH_OK;
  });
}

void qmesh_workers_free(qmesh_worker* workers, size_t count) {
  if (!workers) return;
  for (std::size_t i = 0; i < count; ++i) free_worker_strings(workers[i]);
  std::free(workers);
}

qmesh_status qmesh_workers_json(qmesh_client* client, char** json) {
  if (!json) return invalid("qmesh_workers_json: NULL out");
  *json = nullptr;
  if (!client) return invalid("qmesh_workers_json: NULL client");
  return guarded([&] {
    auto arr = nlohmann::json::array();
    for (const auto& w : client->client->workers()) arr.push_back(to_json(w));
    // Replace, not throw, on invalid UTF-8 (model names come from the network).
    *json = dup(arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return QMESH_OK;
  });
}

void qmesh_string_free(char* s) { std::free(s); }

// ---- asking ----

void qmesh_ask_options_init(qmesh_ask_options* options) {
  if (!options) return;
  const qmesh::AskOptions d;
  *options = qmesh_ask_options{};
  options->max_tokens = d.max_tokens;
  options->temperature = -1;
  options->timeout_ms = static_cast<uint32_t>(d.timeout.count());
  options->max_attempts = d.max_attempts;
}

void qmesh_result_clear(qmesh_result* result) {
  if (!result) return;
  std::free(result->text);
  std::free(result->worker);
  std::free(result->stop_reason);
  *result = qmesh_result{};
}

qmesh_status qmesh_ask(qmesh_client* client, const qmesh_ask_options* options, qmesh_token_fn on_token, void* user,
                       qmesh_result* result) {
  if (result) *result = qmesh_result{};
  if (!client || !options) return invalid("qmesh_ask: NULL client or options");
  return guarded([&] {
    qmesh::TokenCallback cb;
    if (on_token) cb = [on_token, user](std::string_view piece) { on_token(piece.data(), piece.size(), user); };
    const auto r = client->client->ask(ask_options(*options), cb);
    fill(r, result);
    return QMESH_OK;
  });
}

qmesh_status qmesh_ask_start(qmesh_client* client, const qmesh_ask_options* options, qmesh_stream** out) {
  if (!out) return invalid("qmesh_ask_start: NULL out");
  *out = nullptr;
  if (!client || !options) return invalid("qmesh_ask_start: NULL client or options");
  return guarded([&] {
    auto a = std::make_unique<qmesh_stream>();
    a->registry = client->registry;
    std::lock_guard lk(client->registry->mu);
    a->stream.emplace(client->client->stream(ask_options(*options)));
    client->registry->asks.insert(a.get());
    *out = a.release();
    return QMESH_OK;
  });
}

qmesh_status qmesh_stream_next(qmesh_stream* ask, const char** piece, size_t* len) {
  if (!piece || !len) return invalid("qmesh_stream_next: NULL piece or len");
  *piece = nullptr;
  *len = 0;
  if (!ask) return invalid("qmesh_stream_next: NULL ask");
  return guarded([&] {
    auto p = ask->stream->next();
    if (!p) return QMESH_OK;
    ask->piece = std::move(*p);
    *piece = ask->piece.data();
    *len = ask->piece.size();
    return QMESH_OK;
  });
}

void qmesh_stream_cancel(qmesh_stream* ask) {
  if (!ask) return;
  try {
    ask->stream->cancel();
  } catch (...) {
  }
}

qmesh_status qmesh_stream_finish(qmesh_stream* ask, qmesh_result* result) {
  if (result) *result = qmesh_result{};
  if (!ask) return invalid("qmesh_stream_finish: NULL ask");
  return guarded([&] {
    fill(ask->stream->result(), result);
    return QMESH_OK;
  });
}

void qmesh_stream_free(qmesh_stream* ask) {
  if (!ask) return;
  try {
    std::lock_guard lk(ask->registry->mu);
    ask->registry->asks.erase(ask);
  } catch (...) {
  }
  delete ask;  // ~AskStream cancels an ask still running
}

}  // extern "C"
