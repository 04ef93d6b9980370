// The score database's connection set-up and schema migrations (score_db.hpp).
#pragma once

#include <sqlite3.h>

#include <string>

#include "core/base/result.hpp"

namespace qmesh::store::schema {

// Opens path (creating it), sets the pragmas (auto_vacuum INCREMENTAL before any table, WAL,
// synchronous FULL, journal_size_limit, foreign keys, busy_timeout) and migrates to
// kSchemaVersion in one BEGIN IMMEDIATE transaction. The connection is closed on any error.
core::Result<sqlite3*> open_and_migrate(const std::string& path);

}  // namespace qmesh::store::schema
