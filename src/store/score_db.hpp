// The score database: receipts and summaries (core/trust/receipt.hpp) kept in SQLite under the
// config dir (scores.db), for standing, credits and `qmesh-cli account` (issue 15).
//
// Durability: WAL with synchronous=FULL, so add_receipt returns only after its transaction is on
// disk; a caller acknowledges a receipt (sends it, or countersigns it) only after add_receipt
// returned Added / Upgraded / Replay. A kill -9 at any moment loses no committed receipt and leaves
// the file consistent (tests/store/kill9_receipts.sh). Schema: PRAGMA user_version, migrated in one
// BEGIN IMMEDIATE transaction on open; a file newer than this code is refused. Growth is bounded by
// fold(): receipts older than an age are summed into one row per (worker, client) and deleted.
//
// One ScoreDb (one writer connection) per file per process; its methods may be called from any
// thread (one mutex). Other processes may open the same file (busy_timeout 5 s).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.hpp"
#include "core/trust/receipt.hpp"

namespace qmesh::store {

using core::trust::PublicKey;
using core::trust::Receipt;
using core::trust::ReceiptId;
using core::trust::Summary;

inline constexpr std::int64_t kSchemaVersion = 1;
inline constexpr std::int32_t kApplicationId = 0x514D5343;  // "QMSC"

enum class AddResult : std::uint8_t {
  Added,     // new: it counts now
  Upgraded,  // it was held client-signed only and is now countersigned (counts once still)
  Replay,    // already held (the same record): counted once, nothing changed
  Conflict,  // another record holds this (worker, client, id): kept the first, this one ignored
  Stale,     // older than what was folded (receipts), or a summary seq not above the held one
};
std::string_view to_string(AddResult r);

struct Totals {
  std::uint64_t served_millicredits = 0;    // as worker: receipts held + folded
  std::uint64_t received_millicredits = 0;  // as client
  std::uint64_t receipts_served = 0;
  std::uint64_t receipts_received = 0;
};

// One (worker, client) pair's row: what fold() summed into it, and the latest summary signed by
// the client (if one was put).
struct PairSummary {
  PublicKey worker{};
  PublicKey client{};
  std::uint64_t folded_millicredits = 0;
  std::uint64_t folded_receipts = 0;
  std::optional<Summary> signed_summary;
};

struct FoldResult {
  std::uint64_t receipts = 0;  // rows folded and deleted
  std::uint64_t pairs = 0;     // (worker, client) rows they went into
};

// default config dir (net::default_config_dir) + "/scores.db".
std::string default_score_db_path();

class ScoreDb {
 public:
  // Opens (creating it and its directory if missing) and migrates. Errors: not a SQLite file, not a
  // QMesh score database, a schema newer than this code, already open in this process, I/O.
  static core::Result<ScoreDb> open(const std::string& path);
  ScoreDb(ScoreDb&&) noexcept;
  ScoreDb& operator=(ScoreDb&&) noexcept;
  ~ScoreDb();

  // Verifies the client's signature (and the worker's, if countersigned), then stores and commits.
  // A receipt whose signature fails is an Error of kind "invalid" and is not stored.
  core::Result<AddResult> add_receipt(const Receipt& r);
  // Several in one transaction (one fsync); one result each, in order.
  core::Result<std::vector<AddResult>> add_receipts(std::span<const Receipt> rs);
  // Keeps the latest summary per (worker, client) by seq; verifies the client's signature.
  core::Result<AddResult> put_summary(const Summary& s);

  std::optional<Receipt> find_receipt(const PublicKey& worker, const PublicKey& client, const ReceiptId& id);
  // Receipts where key is the worker or the client, newest first, at most limit.
  core::Result<std::vector<Receipt>> receipts_for(const PublicKey& key, std::size_t limit = 1000);
  core::Result<std::vector<PairSummary>> summaries_for(const PublicKey& key);
  core::Result<Totals> totals(const PublicKey& key);

  // Folds receipts with time_s < now_s - age_s into their pair's row, deletes them, and from then
  // on refuses receipts older than that cutoff (Stale), so a folded receipt cannot count twice.
  core::Result<FoldResult> fold(std::uint64_t now_s, std::uint64_t age_s);
  // Copies the WAL into the file and truncates it (for size figures and backups).
  core::Status checkpoint();
  const std::string& path() const;

 private:
  struct Impl;
  explicit ScoreDb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qmesh::store
