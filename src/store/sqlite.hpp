// Thin RAII helpers over SQLite's C API for the score database: a connection, a prepared
// statement, and errors as core::Error with SQLite's message.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/base/result.hpp"

namespace qmesh::store::sql {

class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3* db, const char* text);
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(std::exchange(o.s_, nullptr)), rc_(o.rc_) {}
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }

  bool prepared() const { return s_ != nullptr; }
  Stmt& bind(int i, std::int64_t v);
  Stmt& bind(int i, std::span<const std::uint8_t> blob);
  Stmt& bind_null(int i);
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step();
  // step() to the end; false on an error.
  bool run();
  void reset();
  std::int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }
  std::vector<std::uint8_t> blob(int col) const;
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_OK;
};

// Runs statements that return nothing the caller needs; an Error naming what failed.
core::Status exec(sqlite3* db, const char* text, const char* what);
// The first column of the first row of a query, as an integer (a PRAGMA's value).
core::Result<std::int64_t> query_int(sqlite3* db, const char* text);
core::Error error(sqlite3* db, const std::string& what);

}  // namespace qmesh::store::sql
