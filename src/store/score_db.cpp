#include "store/score_db.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>

#include "net/identity.hpp"
#include "store/schema.hpp"
#include "store/sqlite.hpp"

namespace qmesh::store {

namespace trust = core::trust;

namespace {

// Integers go into SQLite's signed 64-bit columns bit for bit and come back the same way.
std::int64_t to_db(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t from_db(std::int64_t v) { return static_cast<std::uint64_t>(v); }
// What one receipt may add to a sum, so that sums of many stay far from overflow (2^50 millicredits
// is ~1e12 credits, a billion tokens of a 1T model).
constexpr std::uint64_t kMaxMillicreditsPerReceipt = 1ull << 50;

std::uint64_t saturate(double d) {
  if (!(d > 0)) return 0;
  if (d >= 18446744073709551615.0) return std::numeric_limits<std::uint64_t>::max();
  return static_cast<std::uint64_t>(d);
}

template <std::size_t N>
bool to_array(const std::vector<std::uint8_t>& v, std::array<std::uint8_t, N>& out) {
  if (v.size() != N) return false;
  std::copy(v.begin(), v.end(), out.begin());
  return true;
}

// The paths this process has open: one writer connection per file per process.
std::mutex g_open_mutex;
std::set<std::string> g_open_paths;

constexpr const char* kSelectReceipt =
    "SELECT r.kind, m.kind, w.key, c.key, r.ask_id, m.ref, r.amount_in, r.amount_out, r.parameters, r.time, "
    "r.client_sig, r.worker_sig FROM receipts r JOIN peers w ON w.id = r.worker JOIN peers c ON c.id = r.client "
    "JOIN models m ON m.id = r.model ";

}  // namespace

std::string_view to_string(AddResult r) {
  switch (r) {
    case AddResult::Added: return "added";
    case AddResult::Upgraded: return "upgraded";
    case AddResult::Replay: return "replay";
    case AddResult::Conflict: return "conflict";
    case AddResult::Stale: return "stale";
  }
  return "unknown";
}

std::string default_score_db_path() { return net::default_config_dir() + "/scores.db"; }

struct ScoreDb::Impl {
  std::mutex mu;
  sqlite3* db = nullptr;
  std::string path;
  std::string key;  // the canonical path in g_open_paths
  sql::Stmt find_peer, insert_peer, find_model, insert_model, insert_receipt, find_receipt, upgrade, folded_before;

  ~Impl() {
    // close_v2: the connection goes when the last of the statements (members, finalized after
    // this body) does.
    if (db) sqlite3_close_v2(db);
    std::lock_guard lock(g_open_mutex);
    g_open_paths.erase(key);
  }

  // A stepped statement that is not reset keeps its read transaction open, and with it the WAL
  // (no checkpoint may pass it): every transaction resets the cached statements before it ends.
  void reset_all() {
    for (auto* s : {&find_peer, &insert_peer, &find_model, &insert_model, &insert_receipt, &find_receipt, &upgrade,
                    &folded_before})
      s->reset();
  }

  core::Result<std::int64_t> intern_peer(const PublicKey& k) {
    find_peer.reset();
    if (find_peer.bind(1, k).step() == SQLITE_ROW) return find_peer.int64(0);
    insert_peer.reset();
    if (!insert_peer.bind(1, k).run()) return sql::error(db, "intern key");
    return sqlite3_last_insert_rowid(db);
  }

  core::Result<std::int64_t> intern_model(const Receipt& r) {
    find_model.reset();
    if (find_model.bind(1, static_cast<std::int64_t>(r.model_kind)).bind(2, r.model).step() == SQLITE_ROW)
      return find_model.int64(0);
    insert_model.reset();
    if (!insert_model.bind(1, static_cast<std::int64_t>(r.model_kind)).bind(2, r.model).run())
      return sql::error(db, "intern model");
    return sqlite3_last_insert_rowid(db);
  }

  static std::optional<Receipt> row_to_receipt(const sql::Stmt& s) {
    Receipt r;
    r.kind = static_cast<trust::ReceiptKind>(s.int64(0));
    r.model_kind = static_cast<trust::ModelRefKind>(s.int64(1));
    if (!to_array(s.blob(2), r.worker) || !to_array(s.blob(3), r.client) || !to_array(s.blob(4), r.id) ||
        !to_array(s.blob(5), r.model) || !to_array(s.blob(10), r.client_sig))
      return std::nullopt;
    r.amount_in = from_db(s.int64(6));
    r.amount_out = from_db(s.int64(7));
    r.parameters = from_db(s.int64(8));
    r.time_s = from_db(s.int64(9));
    if (!s.is_null(11)) {
      trust::Signature sig{};
      if (!to_array(s.blob(11), sig)) return std::nullopt;
      r.worker_sig = sig;
    }
    return r;
  }

  // One receipt inside an open transaction.
  core::Result<AddResult> add_one(const Receipt& r) {
    folded_before.reset();
    if (folded_before.step() != SQLITE_ROW) return sql::error(db, "read fold cutoff");
    if (r.time_s < from_db(folded_before.int64(0))) return AddResult::Stale;
    auto w = intern_peer(r.worker);
    if (!w) return w.error();
    auto c = intern_peer(r.client);
    if (!c) return c.error();
    auto m = intern_model(r);
    if (!m) return m.error();
    auto& s = insert_receipt;
    s.reset();
    s.bind(1, *w).bind(2, *c).bind(3, r.id).bind(4, static_cast<std::int64_t>(r.kind)).bind(5, *m);
    s.bind(6, to_db(r.amount_in)).bind(7, to_db(r.amount_out)).bind(8, to_db(r.parameters)).bind(9, to_db(r.time_s));
    s.bind(10, to_db(std::min(trust::receipt_millicredits(r), kMaxMillicreditsPerReceipt))).bind(11, r.client_sig);
    if (r.worker_sig)
      s.bind(12, *r.worker_sig);
    else
      s.bind_null(12);
    if (!s.run()) return sql::error(db, "insert receipt");
    if (sqlite3_changes(db) == 1) return AddResult::Added;
    // The (worker, client, id) is held already: the same record, its countersigned form, or another.
    find_receipt.reset();
    find_receipt.bind(1, *w).bind(2, *c).bind(3, r.id);
    if (find_receipt.step() != SQLITE_ROW) return sql::error(db, "read held receipt");
    auto held = row_to_receipt(find_receipt);
    if (!held) return core::make_error("a held receipt is malformed in " + path, "db");
    Receipt held_body = *held, new_body = r;
    held_body.worker_sig.reset();
    new_body.worker_sig.reset();
    if (!(held_body == new_body)) return AddResult::Conflict;
    if (held->worker_sig || !r.worker_sig) return AddResult::Replay;
    upgrade.reset();
    if (!upgrade.bind(1, *r.worker_sig).bind(2, *w).bind(3, *c).bind(4, r.id).run())
      return sql::error(db, "store countersignature");
    return AddResult::Upgraded;
  }
};

ScoreDb::ScoreDb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ScoreDb::ScoreDb(ScoreDb&&) noexcept = default;
ScoreDb& ScoreDb::operator=(ScoreDb&&) noexcept = default;
ScoreDb::~ScoreDb() = default;
const std::string& ScoreDb::path() const { return impl_->path; }

core::Result<ScoreDb> ScoreDb::open(const std::string& path) {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
    std::filesystem::create_directories(parent, ec);
    if (ec) return core::make_error("cannot create " + parent.string() + ": " + ec.message(), "io");
    std::filesystem::permissions(parent, std::filesystem::perms::owner_all, ec);
  }
  auto canonical = std::filesystem::weakly_canonical(path, ec).string();
  if (ec) canonical = path;
  auto impl = std::make_unique<Impl>();
  {
    std::lock_guard lock(g_open_mutex);
    if (!g_open_paths.insert(canonical).second)
      return core::make_error(path + " is already open in this process (one writer connection per file)", "in_use");
  }
  impl->key = canonical;
  impl->path = path;
  auto db = schema::open_and_migrate(path);
  if (!db) return db.error();  // ~Impl releases the path
  impl->db = *db;
  sqlite3* d = impl->db;
  impl->find_peer = sql::Stmt(d, "SELECT id FROM peers WHERE key = ?1");
  impl->insert_peer = sql::Stmt(d, "INSERT INTO peers(key) VALUES(?1)");
  impl->find_model = sql::Stmt(d, "SELECT id FROM models WHERE kind = ?1 AND ref = ?2");
  impl->insert_model = sql::Stmt(d, "INSERT INTO models(kind, ref) VALUES(?1, ?2)");
  impl->insert_receipt = sql::Stmt(
      d,
      "INSERT INTO receipts(worker, client, ask_id, kind, model, amount_in, amount_out, parameters, time, "
      "millicredits, client_sig, worker_sig) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
      "ON CONFLICT(worker, client, ask_id) DO NOTHING");
  impl->find_receipt = sql::Stmt(d, (std::string(kSelectReceipt) +
                                     "WHERE r.worker = ?1 AND r.client = ?2 AND r.ask_id = ?3").c_str());
  impl->upgrade = sql::Stmt(
      d, "UPDATE receipts SET worker_sig = ?1 WHERE worker = ?2 AND client = ?3 AND ask_id = ?4 AND worker_sig IS NULL");
  impl->folded_before = sql::Stmt(d, "SELECT value FROM meta WHERE name = 'folded_before'");
  for (auto* s : {&impl->find_peer, &impl->insert_peer, &impl->find_model, &impl->insert_model, &impl->insert_receipt,
                  &impl->find_receipt, &impl->upgrade, &impl->folded_before})
    if (!s->prepared()) return sql::error(d, "prepare a statement on " + path);
  return ScoreDb(std::move(impl));
}

core::Result<std::vector<AddResult>> ScoreDb::add_receipts(std::span<const Receipt> rs) {
  for (const auto& r : rs) {
    const auto v = trust::verify_client_signature(r);
    if (v != trust::Verdict::Ok) return core::make_error("receipt not stored: " + std::string(trust::to_string(v)), "invalid");
    if (r.worker_sig) {
      const auto w = trust::verify_receipt(r);
      if (w != trust::Verdict::Ok) return core::make_error("receipt not stored: " + std::string(trust::to_string(w)), "invalid");
    }
    if (r.time_s > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return core::make_error("receipt not stored: its time is out of range", "invalid");
  }
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db;
  if (auto s = sql::exec(db, "BEGIN IMMEDIATE", "begin"); !s) return s.error();
  std::vector<AddResult> out;
  out.reserve(rs.size());
  for (const auto& r : rs) {
    auto a = impl_->add_one(r);
    if (!a) {
      impl_->reset_all();
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return a.error();
    }
    out.push_back(*a);
  }
  impl_->reset_all();
  // With WAL and synchronous=FULL the WAL is synced before COMMIT returns: after this, it is on disk.
  if (auto s = sql::exec(db, "COMMIT", "commit receipts"); !s) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return s.error();
  }
  return out;
}

core::Result<AddResult> ScoreDb::add_receipt(const Receipt& r) {
  auto v = add_receipts(std::span(&r, 1));
  if (!v) return v.error();
  return v->front();
}

core::Result<AddResult> ScoreDb::put_summary(const Summary& s) {
  if (const auto v = trust::verify_summary(s); v != trust::Verdict::Ok)
    return core::make_error("summary not stored: " + std::string(trust::to_string(v)), "invalid");
  if (s.seq > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return core::make_error("summary not stored: its seq is out of range", "invalid");
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db;
  if (auto st = sql::exec(db, "BEGIN IMMEDIATE", "begin"); !st) return st.error();
  auto fail = [&](core::Error e) -> core::Result<AddResult> {
    impl_->reset_all();
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  };
  auto w = impl_->intern_peer(s.worker);
  if (!w) return fail(w.error());
  auto c = impl_->intern_peer(s.client);
  if (!c) return fail(c.error());
  impl_->reset_all();
  const auto bytes = trust::encode_summary(s);
  AddResult result = AddResult::Added;
  sql::Stmt held(db, "SELECT seq, signed FROM summaries WHERE worker = ?1 AND client = ?2");
  held.bind(1, *w).bind(2, *c);
  if (held.step() == SQLITE_ROW && !held.is_null(0)) {
    if (from_db(held.int64(0)) >= s.seq) {
      const auto held_bytes = held.blob(1);
      held.reset();
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return held_bytes == bytes ? AddResult::Replay : AddResult::Stale;
    }
    result = AddResult::Upgraded;
  }
  held.reset();
  sql::Stmt put(db,
                "INSERT INTO summaries(worker, client, seq, signed) VALUES(?1, ?2, ?3, ?4) "
                "ON CONFLICT(worker, client) DO UPDATE SET seq = excluded.seq, signed = excluded.signed");
  if (!put.bind(1, *w).bind(2, *c).bind(3, to_db(s.seq)).bind(4, bytes).run()) return fail(sql::error(db, "store summary"));
  if (auto st = sql::exec(db, "COMMIT", "commit summary"); !st) return fail(st.error());
  return result;
}

std::optional<Receipt> ScoreDb::find_receipt(const PublicKey& worker, const PublicKey& client, const ReceiptId& id) {
  std::lock_guard lock(impl_->mu);
  sql::Stmt s(impl_->db, (std::string(kSelectReceipt) + "WHERE w.key = ?1 AND c.key = ?2 AND r.ask_id = ?3").c_str());
  if (s.bind(1, worker).bind(2, client).bind(3, id).step() != SQLITE_ROW) return std::nullopt;
  return Impl::row_to_receipt(s);
}

core::Result<std::vector<Receipt>> ScoreDb::receipts_for(const PublicKey& key, std::size_t limit) {
  std::lock_guard lock(impl_->mu);
  sql::Stmt s(impl_->db, (std::string(kSelectReceipt) +
                          "WHERE r.worker = (SELECT id FROM peers WHERE key = ?1) "
                          "OR r.client = (SELECT id FROM peers WHERE key = ?1) ORDER BY r.time DESC, r.id DESC LIMIT ?2")
                             .c_str());
  s.bind(1, key).bind(2, static_cast<std::int64_t>(std::min<std::size_t>(limit, 1u << 30)));
  std::vector<Receipt> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    auto r = Impl::row_to_receipt(s);
    if (!r) return core::make_error("a held receipt is malformed in " + impl_->path, "db");
    out.push_back(std::move(*r));
  }
  if (rc != SQLITE_DONE) return sql::error(impl_->db, "read receipts");
  return out;
}

core::Result<std::vector<PairSummary>> ScoreDb::summaries_for(const PublicKey& key) {
  std::lock_guard lock(impl_->mu);
  sql::Stmt s(impl_->db,
              "SELECT w.key, c.key, s.folded_millicredits, s.folded_receipts, s.signed FROM summaries s "
              "JOIN peers w ON w.id = s.worker JOIN peers c ON c.id = s.client WHERE w.key = ?1 OR c.key = ?1 "
              "ORDER BY s.worker, s.client");
  s.bind(1, key);
  std::vector<PairSummary> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    PairSummary p;
    if (!to_array(s.blob(0), p.worker) || !to_array(s.blob(1), p.client))
      return core::make_error("a summary row is malformed in " + impl_->path, "db");
    p.folded_millicredits = from_db(s.int64(2));
    p.folded_receipts = from_db(s.int64(3));
    if (!s.is_null(4)) {
      const auto b = s.blob(4);
      p.signed_summary = trust::decode_summary(b);
      if (!p.signed_summary) return core::make_error("a signed summary is malformed in " + impl_->path, "db");
    }
    out.push_back(std::move(p));
  }
  if (rc != SQLITE_DONE) return sql::error(impl_->db, "read summaries");
  return out;
}

core::Result<Totals> ScoreDb::totals(const PublicKey& key) {
  std::lock_guard lock(impl_->mu);
  // TOTAL() is a float sum: it cannot overflow, and millicredits need no more precision than that.
  sql::Stmt s(impl_->db,
              "WITH me AS (SELECT id FROM peers WHERE key = ?1) SELECT "
              "(SELECT TOTAL(millicredits) FROM receipts WHERE worker IN me), "
              "(SELECT COUNT(*) FROM receipts WHERE worker IN me), "
              "(SELECT TOTAL(millicredits) FROM receipts WHERE client IN me), "
              "(SELECT COUNT(*) FROM receipts WHERE client IN me), "
              "(SELECT TOTAL(folded_millicredits) FROM summaries WHERE worker IN me), "
              "(SELECT TOTAL(folded_receipts) FROM summaries WHERE worker IN me), "
              "(SELECT TOTAL(folded_millicredits) FROM summaries WHERE client IN me), "
              "(SELECT TOTAL(folded_receipts) FROM summaries WHERE client IN me)");
  s.bind(1, key);
  if (s.step() != SQLITE_ROW) return sql::error(impl_->db, "read totals");
  Totals t;
  // The columns are floats (TOTAL) or integers (COUNT); each is read as a double.
  std::array<double, 8> v{};
  for (int i = 0; i < 8; ++i) v[static_cast<std::size_t>(i)] = s.real(i);
  t.served_millicredits = saturate(v[0] + v[4]);
  t.receipts_served = saturate(v[1] + v[5]);
  t.received_millicredits = saturate(v[2] + v[6]);
  t.receipts_received = saturate(v[3] + v[7]);
  return t;
}

core::Result<FoldResult> ScoreDb::fold(std::uint64_t now_s, std::uint64_t age_s) {
  const std::uint64_t cutoff = std::min<std::uint64_t>(now_s > age_s ? now_s - age_s : 0,
                                                       static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db;
  if (auto st = sql::exec(db, "BEGIN IMMEDIATE", "begin fold"); !st) return st.error();
  auto fail = [&](core::Error e) -> core::Result<FoldResult> {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  };
  FoldResult out;
  sql::Stmt pairs(db, "SELECT COUNT(*) FROM (SELECT 1 FROM receipts WHERE time < ?1 GROUP BY worker, client)");
  if (pairs.bind(1, to_db(cutoff)).step() != SQLITE_ROW) return fail(sql::error(db, "count pairs"));
  out.pairs = from_db(pairs.int64(0));
  sql::Stmt sum(db,
                "INSERT INTO summaries(worker, client, folded_millicredits, folded_receipts) "
                "SELECT worker, client, SUM(millicredits), COUNT(*) FROM receipts WHERE time < ?1 GROUP BY worker, client "
                "ON CONFLICT(worker, client) DO UPDATE SET "
                "folded_millicredits = folded_millicredits + excluded.folded_millicredits, "
                "folded_receipts = folded_receipts + excluded.folded_receipts");
  if (!sum.bind(1, to_db(cutoff)).run()) return fail(sql::error(db, "fold receipts"));
  sql::Stmt del(db, "DELETE FROM receipts WHERE time < ?1");
  if (!del.bind(1, to_db(cutoff)).run()) return fail(sql::error(db, "delete folded receipts"));
  out.receipts = static_cast<std::uint64_t>(sqlite3_changes(db));
  sql::Stmt mark(db, "UPDATE meta SET value = max(value, ?1) WHERE name = 'folded_before'");
  if (!mark.bind(1, to_db(cutoff)).run()) return fail(sql::error(db, "mark fold cutoff"));
  if (auto st = sql::exec(db,
                          "DELETE FROM models WHERE id NOT IN (SELECT model FROM receipts); "
                          "DELETE FROM peers WHERE id NOT IN (SELECT worker FROM receipts) AND id NOT IN "
                          "(SELECT client FROM receipts) AND id NOT IN (SELECT worker FROM summaries) AND id NOT IN "
                          "(SELECT client FROM summaries)",
                          "drop unused keys");
      !st)
    return fail(st.error());
  if (auto st = sql::exec(db, "COMMIT", "commit fold"); !st) return fail(st.error());
  // Give the freed pages back to the file system (auto_vacuum = INCREMENTAL).
  if (auto st = sql::exec(db, "PRAGMA incremental_vacuum", "incremental_vacuum"); !st) return st.error();
  return out;
}

core::Status ScoreDb::checkpoint() {
  std::lock_guard lock(impl_->mu);
  int log = 0, done = 0;
  if (sqlite3_wal_checkpoint_v2(impl_->db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log, &done) != SQLITE_OK)
    return sql::error(impl_->db, "checkpoint");
  return core::Ok{};
}

}  // namespace qmesh::store
