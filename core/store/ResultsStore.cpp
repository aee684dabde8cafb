// ResultsStore: opening a store (identity check, WAL, migrations, interrupted-run recovery), closing it,
// and the store-wide queries (schema version, integrity, data version).
#include "store/ResultsStore.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <pwd.h>
#include <sqlite3.h>
#include <unistd.h>

#include "store/ResultsStoreImpl.h"
#include "store/Sqlite.h"
#include "store/StoreMigrations.h"
#include "util/Error.h"

namespace ladder {

namespace fs = std::filesystem;
using sqlite::SqliteError;
using sqlite::Statement;
using sqlite::Transaction;

namespace {

// How long a connection waits for another writer before a write fails with "database is locked".
constexpr int kBusyTimeoutMs = 10000;

using store_detail::ownerAlive;
using store_detail::str;

// Thrown by Impl::openFile for a path with no store; open() turns it into "no results store at PATH".
struct NoStore : std::exception {
    const char* what() const noexcept override { return "no results store"; }
};

} // namespace

// ---- Opening ------------------------------------------------------------------------------------------

void ResultsStore::Impl::openFile(const std::string& file, OpenMode mode)
{
    if (file.empty())
        throw Error("no path given");
    std::error_code ec;
    const fs::path p(file);
    if (fs::is_directory(p, ec))
        throw Error("it is a folder, not a results store file");
    if (mode != OpenMode::Create && !fs::exists(p, ec))
        throw NoStore();
    readOnly = mode == OpenMode::ReadOnly;
    if (readOnly) {
        openForReading(file);
        return;
    }
    try {
        openForWriting(file, mode);
    } catch (const SqliteError& e) {
        // A store this user may read but not write (its folder takes no -wal file, or the file is 0444):
        // SQLite says "attempt to write a readonly database" about whichever statement came first.
        if (e.code() != SQLITE_READONLY)
            throw;
        throw Error(std::string(e.what())
            + " (the file or its folder cannot be written by this user; `ladder runs` reads it read-only)");
    }
}

int ResultsStore::Impl::checkStoreIdentity(bool mustExist)
{
    std::int64_t applicationId = 0;
    std::int64_t version = 0;
    try {
        applicationId = db.queryInt("PRAGMA application_id");
        version = db.queryInt("PRAGMA user_version");
    } catch (const SqliteError& e) {
        if (e.code() == SQLITE_NOTADB)
            throw Error("not an SQLite database, or a damaged one (" + std::string(e.what()) + ")");
        throw;
    }
    const int latest = latestSchemaVersion();
    if (applicationId != 0 && applicationId != store_detail::kApplicationId) {
        char hex[24];
        std::snprintf(hex, sizeof hex, "0x%08llx", static_cast<unsigned long long>(applicationId));
        throw Error(std::string("an SQLite database of another application (application_id ") + hex
            + "), not a LadderBench results store");
    }
    if (version > latest)
        throw Error("its schema version is " + str(version)
            + ", newer than the versions this LadderBench knows (up to " + str(latest)
            + "): it was written by a newer LadderBench; open it with that one");
    if (version == 0 && applicationId == 0) {
        if (db.queryInt("SELECT count(*) FROM sqlite_master WHERE type = 'table'") > 0)
            throw Error(
                "an SQLite database with tables but no LadderBench schema version, not a results store");
        // An empty file: nothing a reader could list, and an existing-only open must not create a store.
        if (mustExist)
            throw NoStore();
    }
    return static_cast<int>(version);
}

void ResultsStore::Impl::openForReading(const std::string& file)
{
    // SQLite reads a WAL file read-only when its -wal and -shm files exist or can be created. In a folder
    // that cannot be written and without them (a store closed cleanly), it cannot: then the file is read
    // as immutable, a snapshot of the main file without locks (nothing can be writing it, as a writer
    // needs the -wal file that is not there).
    const auto attempt = [&](bool immutable) {
        db.openReadOnly(file, immutable);
        db.setBusyTimeout(kBusyTimeoutMs);
        checkStoreIdentity(true);
        db.queryInt("SELECT count(*) FROM sqlite_master"); // reads the schema: fails here if it cannot
    };
    try {
        attempt(false);
    } catch (const SqliteError& e) {
        if (e.code() != SQLITE_READONLY && e.code() != SQLITE_CANTOPEN)
            throw;
        db.close();
        try {
            attempt(true);
        } catch (const SqliteError& again) {
            // "unable to open database file" says little: a file this user may not read says so.
            if (again.code() == SQLITE_CANTOPEN && ::access(file.c_str(), R_OK) != 0)
                throw Error(std::string(again.what()) + " (" + std::strerror(errno) + ")");
            throw;
        }
    }
    db.exec("PRAGMA query_only = ON");
}

void ResultsStore::Impl::openForWriting(const std::string& file, OpenMode mode)
{
    std::error_code ec;
    const fs::path parent = fs::path(file).parent_path();
    if (!parent.empty()) {
        if (!fs::exists(parent, ec)) {
            fs::create_directories(parent, ec);
            if (ec)
                throw Error("cannot create its folder " + parent.string() + ": " + ec.message());
        } else if (!fs::is_directory(parent, ec)) {
            throw Error(parent.string() + " is not a folder");
        }
    }
    try {
        db.open(file, mode == OpenMode::Create);
    } catch (const SqliteError& e) {
        if (e.code() == SQLITE_CANTOPEN)
            throw Error(std::string(e.what()) + " (is the file and its folder writable?)");
        throw;
    }
    db.setBusyTimeout(kBusyTimeoutMs);
    const int version = checkStoreIdentity(mode == OpenMode::Existing);

    std::string journal;
    try {
        journal = db.queryText("PRAGMA journal_mode = WAL");
    } catch (const std::exception& e) {
        throw Error(
            std::string("switching to WAL mode: ") + e.what() + " (is the file and its folder writable?)");
    }
    if (journal != "wal")
        throw Error("cannot switch to WAL mode (journal mode stays \"" + journal + "\")");
    db.exec("PRAGMA synchronous = NORMAL");

    migrate(version);
    db.exec("PRAGMA foreign_keys = ON");
    interruptedAtOpen = markInterrupted();
    removeStaleReserves();
}

void ResultsStore::Impl::migrate(int version)
{
    if (version >= latestSchemaVersion())
        return;
    // Table rebuilds in later migrations need foreign keys off; they are checked before each commit.
    db.exec("PRAGMA foreign_keys = OFF");
    for (const auto& migration : store_detail::migrations()) {
        if (migration.version <= version)
            continue;
        const std::string what
            = "migrating to schema version " + str(migration.version) + " (" + migration.description + ")";
        try {
            Transaction tx(db);
            // Another process may have migrated between our first look and our write lock.
            if (db.queryInt("PRAGMA user_version") >= migration.version)
                continue;
            db.exec(migration.sql);
            Statement fkCheck(db, "PRAGMA foreign_key_check");
            if (fkCheck.step())
                throw Error("foreign key check failed in table " + fkCheck.text("table"));
            db.exec("PRAGMA user_version = " + str(migration.version));
            db.exec("PRAGMA application_id = " + str(store_detail::kApplicationId));
            tx.commit();
        } catch (const std::exception& e) {
            throw Error(what + ": " + e.what());
        }
        version = migration.version;
    }
}

int ResultsStore::Impl::markInterrupted()
{
    // Read first without the write lock: the common case (a GUI opening a quiet store) writes nothing.
    std::vector<std::int64_t> dead;
    {
        Statement s(db, "SELECT id, owner_pid, owner_start_ticks FROM runs WHERE status = 'running'");
        while (s.step())
            if (!ownerAlive(s.optInt64("owner_pid"), s.optInt64("owner_start_ticks")))
                dead.push_back(s.int64("id"));
    }
    if (dead.empty())
        return 0;
    Transaction tx(db);
    int count = 0;
    const std::string now = utcNowIso8601();
    for (const auto id : dead)
        count += markRunInterrupted(id, now) ? 1 : 0;
    tx.commit();
    return count;
}

bool ResultsStore::Impl::markRunInterrupted(std::int64_t runId, const std::string& now)
{
    Statement update(db,
        "UPDATE runs SET status = 'interrupted', finished_at = :now, error_message = "
        "COALESCE(error_message, 'the process running it ended before the run did"
        " (pid ' || COALESCE(owner_pid, '?') || ')') "
        "WHERE id = :id AND status = 'running'");
    update.bind(":now", now).bind(":id", runId).run();
    return db.changes() > 0;
}

// ---------------------------------------------------------------------------------------------------------
// ResultsStore

std::string ResultsStore::defaultPath()
{
    const char* xdg = std::getenv("XDG_DATA_HOME");
    fs::path base;
    if (xdg && xdg[0] == '/') {
        base = xdg;
    } else {
        const char* home = std::getenv("HOME");
        std::string homeDir = home && home[0] ? home : "";
        if (homeDir.empty()) {
            if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir)
                homeDir = pw->pw_dir;
        }
        base = fs::path(homeDir.empty() ? "." : homeDir) / ".local" / "share";
    }
    return (base / "ladderbench" / "results.sqlite").string();
}

int ResultsStore::latestSchemaVersion()
{
    return store_detail::migrations().back().version;
}

ResultsStore::ResultsStore()
    : m_impl(std::make_unique<Impl>())
{
}

ResultsStore::~ResultsStore() = default;

bool ResultsStore::open(const std::string& path, std::string* error)
{
    return open(path, OpenMode::Create, error);
}

bool ResultsStore::open(const std::string& path, OpenMode mode, std::string* error)
{
    close();
    try {
        m_impl->openFile(path, mode);
        m_impl->path = path;
        m_impl->filesDir = filesDirFor(path);
        return true;
    } catch (const NoStore&) {
        m_impl->db.close();
        m_impl->setError("no results store at " + path, error);
    } catch (const std::exception& e) {
        m_impl->db.close();
        m_impl->setError(
            "opening results store " + (path.empty() ? std::string("\"\"") : path) + ": " + e.what(), error);
    }
    m_impl->readOnly = false;
    return false;
}

void ResultsStore::close()
{
    m_impl->db.close();
    m_impl->path.clear();
    m_impl->filesDir.clear();
    m_impl->interruptedAtOpen = 0;
    m_impl->readOnly = false;
}

bool ResultsStore::isOpen() const
{
    return m_impl->db.isOpen();
}

const std::string& ResultsStore::path() const
{
    return m_impl->path;
}

const std::string& ResultsStore::lastError() const
{
    return m_impl->lastError;
}

int ResultsStore::interruptedAtOpen() const
{
    return m_impl->interruptedAtOpen;
}

bool ResultsStore::isReadOnly() const
{
    return m_impl->readOnly;
}

bool ResultsStore::lastErrorWasBusy() const
{
    return m_impl->lastErrorCode == SQLITE_BUSY || m_impl->lastErrorCode == SQLITE_LOCKED;
}

bool ResultsStore::lastErrorWasDiskFull() const
{
    static_assert(Impl::kSqliteFull == SQLITE_FULL);
    return m_impl->lastErrorCode == SQLITE_FULL;
}

bool ResultsStore::setBusyTimeout(int milliseconds, std::string* error)
{
    return m_impl->guard("setting the busy timeout", error, [&] { m_impl->db.setBusyTimeout(milliseconds); });
}

bool ResultsStore::schemaVersion(int* version, std::string* error)
{
    return m_impl->guard("reading the schema version", error, [&] {
        const auto v = static_cast<int>(m_impl->db.queryInt("PRAGMA user_version"));
        if (version)
            *version = v;
    });
}

bool ResultsStore::integrityCheck(std::string* result, std::string* error)
{
    return m_impl->guard("checking integrity", error, [&] {
        Statement s(m_impl->db, "PRAGMA integrity_check");
        std::string text;
        while (s.step())
            text += (text.empty() ? "" : "\n") + s.text(nullptr);
        if (result)
            *result = text;
    });
}

bool ResultsStore::dataVersion(std::int64_t* version, std::string* error)
{
    return m_impl->guard("reading the data version", error, [&] {
        const auto v = m_impl->db.queryInt("PRAGMA data_version");
        if (version)
            *version = v;
    });
}

bool ResultsStore::markInterruptedRuns(int* count, std::string* error)
{
    return m_impl->guard("marking interrupted runs", error, [&] {
        const int n = m_impl->markInterrupted();
        if (count)
            *count = n;
    });
}

} // namespace ladder
