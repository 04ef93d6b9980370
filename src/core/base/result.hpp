// Result<T>: a value or an Error, the core's way of reporting failure without exceptions.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace qmesh::core {

struct Error {
  std::string message;  // one line a user can act on
  std::string kind{};   // machine-readable class where callers branch on it ("busy", "timeout", ...)
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

inline Error make_error(std::string message, std::string kind = {}) {
  return Error{std::move(message), std::move(kind)};
}

// Result<void>: success carries no value.
using Ok = std::monostate;
using Status = Result<std::monostate>;

}  // namespace qmesh::core
