#include "store/schema.hpp"

#include <array>
#include <string>

#include "store/score_db.hpp"
#include "store/sqlite.hpp"

namespace qmesh::store::schema {
namespace {

constexpr int kBusyTimeoutMs = 5000;
constexpr const char* kJournalSizeLimit = "PRAGMA journal_size_limit = 4194304";  // 4 MiB of WAL kept

// migrations[v] takes a file from user_version v to v + 1. Append only; never edit a shipped one.
constexpr std::array<const char*, kSchemaVersion> kMigrations = {
    // 0 -> 1: keys and models interned; receipts unique per (worker, client, id); one row per pair
    // for folded receipts and the latest signed summary; meta holds the fold cutoff.
    R"sql(
CREATE TABLE peers(id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE);
CREATE TABLE models(id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, ref BLOB NOT NULL, UNIQUE(kind, ref));
CREATE TABLE receipts(
  id INTEGER PRIMARY KEY,
  worker INTEGER NOT NULL REFERENCES peers(id),
  client INTEGER NOT NULL REFERENCES peers(id),
  ask_id BLOB NOT NULL,
  kind INTEGER NOT NULL,
  model INTEGER NOT NULL REFERENCES models(id),
  amount_in INTEGER NOT NULL,
  amount_out INTEGER NOT NULL,
  parameters INTEGER NOT NULL,
  time INTEGER NOT NULL,
  millicredits INTEGER NOT NULL,
  client_sig BLOB NOT NULL,
  worker_sig BLOB,
  UNIQUE(worker, client, ask_id));
CREATE INDEX receipts_by_client ON receipts(client);
CREATE INDEX receipts_by_time ON receipts(time);
CREATE TABLE summaries(
  worker INTEGER NOT NULL REFERENCES peers(id),
  client INTEGER NOT NULL REFERENCES peers(id),
  folded_millicredits INTEGER NOT NULL DEFAULT 0,
  folded_receipts INTEGER NOT NULL DEFAULT 0,
  seq INTEGER,
  signed BLOB,
  PRIMARY KEY(worker, client)) WITHOUT ROWID;
CREATE INDEX summaries_by_client ON summaries(client);
CREATE TABLE meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(name, value) VALUES('folded_before', 0);
)sql",
};

core::Status check_identity(sqlite3* db, const std::string& path) {
  // The first read of the header: a file that is not SQLite fails here.
  auto app = sql::query_int(db, "PRAGMA application_id");
  if (!app) return core::make_error(path + " is not a SQLite database (" + app.error().message + ")", "db");
  if (*app == kApplicationId) return core::Ok{};
  if (*app != 0) return core::make_error(path + " is not a QMesh score database (application_id)", "db");
  auto tables = sql::query_int(db, "SELECT count(*) FROM sqlite_schema");
  if (!tables) return tables.error();
  if (*tables != 0) return core::make_error(path + " is not a QMesh score database (it holds other tables)", "db");
  return core::Ok{};
}

core::Status set_pragmas(sqlite3* db) {
  // auto_vacuum only takes effect on a file with no tables yet, so it comes first.
  if (auto s = sql::exec(db, "PRAGMA auto_vacuum = INCREMENTAL", "auto_vacuum"); !s) return s;
  {
    sql::Stmt wal(db, "PRAGMA journal_mode = WAL");
    if (wal.step() != SQLITE_ROW) return sql::error(db, "journal_mode");
    const auto mode = wal.blob(0);
    if (std::string(mode.begin(), mode.end()) != "wal")
      return core::make_error("the score database could not use WAL (journal_mode stayed " +
                                  std::string(mode.begin(), mode.end()) + ")",
                              "db");
  }
  if (auto s = sql::exec(db, "PRAGMA synchronous = FULL", "synchronous"); !s) return s;
  if (auto s = sql::exec(db, kJournalSizeLimit, "journal_size_limit"); !s) return s;
  return sql::exec(db, "PRAGMA foreign_keys = ON", "foreign_keys");
}

core::Status migrate(sqlite3* db, const std::string& path) {
  if (auto s = sql::exec(db, "BEGIN IMMEDIATE", "begin migration"); !s) return s;
  auto fail = [&](core::Error e) -> core::Status {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  };
  auto version = sql::query_int(db, "PRAGMA user_version");
  if (!version) return fail(version.error());
  if (*version > kSchemaVersion)
    return fail(core::make_error(path + " has schema version " + std::to_string(*version) +
                                     ", newer than this qmesh understands (" + std::to_string(kSchemaVersion) +
                                     "); use a newer qmesh",
                                 "db_too_new"));
  if (*version < 0) return fail(core::make_error(path + " has a negative schema version", "db"));
  if (*version == kSchemaVersion) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return core::Ok{};
  }
  for (auto v = *version; v < kSchemaVersion; ++v)
    if (auto s = sql::exec(db, kMigrations[static_cast<std::size_t>(v)], "migration"); !s) return fail(s.error());
  const std::string stamp = "PRAGMA application_id = " + std::to_string(kApplicationId) +
                            "; PRAGMA user_version = " + std::to_string(kSchemaVersion);
  if (auto s = sql::exec(db, stamp.c_str(), "schema version"); !s) return fail(s.error());
  if (auto s = sql::exec(db, "COMMIT", "commit migration"); !s) return fail(s.error());
  return core::Ok{};
}

}  // namespace

core::Result<sqlite3*> open_and_migrate(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    auto e = sql::error(db, "cannot open " + path);
    sqlite3_close(db);
    return e;
  }
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  core::Status s = check_identity(db, path);
  if (s) s = set_pragmas(db);
  if (s) s = migrate(db, path);
  if (!s) {
    sqlite3_close(db);
    return s.error();
  }
  return db;
}

}  // namespace qmesh::store::schema
