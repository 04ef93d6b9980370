#include "store/sqlite.hpp"

namespace qmesh::store::sql {

Stmt::Stmt(sqlite3* db, const char* text) : db_(db) {
  rc_ = sqlite3_prepare_v2(db, text, -1, &s_, nullptr);
  if (rc_ != SQLITE_OK) s_ = nullptr;
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    sqlite3_finalize(s_);
    db_ = o.db_;
    s_ = std::exchange(o.s_, nullptr);
    rc_ = o.rc_;
  }
  return *this;
}

Stmt& Stmt::bind(int i, std::int64_t v) {
  sqlite3_bind_int64(s_, i, v);
  return *this;
}

Stmt& Stmt::bind(int i, std::span<const std::uint8_t> blob) {
  sqlite3_bind_blob(s_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::bind_null(int i) {
  sqlite3_bind_null(s_, i);
  return *this;
}

int Stmt::step() { return s_ ? sqlite3_step(s_) : rc_; }

bool Stmt::run() {
  int rc;
  while ((rc = step()) == SQLITE_ROW) {
  }
  return rc == SQLITE_DONE;
}

void Stmt::reset() {
  if (!s_) return;
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

std::vector<std::uint8_t> Stmt::blob(int col) const {
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s_, col));
  const int n = sqlite3_column_bytes(s_, col);
  return p && n > 0 ? std::vector<std::uint8_t>(p, p + n) : std::vector<std::uint8_t>{};
}

core::Error error(sqlite3* db, const std::string& what) {
  return core::make_error(what + ": " + (db ? sqlite3_errmsg(db) : "out of memory"), "db");
}

core::Status exec(sqlite3* db, const char* text, const char* what) {
  char* msg = nullptr;
  if (sqlite3_exec(db, text, nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = std::string(what) + ": " + (msg ? msg : "unknown error");
    sqlite3_free(msg);
    return core::make_error(std::move(m), "db");
  }
  return core::Ok{};
}

core::Result<std::int64_t> query_int(sqlite3* db, const char* text) {
  Stmt s(db, text);
  if (s.step() != SQLITE_ROW) return error(db, text);
  return s.int64(0);
}

}  // namespace qmesh::store::sql
