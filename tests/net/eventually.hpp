// For tests of threads: waits (bounded, 20 s) until cond holds and says whether it does. Tests
// assert on the state it waited for, never on how long that took.
#pragma once

#include <chrono>
#include <thread>

namespace qmesh::test {

template <class F>
bool eventually(F cond) {
  for (int i = 0; i < 20000 && !cond(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return cond();
}

}  // namespace qmesh::test
