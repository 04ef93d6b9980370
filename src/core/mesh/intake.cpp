#include "core/mesh/intake.hpp"

namespace qmesh::core::mesh {

RequestIntake::RequestIntake(IntakeLimits limits) : limits_(limits) {}

void RequestIntake::begin(const Key& key, const core::IpKey& source, Instant now) {
  if (entries_.contains(key)) return;
  const std::uint64_t seq = next_seq_++;
  entries_.emplace(key, Entry{seq, source, 0, now + limits_.deadline});
  by_age_.emplace(seq, key);
  sessions_[key.first].seqs.insert(seq);
  sources_[source].seqs.insert(seq);
  ++counters_.begun;
}

void RequestIntake::remove(std::map<Key, Entry>::iterator it) {
  const Entry& e = it->second;
  total_ -= e.bytes;
  if (auto s = sessions_.find(it->first.first); s != sessions_.end()) {
    s->second.bytes -= e.bytes;
    s->second.seqs.erase(e.seq);
    if (s->second.seqs.empty()) sessions_.erase(s);
  }
  if (auto s = sources_.find(e.source); s != sources_.end()) {
    s->second.bytes -= e.bytes;
    s->second.seqs.erase(e.seq);
    if (s->second.seqs.empty()) sources_.erase(s);
  }
  by_age_.erase(e.seq);
  entries_.erase(it);
}

void RequestIntake::end(const Key& key) {
  if (auto it = entries_.find(key); it != entries_.end()) remove(it);
}

void RequestIntake::give_up_oldest(const std::set<std::uint64_t>* seqs, std::vector<Key>& out) {
  const std::uint64_t seq = seqs ? *seqs->begin() : by_age_.begin()->first;
  const Key key = by_age_.at(seq);
  out.push_back(key);
  ++counters_.evicted;
  remove(entries_.find(key));
}

std::vector<RequestIntake::Key> RequestIntake::hold(const Key& key, std::size_t bytes) {
  std::vector<Key> out;
  auto it = entries_.find(key);
  if (it == entries_.end()) return out;
  Entry& e = it->second;
  const auto add = [&](std::size_t& b) { b = b - e.bytes + bytes; };
  add(total_);
  add(sessions_.at(key.first).bytes);
  add(sources_.at(e.source).bytes);
  e.bytes = bytes;
  const auto session = key.first;
  const auto source = e.source;  // `e` may go below
  for (auto s = sessions_.find(session); s != sessions_.end() && s->second.bytes > limits_.per_session;
       s = sessions_.find(session))
    give_up_oldest(&s->second.seqs, out);
  for (auto s = sources_.find(source); s != sources_.end() && s->second.bytes > limits_.per_source;
       s = sources_.find(source))
    give_up_oldest(&s->second.seqs, out);
  while (total_ > limits_.total) give_up_oldest(nullptr, out);
  return out;
}

std::vector<RequestIntake::Key> RequestIntake::expire(Instant now) {
  // Deadlines are start + a constant and starts come in order, so the oldest expires first.
  std::vector<Key> out;
  while (!by_age_.empty()) {
    auto it = entries_.find(by_age_.begin()->second);
    if (it->second.deadline > now) break;
    out.push_back(it->first);
    ++counters_.expired;
    remove(it);
  }
  return out;
}

RequestIntake::Instant RequestIntake::next_deadline() const {
  if (by_age_.empty()) return Instant::max();
  return entries_.at(by_age_.begin()->second).deadline;
}

std::size_t RequestIntake::session_bytes(std::uint32_t sid) const {
  auto it = sessions_.find(sid);
  return it == sessions_.end() ? 0 : it->second.bytes;
}

std::size_t RequestIntake::source_bytes(const core::IpKey& source) const {
  auto it = sources_.find(source);
  return it == sources_.end() ? 0 : it->second.bytes;
}

}  // namespace qmesh::core::mesh
