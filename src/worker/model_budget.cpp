#include "worker/model_budget.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace qmesh::worker {

std::uint64_t estimate_model_bytes(const core::model::ModelSummary& m, int ctx_size) {
  std::uint64_t kv = 0;
  if (m.block_count && m.embedding_length && ctx_size > 0) {
    std::uint64_t per_token = *m.embedding_length;  // K (and V) per layer and token, without GQA
    if (m.head_count && m.head_count_kv && *m.head_count > 0 && *m.head_count_kv <= *m.head_count)
      per_token = per_token * *m.head_count_kv / *m.head_count;
    kv = 2 /* K and V */ * 2 /* f16 */ * *m.block_count * per_token * static_cast<std::uint64_t>(ctx_size);
  }
  return m.file_size + kv + kProcessAllowance;
}

LoadPlan plan_load(std::span<const BudgetEntry> entries, std::size_t want, std::uint64_t budget) {
  LoadPlan plan;
  const std::uint64_t need = entries[want].bytes;
  if (need > budget) {
    plan.kind = LoadPlan::Kind::Never;
    return plan;
  }
  std::uint64_t used = 0;
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (i == want || !entries[i].resident) continue;
    used += entries[i].bytes;
    if (!entries[i].pinned) order.push_back(i);
  }
  if (used + need <= budget) return plan;
  // Idle ones first, each group least recently used first.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const bool ia = entries[a].active == 0, ib = entries[b].active == 0;
    if (ia != ib) return ia;
    return entries[a].last_use < entries[b].last_use;
  });
  bool busy = false;
  for (const std::size_t i : order) {
    plan.unload.push_back(i);
    busy = busy || entries[i].active > 0;
    used -= entries[i].bytes;
    if (used + need <= budget) {
      plan.kind = busy ? LoadPlan::Kind::Wait : LoadPlan::Kind::Fits;
      return plan;
    }
  }
  // Even with every unpinned model gone it does not fit: pinned ones (loading) must finish first.
  plan.kind = LoadPlan::Kind::Wait;
  return plan;
}

std::optional<std::uint64_t> parse_size(std::string_view t) {
  std::size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  const std::string number(t.substr(0, i));
  std::string unit(t.substr(i));
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1) return std::nullopt;
  if (unit.size() >= 2 && unit.compare(unit.size() - 2, 2, "IB") == 0) unit.resize(unit.size() - 2);
  else if (unit.size() == 2 && unit.back() == 'B') unit.pop_back();
  else if (unit == "B") unit.clear();
  double mult = 1;
  if (unit == "K") mult = 1024.0;
  else if (unit == "M") mult = 1024.0 * 1024;
  else if (unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty()) return std::nullopt;
  const double v = std::strtod(number.c_str(), nullptr) * mult;
  if (!(v >= 1) || v > std::ldexp(1.0, 60)) return std::nullopt;
  if (unit.empty() && number.find('.') != std::string::npos) return std::nullopt;  // a fraction of a byte
  return static_cast<std::uint64_t>(v);
}

std::string format_size(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  else std::snprintf(buf, sizeof buf, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

std::uint64_t default_budget(std::uint64_t mem_available_bytes) { return mem_available_bytes / 5 * 4; }

}  // namespace qmesh::worker
