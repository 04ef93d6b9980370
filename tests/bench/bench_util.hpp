// Small measuring helpers the benchmarks share.
#pragma once

#include <malloc.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

namespace qmesh::bench {

// Resident set size of this process, in bytes (-1 when /proc is missing).
inline long rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
  return -1;
}

// Bytes malloc has handed out and not had back (no page rounding, unlike RSS).
inline long heap_bytes() {
  const auto m = mallinfo2();
  return static_cast<long>(m.uordblks + m.hblkhd);
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace qmesh::bench
