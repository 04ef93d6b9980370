// Share: the holder's side of model transfers, sans-I/O. One Share per node serves every transfer
// stream: the caller registers the roots it shares (add_model), hands it the frames each transfer
// stream decodes (on_frame), tells it when a chunk it was asked to serve has been written to its
// stream (on_chunk_written) and when a stream ends, calls on_tick at next_wakeup(), and does what
// next_action() says: write a small frame (INFO, BUSY, ERROR), serve a chunk (read it, then write
// encode_chunk(index, tree.proof(index), bytes)), drop a chunk it was told to serve and has not
// begun to (ShareCancel: then on_serve_dropped; begun, it is written as usual), or finish a
// stream. Every stream it was given a frame of is remembered until on_stream_closed.
//
// What it bounds:
// - uploading sessions: at most max_uploads sessions hold a stream with an upload slot (from an
//   accepted OPEN until the stream ends or idles past idle_timeout); an OPEN from another session
//   gets BUSY (the getter may OPEN again); one session holds at most max_streams_per_session
//   (another OPEN: ERROR too_many);
// - the rate: one token bucket (rate bytes/s, burst bytes) for all streams together; a GET waits
//   for its tokens in arrival order, and one that would wait longer than max_queue_wait gets BUSY;
// - per stream at most kMaxInflight GETs unanswered (received, not yet written, not cancelled): one
//   more is ERROR too_many and the stream ends; a GET beyond the end is ERROR bad_index.
// A CANCEL of a GET unanswered frees its place at once (the getter counts the same way); the GET is
// dropped from the rate's queue, or the caller is told to drop its read (ShareCancel), or, begun,
// its CHUNK still goes out. A CANCEL of anything else is counted and ignored: it never costs more
// than the GET it names, and never ends the stream.
// It never serves a chunk that was not asked for, and each GET at most once.
//
// The caller's rule (no amplification): only streams of sessions that completed the handshake
// reach a Share. A session proves the getter receives at its address, and the stream's congestion
// and flow control send only what the getter acknowledges, so a 13-byte GET cannot turn a forged
// source into a target of a 1 MiB answer. docs/protocol.md ("Model transfer").
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/base/time.hpp"
#include "core/base/timer_table.hpp"
#include "core/model/content_root.hpp"
#include "core/model/transfer_frame.hpp"

namespace qmesh::core::model {

// The caller's name for a transfer stream: its session and the stream in it.
struct StreamId {
  std::uint64_t session = 0;
  std::uint64_t stream = 0;
  auto operator<=>(const StreamId&) const = default;
};

struct ShareConfig {
  std::uint64_t rate = 0;                   // upload bytes/s, all streams together; 0: unlimited
  std::uint64_t burst = 4ull * kChunkBytes; // the bucket's depth (at least one chunk)
  std::size_t max_uploads = 8;              // sessions uploading at once
  std::size_t max_streams_per_session = 4;  // transfer streams with a slot in one session
  Duration max_queue_wait = std::chrono::seconds(5);
  Duration busy_retry = std::chrono::seconds(2);     // what BUSY tells an OPEN with no slot free
  Duration idle_timeout = std::chrono::seconds(30);  // a slot with no GET waiting for this long
};

struct ShareSend {
  StreamId stream;
  std::vector<std::uint8_t> bytes;  // one encoded frame
};
struct ShareServe {
  StreamId stream;  // read chunk `index` of `root`, write its CHUNK, then on_chunk_written
  ContentRoot root;
  std::uint64_t index = 0;
};
struct ShareCancel {
  StreamId stream;  // drop the ShareServe of `index` if its read has not begun, then on_serve_dropped
  std::uint64_t index = 0;
};
struct ShareClose {
  StreamId stream;  // finish the stream after what was written
  std::string reason;
};
using ShareAction = std::variant<ShareSend, ShareServe, ShareClose, ShareCancel>;

struct ShareCounters {
  std::uint64_t opens = 0, opens_busy = 0, not_held = 0;
  std::uint64_t chunks_served = 0, bytes_served = 0;
  std::uint64_t gets_busy = 0, gets_refused = 0;  // BUSY for the rate; ERROR (bad index, too many, ...)
  // CANCELs: received; whose GET was never served (dropped queued); naming no GET unanswered.
  std::uint64_t cancels = 0, cancels_dropped = 0, cancels_ignored = 0;
};

class Share {
 public:
  Share(ShareConfig config, Instant now);

  void add_model(const ContentRoot& root);
  // Streams serving it get ERROR unavailable and end.
  void remove_model(const Hash& root, Instant now);
  bool holds(const Hash& root) const { return models_.count(root) > 0; }

  void on_frame(StreamId stream, TransferFrame frame, Instant now);
  // The stream's bytes did not decode (TransferDecoder's error): ERROR bad_request, then the end.
  void on_stream_error(StreamId stream, const std::string& why, Instant now);
  void on_chunk_written(StreamId stream, std::uint64_t index, Instant now);
  // The caller dropped a ShareServe a ShareCancel named before reading it.
  void on_serve_dropped(StreamId stream, std::uint64_t index, Instant now);
  void on_stream_closed(StreamId stream, Instant now);
  void on_tick(Instant now);

  std::optional<ShareAction> next_action();
  Instant next_wakeup() const { return timers_.next(); }

  std::size_t uploads() const { return sessions_.size(); }  // sessions uploading
  const ShareCounters& counters() const { return counters_; }

 private:
  enum class Timer : std::uint8_t { Rate, Idle, Count };
  struct Stream {
    bool slot = false;
    bool closed = false;  // ERROR sent: what else comes is ignored until the stream ends
    ContentRoot root;
    std::multiset<std::uint64_t> asked;     // GETs received, not written, not cancelled (<= kMaxInflight)
    std::multiset<std::uint64_t> withdrawn; // cancelled after their ShareServe: written or dropped later
    Instant last_active{};
  };
  struct Pending {
    StreamId stream;
    std::uint64_t index = 0;
    std::uint32_t bytes = 0;
  };

  void on_open(StreamId id, Stream& s, const Open& m, Instant now);
  void on_get(StreamId id, Stream& s, const Get& m, Instant now);
  void on_cancel(StreamId id, Stream& s, const Cancel& m);
  void refuse(StreamId id, TransferError code, const std::string& text);
  void free_slot(StreamId id, Stream& s);
  void refill(Instant now);
  void pump(Instant now);
  void update_timers(Instant now);

  ShareConfig cfg_;
  std::map<Hash, ContentRoot> models_;
  std::map<StreamId, Stream> streams_;
  std::deque<Pending> pending_;  // waiting for the rate, in arrival order
  std::uint64_t pending_bytes_ = 0;
  double tokens_ = 0;
  Instant refilled_;
  std::map<std::uint64_t, std::size_t> sessions_;  // session -> its streams with a slot (> 0)
  std::deque<ShareAction> actions_;
  TimerTable<Timer> timers_;
  ShareCounters counters_;
};

}  // namespace qmesh::core::model
