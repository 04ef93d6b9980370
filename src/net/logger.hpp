// The named spdlog logger of a net component, made from the default logger on first use.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>

namespace qmesh::net {

inline std::shared_ptr<spdlog::logger> component_logger(const char* name) {
  // Several services may start at once in one process (an app with many clients).
  static std::mutex mu;
  std::lock_guard lk(mu);
  auto log = spdlog::get(name);
  if (!log) {
    log = spdlog::default_logger()->clone(name);
    spdlog::register_logger(log);
  }
  return log;
}

}  // namespace qmesh::net
