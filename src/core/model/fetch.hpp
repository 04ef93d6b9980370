// Fetch: the getter's side of a model transfer, sans-I/O (quinn-proto style). The caller opens one
// stream per holder and tells Fetch about it (add_holder), feeds it the frames each stream
// decodes (on_frame), a stream's end (on_holder_lost) and time (on_tick at next_wakeup()), and
// does what next_action() says: write an OPEN or GET on a holder's stream, close a holder's stream,
// write a verified chunk into the .part file, and finally finish or give up.
//
// Scheduling: the missing chunks (resume: those not set in the bitmap given at start), lowest
// first, go to the holders with room in their window, fastest first. A holder's window (GETs
// unanswered) follows its measured delivery rate and its least GET-to-CHUNK time: about
// window_gain x rate x that time, 1..min(max_inflight, the holder's INFO). Every CHUNK is checked
// with verify_chunk before it is handed out; a bad one drops its sender for this download and
// its chunks go back to the queue. A holder silent past its timeout is dropped the same way. When
// nothing is left to assign, a chunk still outstanding may be asked of a second holder (the
// endgame); once one copy verifies, the others are taken back with CANCEL (SendCancel): a holder
// that had not begun to send it sends nothing, and one that had sends it anyway (counted wasted,
// no error). After FetchDone or FetchFailed (the last
// action) the caller closes every stream it still has open. The caller keeps a handful of holders
// at a time (scheduling looks at each). docs/protocol.md ("Model transfer").
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

using HolderId = std::uint64_t;  // the caller's name for a holder (its stream)

struct FetchConfig {
  std::uint16_t max_inflight = kMaxInflight;  // GETs unanswered per holder, at most
  std::uint16_t initial_window = 2;           // before the holder's rate is measured
  double window_gain = 2.0;                   // window = gain x rate x least GET-to-CHUNK time
  std::size_t endgame_copies = 2;             // a chunk outstanding at this many holders at most (1-8)
  // A holder that answers no OPEN within open_timeout, or has GETs unanswered and sends nothing for
  // max(silence_timeout, 4 chunks' time at its rate), is dropped and its chunks re-queued.
  Duration open_timeout = std::chrono::seconds(10);
  Duration silence_timeout = std::chrono::seconds(15);
  // With no holder to ask for this long (none added yet, or all dropped), the fetch fails;
  // at once after on_search_done().
  Duration no_holder_timeout = std::chrono::seconds(30);
  Duration max_busy_wait = std::chrono::seconds(60);  // a BUSY's retry is capped at this
  Duration rate_window = std::chrono::seconds(5);     // progress().bytes_per_second averages over it
};

struct SendOpen {
  HolderId holder = 0;  // write encode(Open{root.hash, root.size}) on its stream
};
struct SendGet {
  HolderId holder = 0;  // write encode(Get{index})
  std::uint64_t index = 0;
};
struct SendCancel {
  HolderId holder = 0;  // write encode(Cancel{index}): its GET no longer counts as unanswered
  std::uint64_t index = 0;
};
struct DropHolder {
  HolderId holder = 0;  // close its stream: nothing more is asked of it in this download
  std::string reason;
};
struct WriteChunk {
  std::uint64_t index = 0;  // verified: write at index x kChunkBytes, then set the bitmap bit
  std::vector<std::uint8_t> bytes;
};
struct FetchDone {};  // every chunk verified and handed out: check the root, rename
struct FetchFailed {
  std::string reason;  // one line: "no holder has ROOT", "every holder failed: ..."
};
using FetchAction = std::variant<SendOpen, SendGet, SendCancel, DropHolder, WriteChunk, FetchDone, FetchFailed>;

struct FetchProgress {
  std::uint64_t bytes_total = 0;
  std::uint64_t bytes_verified = 0;  // resumed ones included
  std::uint64_t bytes_resumed = 0;   // verified before this run (the bitmap)
  std::uint64_t bytes_wasted = 0;    // received and not used: duplicates, bad chunks
  std::uint64_t cancels = 0;         // CANCELs sent (the endgame's other copies of a verified chunk)
  std::uint64_t chunks_total = 0, chunks_verified = 0;
  double bytes_per_second = 0;       // verified, over the last rate_window
  std::size_t holders_in_use = 0;    // answered INFO and not dropped
  std::size_t holders_dropped = 0;
};

enum class HolderState : std::uint8_t { Opening, Ready, Paused, Dropped };

struct HolderStats {
  std::string label;
  HolderState state = HolderState::Opening;
  std::uint64_t chunks = 0;  // verified chunks it gave first
  std::uint64_t bytes = 0;   // bytes of those
  std::uint64_t gets = 0;    // GETs sent to it
  double rate = 0;           // bytes/s, measured
  std::size_t window = 0, outstanding = 0;
  std::string failure;       // why it was dropped
};

class Fetch {
 public:
  // `have`: chunks verified before (the .part bitmap), root.chunks() entries or empty for none.
  Fetch(ContentRoot root, std::vector<bool> have, FetchConfig config, Instant now);

  // A stream to a holder is open; `label` names it in reasons. An id seen before is ignored.
  void add_holder(HolderId id, std::string label, Instant now);
  void on_frame(HolderId id, TransferFrame frame, Instant now);
  // Its stream ended or its session was lost: its chunks go back to the queue.
  void on_holder_lost(HolderId id, Instant now);
  // Its stream's bytes did not decode (TransferDecoder's error): it is dropped.
  void on_holder_error(HolderId id, const std::string& why, Instant now);
  // The caller will add no more holders: fail as soon as none is left.
  void on_search_done(Instant now);
  void on_tick(Instant now);

  std::optional<FetchAction> next_action();
  Instant next_wakeup() const;
  bool finished() const { return finished_; }

  FetchProgress progress(Instant now) const;
  std::optional<HolderStats> holder(HolderId id) const;
  const ContentRoot& root() const { return root_; }

 private:
  enum class Timer : std::uint8_t { Silence, Retry, NoHolder, Count };
  struct Holder {
    std::string label;
    HolderState state = HolderState::Opening;
    std::map<std::uint64_t, Instant> outstanding;  // chunk -> when its GET was sent
    std::set<std::uint64_t> cancelled;  // GETs taken back with CANCEL: a late CHUNK or BUSY is no error
    std::size_t window = 1, cap = 1;
    Instant last_heard{};     // the silence clock: last frame, or the GET that ended an idle spell
    Instant paused_until{};
    bool reopen = false;      // paused before INFO: send OPEN again
    bool arrived = false;
    Instant last_arrival{};
    std::deque<double> rate_samples;  // bytes/s, the last few; the rate is their maximum
    double rate = 0;
    Duration least_latency = Duration::max();
    std::uint64_t chunks = 0, bytes = 0, gets = 0;
    bool not_held = false;
    std::string failure;
  };

  bool live(const Holder& h) const { return h.state != HolderState::Dropped; }
  Duration silence_limit(const Holder& h) const;
  void on_info(HolderId id, Holder& h, const Info& info, Instant now);
  void on_chunk(HolderId id, Holder& h, Chunk&& c, Instant now);
  void on_busy(HolderId id, Holder& h, const Busy& b, Instant now);
  void measure(Holder& h, Instant sent, std::size_t bytes, Instant now);
  void drop(HolderId id, std::string reason, bool tell);
  void release(std::uint64_t index);  // one fewer copy outstanding; back to the queue at none
  void cancel_copies(HolderId verified_by, std::uint64_t index);
  void schedule(Instant now);
  std::optional<std::uint64_t> take_next();
  std::optional<std::uint64_t> endgame_pick(HolderId id) const;
  void update_timers(Instant now);
  void fail(std::string reason);
  std::string failure_summary() const;

  ContentRoot root_;
  FetchConfig cfg_;
  Instant start_;
  std::vector<bool> have_;
  std::vector<std::uint8_t> copies_;  // GETs outstanding per chunk
  // Missing and asked of nobody: the chunks from `fresh_` on that are not verified (never asked
  // yet), and `requeued_` (asked before, given back); a bitmap's worth of memory, not a set of all.
  std::uint64_t fresh_ = 0;
  std::set<std::uint64_t> requeued_;
  std::uint64_t verified_ = 0, resumed_bytes_ = 0, verified_bytes_ = 0, wasted_ = 0, cancels_ = 0;
  std::deque<std::pair<Instant, std::uint32_t>> recent_;  // verified chunks within rate_window
  std::map<HolderId, Holder> holders_;
  std::deque<FetchAction> actions_;
  TimerTable<Timer> timers_;
  bool search_done_ = false;
  bool finished_ = false;
};

}  // namespace qmesh::core::model
