// ResultsStore: importing the runs of another store into this one (`ladder runs import`, the workbench's
// File > Import Results...; docs/STORE.md, "Importing stores").
//
// The source is attached read only (ATTACH with mode=ro) and checked before anything is written: a
// LadderBench store of a schema version this code knows, SQLite's integrity check, and no run still
// queued or running. The checkpoints of the runs to import are copied into this store's files folder
// first, as temporary files checked against their recorded SHA-256, outside the write transaction (a
// large file takes a while); then one transaction copies the rows and renames the copies into place. Any
// failure rolls the transaction back and removes the copies, so this store is as it was.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <set>

#include <sqlite3.h>
#include <unistd.h>

#include "store/FileHash.h"
#include "store/ResultsStoreImpl.h"
#include "store/Sqlite.h"
#include "store/StoreMigrations.h"
#include "util/Error.h"

namespace ladder {

namespace fs = std::filesystem;
using sqlite::SqliteError;
using sqlite::Statement;
using sqlite::Transaction;
using store_detail::str;

namespace {

// The attached source's schema name in SQL.
constexpr const char* kSource = "import_source";

// What the import needs of one run of the source.
struct SourceRun {
    std::int64_t id = 0;
    RunState status = RunState::Queued;
    std::string specHash;
    std::optional<std::int64_t> seed;
    std::string createdAt;
    std::string checkpointFile; // relative to the source's files folder; empty: none
    std::string checkpointSha256;
    std::optional<std::int64_t> checkpointBytes;
};

bool operator==(const SourceRun& a, const SourceRun& b)
{
    return a.id == b.id && a.status == b.status && a.specHash == b.specHash && a.seed == b.seed
        && a.createdAt == b.createdAt && a.checkpointFile == b.checkpointFile
        && a.checkpointSha256 == b.checkpointSha256;
}

// The columns `table` has in `schema`, in table order.
std::vector<std::string> columnsOf(sqlite::Connection& db, const char* schema, const char* table)
{
    std::vector<std::string> columns;
    Statement s(db, "SELECT name FROM pragma_table_info(:table, :schema)");
    s.bind(":table", table).bind(":schema", schema);
    while (s.step())
        columns.push_back(s.text("name"));
    return columns;
}

// The columns of `table` that both stores have, without `skip`: a source of an older schema version
// lacks the newer columns, which stay NULL (or their default) in the copy.
std::vector<std::string> sharedColumns(
    sqlite::Connection& db, const char* table, const std::set<std::string>& skip)
{
    const auto source = columnsOf(db, kSource, table);
    std::vector<std::string> shared;
    for (const auto& column : columnsOf(db, "main", table))
        if (!skip.count(column) && std::find(source.begin(), source.end(), column) != source.end())
            shared.push_back(column);
    return shared;
}

std::string joined(const std::vector<std::string>& columns)
{
    std::string text;
    for (const auto& c : columns)
        text += (text.empty() ? "\"" : ", \"") + c + "\"";
    return text;
}

// INSERT INTO main.<table> (<parent>, columns...) SELECT :to, columns... FROM source WHERE <parent> = :from.
void copyChildRows(
    sqlite::Connection& db, const char* table, const char* order, std::int64_t from, std::int64_t to)
{
    const auto columns = joined(sharedColumns(db, table, { "id", "run_id" }));
    Statement s(db,
        std::string("INSERT INTO main.") + table + " (run_id, " + columns + ") SELECT :to, " + columns
            + " FROM " + kSource + "." + table + " WHERE run_id = :from ORDER BY " + order);
    s.bind(":to", to).bind(":from", from).run();
}

std::vector<SourceRun> readSourceRuns(sqlite::Connection& db, bool hasCheckpoints)
{
    std::vector<SourceRun> runs;
    Statement s(db,
        std::string("SELECT id, status, spec_hash, seed, created_at")
            + (hasCheckpoints ? ", checkpoint_file, checkpoint_sha256, checkpoint_bytes" : "") + " FROM "
            + kSource + ".runs ORDER BY id");
    while (s.step()) {
        SourceRun r;
        r.id = s.int64("id");
        if (!parseRunState(s.text("status"), &r.status))
            throw Error("run " + str(r.id) + " has an unknown status \"" + s.text("status") + "\"");
        r.specHash = s.text("spec_hash");
        r.seed = s.optInt64("seed");
        r.createdAt = s.text("created_at");
        if (hasCheckpoints && !s.isNull("checkpoint_file") && !s.isNull("checkpoint_sha256")) {
            r.checkpointFile = s.text("checkpoint_file");
            r.checkpointSha256 = s.text("checkpoint_sha256");
            r.checkpointBytes = s.optInt64("checkpoint_bytes");
        }
        runs.push_back(std::move(r));
    }
    return runs;
}

// A run of this store that already holds the source run: the same spec hash and seed, and finished (the
// result is here), or created at the same time (the same record, imported before).
std::optional<std::int64_t> presentRun(sqlite::Connection& db, const SourceRun& run)
{
    Statement s(db,
        "SELECT id FROM main.runs WHERE spec_hash = :hash AND seed IS :seed "
        "AND (status = 'finished' OR created_at = :created) ORDER BY id LIMIT 1");
    s.bind(":hash", run.specHash).bind(":seed", run.seed).bind(":created", run.createdAt);
    if (s.step())
        return s.int64("id");
    return std::nullopt;
}

// Why the source cannot be imported: not a store this code reads.
void checkSourceIdentity(sqlite::Connection& db, int* version)
{
    std::int64_t applicationId = 0;
    try {
        applicationId = db.queryInt(std::string("PRAGMA ") + kSource + ".application_id");
        *version = static_cast<int>(db.queryInt(std::string("PRAGMA ") + kSource + ".user_version"));
    } catch (const SqliteError& e) {
        if (e.code() == SQLITE_NOTADB)
            throw Error("not an SQLite database, or a damaged one (" + std::string(e.what()) + ")");
        throw;
    }
    if (applicationId != store_detail::kApplicationId || *version < 1)
        throw Error("not a LadderBench results store (wrong application id or no schema version)");
    if (*version > ResultsStore::latestSchemaVersion())
        throw Error("its schema version is " + str(*version)
            + ", newer than the versions this LadderBench knows (up to "
            + str(ResultsStore::latestSchemaVersion()) + "): import it with a newer LadderBench");
    std::string problems;
    try {
        Statement check(db, std::string("PRAGMA ") + kSource + ".integrity_check");
        while (check.step())
            problems += (problems.empty() ? "" : "; ") + check.text(nullptr);
    } catch (const SqliteError& e) {
        if (e.code() != SQLITE_CORRUPT)
            throw;
        problems = e.what();
    }
    if (problems != "ok")
        throw Error("it failed SQLite's integrity check: " + problems.substr(0, 300));
}

// A source that another process holds locked (SQLITE_BUSY past the busy timeout while it is read):
// a writer in the middle of its work.
Error lockedError(const SqliteError& e)
{
    return Error("it is locked: another process is writing it (" + std::string(e.what())
        + "); import it when that process has ended");
}

// A half-finished store (a job still writing it, or one killed mid-run) is not imported.
void refuseUnfinished(const std::vector<SourceRun>& runs)
{
    for (const auto& r : runs)
        if (r.status == RunState::Queued || r.status == RunState::Running)
            throw Error("half-finished: run " + str(r.id) + " is still " + toString(r.status)
                + " (its job may still be writing the store, or was killed before the run ended); "
                  "import it when the run has ended");
}

// The temporary copies of checkpoints, and the files renamed into place: removed unless committed.
class PendingFiles {
public:
    ~PendingFiles()
    {
        if (m_committed)
            return;
        for (const auto& file : m_files) {
            std::error_code ec;
            fs::remove(file, ec);
        }
    }
    void add(const std::string& file) { m_files.push_back(file); }
    void commit() { m_committed = true; }

private:
    std::vector<std::string> m_files;
    bool m_committed = false;
};

// A name for a temporary copy in this store's checkpoints folder, unique across processes and calls.
std::string temporaryCopyName(std::int64_t sourceRunId)
{
    static std::atomic<std::uint64_t> counter { 0 };
    return "checkpoints/import-" + str(static_cast<std::int64_t>(::getpid())) + "-"
        + str(static_cast<std::int64_t>(counter++)) + "-run-" + str(sourceRunId) + ".safetensors.tmp";
}

// Copies the source's checkpoint into `copy` and checks the copy against the SHA-256 and size the source
// recorded: a missing, damaged or replaced file fails the import of the store, naming it.
void copyCheckpoint(const std::string& sourceFilesDir, const SourceRun& run, const std::string& copy)
{
    const std::string file = (fs::path(sourceFilesDir) / run.checkpointFile).string();
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
        throw Error("the checkpoint of run " + str(run.id) + ", " + file
            + ", is missing (copy a store together with its .files folder)");
    fs::create_directories(fs::path(copy).parent_path(), ec);
    if (ec)
        throw Error("cannot create " + fs::path(copy).parent_path().string() + ": " + ec.message());
    fs::copy_file(file, copy, fs::copy_options::overwrite_existing, ec);
    if (ec)
        throw Error("copying the checkpoint " + file + " to " + copy + ": " + ec.message());
    const FileDigest digest = hashFile(copy);
    if (digest.sha256 != run.checkpointSha256
        || (run.checkpointBytes && digest.bytes != *run.checkpointBytes))
        throw Error("the checkpoint of run " + str(run.id) + ", " + file
            + ", is not the file its store recorded: its SHA-256 is " + digest.sha256
            + ", the store recorded " + run.checkpointSha256 + "; it was overwritten, damaged or replaced");
}

} // namespace

// The work of importStore(); the source is attached as kSource. Throws Error (the reason the source is
// skipped) or SqliteError.
void ResultsStore::Impl::importAttached(const std::string& source, StoreImport* result)
{
    int version = 0;
    std::vector<SourceRun> before;
    try {
        checkSourceIdentity(db, &version);
        before = readSourceRuns(db, version >= 3);
    } catch (const SqliteError& e) {
        if (e.code() == SQLITE_BUSY)
            throw lockedError(e);
        throw;
    }
    const bool hasCheckpoints = version >= 3;
    result->runsInSource = static_cast<int>(before.size());
    refuseUnfinished(before);

    // The checkpoints of the runs to import, copied and checked before the write lock is taken.
    PendingFiles pending;
    std::map<std::int64_t, std::string> copies; // source run id -> temporary copy (absolute)
    const std::string sourceFilesDir = ResultsStore::filesDirFor(source);
    for (const auto& run : before) {
        if (run.checkpointFile.empty() || presentRun(db, run))
            continue;
        const std::string copy = (fs::path(filesDir) / temporaryCopyName(run.id)).string();
        pending.add(copy);
        copyCheckpoint(sourceFilesDir, run, copy);
        copies[run.id] = copy;
    }

    Transaction tx(db);
    // The source is read as of the transaction's start: it must be what was checked above.
    if (!(readSourceRuns(db, hasCheckpoints) == before))
        throw Error("it changed while it was being imported (a job still writing it?); import it again");
    const auto runColumns = joined(sharedColumns(db, "runs",
        { "id", "queue_position", "owner_pid", "owner_start_ticks", "checkpoint_file", "checkpoint_sha256",
            "checkpoint_bytes" }));
    const std::string now = utcNowIso8601();
    for (const auto& run : before) {
        if (presentRun(db, run)) {
            ++result->alreadyPresent;
            continue;
        }
        Statement insert(db,
            "INSERT INTO main.runs (" + runColumns + ") SELECT " + runColumns + " FROM " + kSource
                + ".runs WHERE id = :id");
        insert.bind(":id", run.id).run();
        const std::int64_t id = db.lastInsertRowId();
        copyChildRows(db, "metrics", "step", run.id, id);
        copyChildRows(db, "evaluations", "id", run.id, id);
        copyChildRows(db, "logs", "id", run.id, id);
        Statement log(db,
            "INSERT INTO main.logs (run_id, time, level, message) VALUES (:run, :time, 'info', :message)");
        log.bind(":run", id)
            .bind(":time", now)
            .bind(":message", "imported from " + source + " (run " + str(run.id) + " there)")
            .run();
        if (const auto copy = copies.find(run.id); copy != copies.end()) {
            const std::string target = checkpointPathFor(path, id);
            std::error_code ec;
            fs::rename(copy->second, target, ec);
            if (ec)
                throw Error("moving the copied checkpoint to " + target + ": " + ec.message());
            pending.add(target);
            Statement record(db,
                "UPDATE main.runs SET checkpoint_file = :file, checkpoint_sha256 = :sha256, "
                "checkpoint_bytes = :bytes WHERE id = :id");
            record.bind(":file", "checkpoints/run-" + str(id) + ".safetensors")
                .bind(":sha256", run.checkpointSha256)
                .bind(":bytes", run.checkpointBytes)
                .bind(":id", id)
                .run();
        } else if (!run.checkpointFile.empty()) {
            throw Error("it changed while it was being imported (run " + str(run.id)
                + " was not here before); import it again");
        }
        ++result->imported;
        result->importedIds.push_back(id);
    }
    tx.commit();
    pending.commit();
}

bool ResultsStore::importStore(const std::string& sourcePath, StoreImport* result, std::string* error)
{
    StoreImport r;
    r.source = sourcePath;
    auto& impl = *m_impl;
    bool attached = false;
    const bool ok = impl.guard("importing " + sourcePath, error, [&] {
        if (impl.readOnly)
            throw Error("this store is open read only");
        std::error_code ec;
        if (!fs::exists(sourcePath, ec))
            throw Error("no results store at " + sourcePath);
        if (!fs::is_regular_file(sourcePath, ec))
            throw Error("it is not a file");
        if (fs::file_size(sourcePath, ec) == 0)
            throw Error("an empty file, not a results store");
        if (filesDirFor(sourcePath) == impl.filesDir)
            throw Error("it is this store itself");
        // Read only. In a folder this user cannot write, and without a -wal file (a store closed cleanly),
        // SQLite cannot make the -shm file a WAL reader needs: the file is read as immutable then.
        try {
            impl.db.attachReadOnly(sourcePath, kSource, false);
            attached = true;
            impl.db.queryInt(std::string("SELECT count(*) FROM ") + kSource + ".sqlite_master");
        } catch (const SqliteError& e) {
            if (e.code() == SQLITE_BUSY)
                throw lockedError(e);
            if (e.code() == SQLITE_NOTADB)
                throw Error("not an SQLite database, or a damaged one (" + std::string(e.what()) + ")");
            if (e.code() != SQLITE_CANTOPEN && e.code() != SQLITE_READONLY)
                throw;
            if (attached)
                impl.db.detach(kSource);
            attached = false;
            if (fs::exists(sourcePath + "-wal", ec))
                throw;
            impl.db.attachReadOnly(sourcePath, kSource, true);
            attached = true;
        }
        impl.importAttached(sourcePath, &r);
    });
    if (attached) {
        try {
            impl.db.detach(kSource);
        } catch (const std::exception&) {
            // The connection keeps it attached until it closes; the next import attaches under the same
            // name only after a detach, so report it.
            impl.fail("importing " + sourcePath, "could not detach it", error);
            r.skipReason = impl.lastError;
            if (result)
                *result = r;
            return false;
        }
    }
    if (!ok) {
        // The reason alone, without "results store MAIN: importing SOURCE: ": callers name the file.
        const std::string prefix = "importing " + sourcePath + ": ";
        const auto at = impl.lastError.find(prefix);
        r.skipReason = at == std::string::npos ? impl.lastError : impl.lastError.substr(at + prefix.size());
        r.imported = 0;
        r.alreadyPresent = 0;
        r.importedIds.clear();
    }
    if (result)
        *result = r;
    return ok;
}

} // namespace ladder
