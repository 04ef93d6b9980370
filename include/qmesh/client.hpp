// libqmesh-client: ask the QMesh peer-to-peer network for a completion.
//
//   qmesh::Client client({.bootstrap = {"203.0.113.7:49737"}});
//   auto result = client.ask({.prompt = "Why is the sky blue?"},
//                            [](std::string_view piece) { std::cout << piece << std::flush; });
//
// A Client joins the DHT (one background libuv thread per client), finds the workers announcing
// the topic, picks a healthy one, reaches it through NATs over an end-to-end encrypted session and
// streams the answer. A worker that fails before the first token is replaced without the caller
// noticing; one lost mid-answer is replaced too, and the new worker continues from the text so
// far, so the caller sees one unbroken stream (AskResult::resumed says it happened). A worker
// whose llama-server crashed and is coming back gets the ask again when no other is left.
//
// Every ask ends in exactly one AskResult or one qmesh::Error. All methods are thread-safe; many
// asks may run at once on one Client. Token callbacks run on the thread that called ask().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace qmesh {

// kind():
//   "bad_request"     the ask itself is invalid (max_tokens, temperature, top_p, stop, text, ...)
//   "unknown_model"   workers announce the topic, but none has the model asked for
//   "no_workers"      no worker announces the topic, or none that has the model is ready
//   "busy"            every worker is busy (retry_after() says when to try again)
//   "workers_failed"  every worker tried failed (unreachable, lost mid-answer, errors)
//   "timeout"         no answer (or lookup, or session) within the ask's timeout
//   "network"         the network itself failed (no DHT node answered, a lookup failed)
//   "cancelled"       AskStream::cancel(), or the Client is closing
//   "config"          bad client options, config file or identity file
class Error : public std::runtime_error {
 public:
  Error(std::string kind, const std::string& message, std::chrono::milliseconds retry_after = {})
      : std::runtime_error(message), kind_(std::move(kind)), retry_after_(retry_after) {}
  const std::string& kind() const { return kind_; }
  // "busy": the workers' hint of when asking again may succeed; 0 when none (other kinds: 0).
  std::chrono::milliseconds retry_after() const { return retry_after_; }

 private:
  std::string kind_;
  std::chrono::milliseconds retry_after_{0};
};

struct ClientOptions {
  // DHT nodes ("HOST:PORT"; HOST an IPv4 address, [IPv6] or a DNS name, resolved once when the
  // Client is made). Empty: the "bootstrap" list of the config file
  // (~/.config/qmesh/config.json), then nodes found on the LAN.
  std::vector<std::string> bootstrap;
  std::string topic = "qmesh-inference";
  // Key file for a long-term identity; empty: a fresh key for this client (workers do not need to
  // know clients).
  std::string identity;
  std::string listen;  // "HOST[:PORT]" of the UDP socket; empty: any
  bool punch = true;   // try a direct path to workers (else stay on the relay)
  std::chrono::milliseconds join_timeout{10000};
  // A private mesh this machine joined (qmesh-cli mesh join; <config dir>/meshes/NAME): its
  // secret derives the topic and the session PSK, and its bootstrap list is used when bootstrap
  // is empty. Empty: the public mesh.
  std::string mesh;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// One model a worker serves, as its record says.
struct WorkerModel {
  std::string name, root;  // root: the content root (hex)
  std::string architecture, quantization, size_class;  // size_class: "1B", "3B", "7B", ...
  std::uint64_t parameters = 0;
  std::uint32_t context = 0;  // tokens per slot
  bool loaded = false, chat_template = false;
  int slots_total = 0, slots_busy = 0;
  double prompt_tokens_per_second = 0, generation_tokens_per_second = 0;
};

// A model on the mesh (Client::models()): one per content root, however many workers hold it.
struct ModelInfo {
  std::string name, root, architecture, quantization, size_class;
  std::uint64_t parameters = 0;
  int workers = 0;     // workers that serve it
  int loaded = 0;      // of them, those that have it loaded now
  int slots_free = 0;  // free slots over those that have it loaded
};

struct WorkerInfo {
  std::string id;        // the worker's public key (hex)
  std::string endpoint;  // where it announced from, as the DHT saw it
  bool available = false;
  std::vector<WorkerModel> models;  // loaded first
  int models_omitted = 0;           // served too, but left out of its record (too many to list)
  // The fields below are those of its first model (a worker with one model: that model).
  std::string model, model_hash, architecture, quantization;
  std::uint64_t parameters = 0;
  std::uint32_t context = 0;  // tokens per slot
  int slots_total = 0, slots_busy = 0, queue_length = 0, queue_capacity = 0;
  double cpu = 0, memory = 0;  // busy / used share, 0..1
  double prompt_tokens_per_second = 0, generation_tokens_per_second = 0;
  std::uint32_t max_tokens = 0;
  std::string software, nat;
  int expires_in_s = 0;  // the record's remaining lifetime
  double score = 0;      // the selection score (0: not eligible now)
};

struct AskOptions {
  std::string prompt;                 // chat: the user message; raw: the text to continue
  std::vector<ChatMessage> messages;  // a whole conversation (instead of prompt)
  std::string system;                 // chat: a system message first
  bool raw = false;                   // plain completion, no chat template
  // A model name, a content root or a unique prefix of one (8+ hex digits), or a size class
  // ("1B", "3B", "7B", "13B"...); empty: any.
  std::string model;
  int max_tokens = 256;
  std::optional<double> temperature;  // unset: the worker's default
  std::optional<std::uint64_t> seed;
  std::optional<double> top_p;        // nucleus sampling, 0..1; unset: the worker's default
  // The answer ends before the first of these (at most 4, each 1..256 bytes of UTF-8); the stop
  // string itself is not part of the answer, and stop_reason is then "word".
  std::vector<std::string> stop;
  std::chrono::milliseconds timeout{300000};  // the whole ask
  int max_attempts = 5;                       // workers tried before giving up
};

struct AskResult {
  std::string text;
  std::string worker;                     // id of the worker that finished the answer
  std::vector<std::string> workers_tried;  // in order, the finishing one last
  std::uint64_t tokens = 0;
  double ttft_ms = 0;   // ask() called -> first token
  double worker_ttft_ms = 0;  // the finishing worker's own: llama-server asked -> first token
  double total_ms = 0;  // ask() called -> done
  double handshake_ms = 0;  // the session handshake this ask had to open (0: it reused an open session)
  double tokens_per_second = 0;  // after the first token
  int retries = 0;               // times the ask moved to another worker (or back to the same one)
  bool resumed = false;          // a worker was lost mid-answer and another (or it, back) continued it
  // "eos" (the model ended it), "limit" (max_tokens reached), "word" (a stop string matched).
  std::string stop_reason;
  std::uint64_t prompt_tokens = 0;  // the finishing worker's prompt length in tokens (0: not reported)
  std::string model;                // the model name the finishing worker served
  double load_ms = 0;               // the finishing worker first loaded the model for this long (0: it was loaded)
  std::string tier;                 // the queue tier the finishing worker gave the ask ("bronze" … "master"; empty: not reported)
};

using TokenCallback = std::function<void(std::string_view piece)>;

// ---- models on the mesh (P2P model distribution; docs/protocol.md "Model transfer") ----

// A node that announces it shares a model (its holder record under the root's topic).
struct ModelHolder {
  std::string id;        // its public key (hex)
  std::string endpoint;  // where it announced from, as the DHT saw it
  std::string name;      // the model's name, as the holder says
  std::uint64_t size = 0;
  int uploads_free = 0;
};

// Where fetch_model() puts the chunks: each is verified against the root before write() gets it.
// Both are called on the thread that called fetch_model().
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  // The chunks stored before (a resumed download): one entry per chunk, or empty for none.
  virtual std::vector<bool> have() = 0;
  // Stores chunk `index` (1 MiB, the last one shorter); "" when stored, else one line saying why
  // (the download then stops with Error("disk", that line)).
  virtual std::string write(std::uint64_t index, const std::vector<std::uint8_t>& bytes) = 0;
};

struct ModelFetchProgress {
  std::uint64_t bytes_total = 0;
  std::uint64_t bytes_verified = 0;  // resumed ones included
  std::uint64_t bytes_resumed = 0;   // stored before this run
  double bytes_per_second = 0;       // verified, over the last few seconds
  int holders_in_use = 0;            // answered and not dropped
  int holders_dropped = 0;
};

struct ModelFetchOptions {
  std::string root;         // the content root, 64 hex digits
  std::uint64_t size = 0;   // the file's size; 0: as the holders' records say
  int holders = 6;          // holders used at once, at most (1..16)
  // With no holder to fetch from for this long (none found, or every one failed), the download
  // fails: "no holder has ROOT" or "every holder failed: ...".
  std::chrono::milliseconds timeout{30000};
  std::function<void(const ModelFetchProgress&)> on_progress;  // about once a second
  const std::atomic<bool>* cancel = nullptr;  // set it (from any thread) to stop: Error("cancelled")
};

struct ModelFetchResult {
  std::string root;
  std::uint64_t size = 0;
  std::uint64_t bytes_fetched = 0;  // verified and stored by this run
  std::uint64_t bytes_resumed = 0;  // stored before this run
  std::uint64_t bytes_wasted = 0;   // received and not used (endgame duplicates, bad chunks)
  double seconds = 0;
  int holders_used = 0;     // holders that gave at least one chunk
  int holders_dropped = 0;  // dropped: bad chunks, silence, errors
};

class Client;

// An ask in progress, read as an iterator: next() returns each piece of text as it arrives and
// nullopt at the end; result() then returns the stats or throws the ask's Error.
class AskStream {
 public:
  ~AskStream();
  AskStream(AskStream&&) noexcept;
  AskStream& operator=(AskStream&&) noexcept;
  std::optional<std::string> next();
  const AskResult& result();
  void cancel();  // from any thread; the ask ends with Error("cancelled")

  // For event loops, which must not block: try_next() is next() that never waits. It returns a
  // piece, or nullopt with *ended telling whether the stream is over (then result() returns at
  // once) or nothing has arrived yet. on_ready(fn) has fn called each time a piece or the end
  // arrives, and once at once when something is already waiting. fn runs on a client thread
  // while no lock is held; it must be quick and must not block (post a wake-up to the loop:
  // uv_async_send, lws_cancel_service). One fn per stream; a second call replaces the first.
  std::optional<std::string> try_next(bool* ended);
  void on_ready(std::function<void()> fn);

  struct State;

 private:
  friend class Client;
  explicit AskStream(std::shared_ptr<State> s);
  std::shared_ptr<State> s_;
};

class Client {
 public:
  // Joins the network; throws Error("config") for bad options, Error("network") when no DHT node
  // answers within join_timeout.
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Live workers of the topic with their health, best score first.
  std::vector<WorkerInfo> workers();
  // The models the topic's live workers serve, one per content root, most workers first.
  std::vector<ModelInfo> models();
  // Blocks until the answer is complete; on_token gets each piece as it arrives.
  AskResult ask(const AskOptions& options, const TokenCallback& on_token = {});
  // Starts an ask on one of the client's background threads: up to 32 run at once, more wait for
  // one (first come first served; the ask's timeout starts when it runs); beyond 1024 in flight
  // the stream ends at once with Error("busy").
  AskStream stream(const AskOptions& options);
  // This client's public key (hex).
  std::string id() const;

  // The nodes that announce they hold the model with this content root (64 hex digits), newest
  // record per node; records that do not decode or name another root are left out.
  std::vector<ModelHolder> model_holders(const std::string& root, std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Downloads the model with content root options.root from up to options.holders holders at once
  // into `sink`, verifying each chunk first; only the chunks sink.have() lacks are fetched. Runs on
  // the caller's thread until done. Errors: "bad_request" (a bad root or size), "no_workers" (no
  // holder within the timeout), "workers_failed" (every holder failed), "disk" (sink.write failed),
  // "cancelled".
  ModelFetchResult fetch_model(const ModelFetchOptions& options, ChunkSink& sink);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace qmesh
