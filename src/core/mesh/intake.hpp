// RequestIntake: what REQUESTs that are still arriving may hold on a worker, and for how long.
// Keys are free, so a client can open many sessions and streams and never finish its requests
// (a slow-loris that hoards memory and, with a plain global cap, locks everyone else out). The
// intake bounds the bytes unfinished requests hold per session, per source address and in all;
// when a bound is crossed it gives up the OLDEST unfinished requests of that group, so that a
// newcomer is never refused for what others hold (honest requests are whole within an RTT, so
// the oldest are the hoarders). A request not whole within `deadline` of its start is given up
// too. Sans-I/O: the caller passes time, answers what is given up, and frees it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "core/dht/types.hpp"

namespace qmesh::core::mesh {

struct IntakeLimits {
  // At least one REQUEST of the largest size (kMaxRequestBytes plus its header) must fit a session.
  std::size_t per_session = 512 * 1024;
  std::size_t per_source = 2 << 20;  // one IPv4 address / IPv6 /64 (a relay counts as its source)
  // Small enough that a worker under attack stays near 30 MB (the stream buffers of the requests
  // held cost about as much again); 16 largest requests, or thousands of ordinary ones, at once.
  std::size_t total = 4 << 20;
  std::chrono::microseconds deadline = std::chrono::seconds(5);
};

struct IntakeCounters {
  std::uint64_t begun = 0, evicted = 0, expired = 0;
};

class RequestIntake {
 public:
  using Key = std::pair<std::uint32_t, std::uint64_t>;  // (session id, stream id)
  using Instant = std::chrono::microseconds;

  explicit RequestIntake(IntakeLimits limits = {});

  // Starts tracking the request on `key` (session key.first) from `source`; a no-op when tracked.
  // `now` never goes back from one call to the next.
  void begin(const Key& key, const core::IpKey& source, Instant now);
  bool tracking(const Key& key) const { return entries_.contains(key); }
  // The request on `key` now holds `bytes`. Returns the requests given up to stay within the
  // limits, oldest first (maybe `key` itself); they are no longer tracked.
  std::vector<Key> hold(const Key& key, std::size_t bytes);
  // The request is whole, refused or gone: stop tracking it (a no-op when not tracked).
  void end(const Key& key);
  // Requests whose deadline is at or before `now`, no longer tracked.
  std::vector<Key> expire(Instant now);
  Instant next_deadline() const;  // Instant::max() when none

  std::size_t total() const { return total_; }
  std::size_t count() const { return entries_.size(); }
  std::size_t session_bytes(std::uint32_t sid) const;
  std::size_t source_bytes(const core::IpKey& source) const;
  const IntakeCounters& counters() const { return counters_; }
  const IntakeLimits& limits() const { return limits_; }

 private:
  struct Entry {
    std::uint64_t seq = 0;  // order of arrival: lower is older
    core::IpKey source;
    std::size_t bytes = 0;
    Instant deadline{};
  };
  struct Group {
    std::size_t bytes = 0;
    std::set<std::uint64_t> seqs;  // its requests, oldest first
  };

  void remove(std::map<Key, Entry>::iterator it);
  // Gives up the oldest request of a group (its set of seqs, or all when null).
  void give_up_oldest(const std::set<std::uint64_t>* seqs, std::vector<Key>& out);

  IntakeLimits limits_;
  std::map<Key, Entry> entries_;
  std::map<std::uint64_t, Key> by_age_;
  std::map<std::uint32_t, Group> sessions_;
  std::map<core::IpKey, Group> sources_;
  std::size_t total_ = 0;
  std::uint64_t next_seq_ = 0;
  IntakeCounters counters_;
};

}  // namespace qmesh::core::mesh
