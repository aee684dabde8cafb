#pragma once

// ResultsStore's private state, shared by the .cpp files that implement it: ResultsStore.cpp (opening,
// identity, migrations, interrupted-run recovery), ResultsStoreRuns.cpp (the run records),
// ResultsStoreMetrics.cpp (metrics, evaluations, logs, the CSV export), ResultsStoreQueue.cpp (the queue
// and device leases), ResultsStoreFiles.cpp (the store's files folder and checkpoint hashes),
// ResultsStoreImport.cpp (importing another store) and OwnerProcess.cpp (owner processes). Private to
// core/store: no public header includes it.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "store/ResultsStore.h"
#include "store/Sqlite.h"
#include "util/Error.h"

namespace ladder {

namespace store_detail {

inline std::string str(std::int64_t value)
{
    return std::to_string(value);
}

inline std::string runLabel(std::int64_t runId)
{
    return "run " + str(runId);
}

// ---- Run records (ResultsStoreRuns.cpp) ---------------------------------------------------------------

inline constexpr const char* kSelectRuns = "SELECT * FROM runs";

// One row of runs (SELECT *). Columns added by later migrations read as empty when the file predates
// them, which only a store opened read-only (never migrated) can.
RunRecord readRun(sqlite::Statement& s);

// ---- Owner processes (OwnerProcess.cpp) -----------------------------------------------------------------

// This process's start time in clock ticks since boot (/proc/self/stat field 22). Not cached: a forked
// child must not record its parent's start time.
std::optional<std::int64_t> ownStartTicks();
// Whether the process that set a run running still exists: same pid, not a zombie, same start time (so a
// reused pid does not keep a dead run "running").
bool ownerAlive(std::optional<std::int64_t> pid, std::optional<std::int64_t> startTicks);
// gethostname(), or "localhost".
std::string hostName();

// ---- Files (ResultsStoreFiles.cpp) --------------------------------------------------------------------

// Paths of the files that belong to a run (recorded or at the conventional place), to remove with it.
std::vector<std::string> runFiles(sqlite::Connection& db, const std::string& filesDir, std::int64_t runId);
// Removes them; throws Error naming the first that cannot be removed (a missing file is fine).
void removeFiles(const std::vector<std::string>& files);

// ---- Leases (ResultsStoreQueue.cpp) -------------------------------------------------------------------

// Whether `owner` holds a live lease on `device` now (inside the caller's transaction).
bool leaseHeld(sqlite::Connection& db, const std::string& device, const std::string& owner);

} // namespace store_detail

struct ResultsStore::Impl {
    static constexpr int kSqliteFull = 13; // SQLITE_FULL (sqlite3.h stays out of this header)

    sqlite::Connection db;
    std::string path;
    std::string filesDir; // filesDirFor(path), fixed at open
    std::string lastError;
    int lastErrorCode = 0; // SQLite's primary result code of the last failure; 0 when not an SQLite error
    int interruptedAtOpen = 0;
    bool readOnly = false;

    void setError(const std::string& message, std::string* error)
    {
        lastError = message;
        if (error)
            *error = message;
    }

    // Runs body; turns any exception into false plus "results store FILE: what: message".
    template <typename F> bool guard(const std::string& what, std::string* error, F&& body)
    {
        try {
            if (!db.isOpen())
                throw Error("the store is not open");
            body();
            return true;
        } catch (const sqlite::SqliteError& e) {
            lastErrorCode = e.code();
            // SQLite says "database or disk is full"; the user's words for it lead.
            fail(what,
                e.code() == kSqliteFull ? "no space left on device (" + std::string(e.what()) + ")"
                                        : e.what(),
                error);
        } catch (const std::exception& e) {
            lastErrorCode = 0;
            fail(what, e.what(), error);
        }
        return false;
    }

    void fail(const std::string& what, const std::string& message, std::string* error)
    {
        setError(
            "results store " + (path.empty() ? std::string("(none)") : path) + ": " + what + ": " + message,
            error);
    }

    // ResultsStore.cpp
    void openFile(const std::string& file, OpenMode mode);
    void openForWriting(const std::string& file, OpenMode mode);
    void openForReading(const std::string& file);
    // Reads application_id and user_version and refuses what is not a store this code can read.
    int checkStoreIdentity(bool mustExist);
    void migrate(int version);
    int markInterrupted();
    // Marks one run left running by a dead process as interrupted (inside the caller's transaction);
    // returns whether it changed (ResultsStore.cpp).
    bool markRunInterrupted(std::int64_t runId, const std::string& now);
    // Removes the reserve file (ResultsStoreReserve.cpp) of every run that is not running.
    void removeStaleReserves();
    // ResultsStoreRuns.cpp (callers hold the transaction where one is needed)
    RunState requireRun(std::int64_t runId);
    RunRecord getRun(std::int64_t runId);
    void setStatus(std::int64_t runId, RunState status, const std::string& errorMessage);
    void setFinalFigures(std::int64_t runId, const FinalFigures& f);
    // Inserts a run (inside the caller's transaction) and returns its id.
    std::int64_t insertRun(const NewRun& run);
    std::vector<RunRecord> listRuns(const RunFilter& filter);
    // ResultsStoreClaims.cpp: the run that holds a spec hash (the most recent finished one, else the newest
    // queued or running one whose process lives), inside the caller's transaction; running runs whose
    // process is gone are appended to *dead (to mark interrupted).
    std::optional<RunRecord> holderOf(const std::string& hash, std::vector<std::int64_t>* dead);
    // ResultsStoreImport.cpp: imports the store attached as "import_source" (ResultsStore::importStore).
    void importAttached(const std::string& source, StoreImport* result);
    // ResultsStoreQueue.cpp
    std::optional<RunRecord> nextQueued(const std::string& device);
    std::vector<std::int64_t> queueOrder();
    void applyQueueOrder(const std::vector<std::int64_t>& ids);
    void requireQueued(std::int64_t runId);
};

} // namespace ladder
