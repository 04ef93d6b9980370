// The stream a connection event is about (every stream::Event but Closed names one).
#pragma once

#include <optional>
#include <variant>

#include "core/stream/connection.hpp"

namespace qmesh::core::stream {

inline std::optional<StreamId> stream_of(const Event& e) {
  return std::visit([](const auto& x) -> std::optional<StreamId> {
    if constexpr (requires { x.id; }) return x.id;
    else return std::nullopt;
  }, e);
}

}  // namespace qmesh::core::stream
