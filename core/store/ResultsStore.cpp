#include "store/ResultsStore.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <pwd.h>
#include <sqlite3.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "store/ResultsStoreImpl.h"
#include "store/RunsCsv.h"
#include "store/SpecHash.h"
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
using store_detail::ownStartTicks;
using store_detail::runLabel;
using store_detail::str;

} // namespace

// ---- Row mapping --------------------------------------------------------------------------------------

RunRecord store_detail::readRun(Statement& s)
{
    // Columns of later migrations: absent from an older file opened read-only.
    const auto optInt64
        = [&s](const char* column) { return s.hasColumn(column) ? s.optInt64(column) : std::nullopt; };
    const auto text
        = [&s](const char* column) { return s.hasColumn(column) ? s.text(column) : std::string(); };
    RunRecord r;
    r.id = s.int64("id");
    r.createdAt = s.text("created_at");
    r.startedAt = s.text("started_at");
    r.finishedAt = s.text("finished_at");
    r.name = s.text("name");
    r.specJson = s.text("spec_json");
    r.specHash = s.text("spec_hash");
    r.method = s.text("method");
    r.methodOptionsJson = s.text("method_options_json");
    r.backbone = s.text("backbone");
    r.task = s.text("task");
    r.seed = s.optInt64("seed");
    r.device = s.text("device");
    const std::string status = s.text("status");
    if (!parseRunState(status, &r.status))
        throw Error(runLabel(r.id) + " has an unknown status \"" + status + "\"");
    r.errorMessage = s.text("error_message");
    r.queuePosition = s.optInt64("queue_position");
    r.ownerPid = s.optInt64("owner_pid");
    r.step = s.int64("step");
    r.totalSteps = s.int64("total_steps");
    FinalFigures& f = r.figures;
    f.mainMetricName = s.text("main_metric_name");
    f.bestValidationMetric = s.optReal("best_validation_metric");
    f.bestStep = s.optInt64("best_step");
    f.testMetric = s.optReal("test_metric");
    f.lastMetric = s.optReal("last_metric");
    f.peakAllocatedBytes = s.optInt64("peak_allocated_bytes");
    f.peakReservedBytes = s.optInt64("peak_reserved_bytes");
    f.initPeakAllocatedBytes = optInt64("init_peak_allocated_bytes"); // version 2
    f.evalPeakAllocatedBytes = optInt64("eval_peak_allocated_bytes");
    f.weightBytes = s.optInt64("weight_bytes");
    f.gradientBytes = s.optInt64("gradient_bytes");
    f.optimizerBytes = s.optInt64("optimizer_bytes");
    f.trainableParams = s.optInt64("trainable_params");
    f.totalParams = s.optInt64("total_params");
    f.backboneParams = s.optInt64("backbone_params");
    f.wallSeconds = s.optReal("wall_seconds");
    f.tokensPerSecond = s.optReal("tokens_per_second");
    r.checkpointFile = text("checkpoint_file"); // version 3
    r.checkpointSha256 = text("checkpoint_sha256");
    r.checkpointBytes = optInt64("checkpoint_bytes");
    return r;
}

namespace {

using store_detail::readRun;

MetricPoint readMetricPoint(Statement& s)
{
    MetricPoint p;
    p.step = s.int64("step");
    p.epoch = s.optReal("epoch");
    p.loss = s.optReal("loss");
    p.learningRate = s.optReal("learning_rate");
    p.allocatedBytes = s.optInt64("allocated_bytes");
    p.peakAllocatedBytes = s.optInt64("peak_allocated_bytes");
    p.reservedBytes = s.optInt64("reserved_bytes");
    p.tokensPerSecond = s.optReal("tokens_per_second");
    p.elapsedSeconds = s.optReal("elapsed_seconds");
    p.time = s.text("time");
    return p;
}

nlohmann::json parseJson(const std::string& text, const std::string& what)
{
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(what + " is not valid JSON: " + e.what());
    }
}

bool transitionAllowed(RunState from, RunState to)
{
    switch (from) {
    case RunState::Queued:
        return to == RunState::Running || to == RunState::Cancelled || to == RunState::Failed;
    case RunState::Running:
        return to == RunState::Finished || to == RunState::Failed || to == RunState::Cancelled
            || to == RunState::Interrupted;
    default:
        return false;
    }
}

constexpr const char* kSelectRuns = "SELECT * FROM runs";

// Thrown by Impl::openFile for a path with no store; open() turns it into "no results store at PATH".
struct NoStore : std::exception {
    const char* what() const noexcept override { return "no results store"; }
};

} // namespace

// ---------------------------------------------------------------------------------------------------------

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
    if (readOnly)
        openForReading(file);
    else
        openForWriting(file, mode);
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
        attempt(true);
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
    Statement update(db,
        "UPDATE runs SET status = 'interrupted', finished_at = :now, error_message = "
        "COALESCE(error_message, 'the process running it ended before the run did"
        " (pid ' || COALESCE(owner_pid, '?') || ')') "
        "WHERE id = :id AND status = 'running'");
    int count = 0;
    const std::string now = utcNowIso8601();
    for (const auto id : dead) {
        update.bind(":now", now).bind(":id", id).run();
        count += db.changes();
        update.reset();
    }
    tx.commit();
    return count;
}

// ---- Runs (callers hold the transaction where one is needed) --------------------------------------

RunState ResultsStore::Impl::requireRun(std::int64_t runId)
{
    Statement s(db, "SELECT status FROM runs WHERE id = :id");
    s.bind(":id", runId);
    if (!s.step())
        throw Error("no " + runLabel(runId));
    RunState status = RunState::Queued;
    const std::string text = s.text("status");
    if (!parseRunState(text, &status))
        throw Error(runLabel(runId) + " has an unknown status \"" + text + "\"");
    return status;
}

RunRecord ResultsStore::Impl::getRun(std::int64_t runId)
{
    Statement s(db, std::string(kSelectRuns) + " WHERE id = :id");
    s.bind(":id", runId);
    if (!s.step())
        throw Error("no " + runLabel(runId));
    return readRun(s);
}

void ResultsStore::Impl::setStatus(std::int64_t runId, RunState status, const std::string& errorMessage)
{
    const RunState current = requireRun(runId);
    if (current != status && !transitionAllowed(current, status)) {
        if (status == RunState::Queued)
            throw Error(runLabel(runId) + " is " + toString(current)
                + "; a run cannot go back to the queue (create a new run from its spec)");
        throw Error(runLabel(runId) + " is " + toString(current) + "; it cannot become " + toString(status));
    }
    if (current == status) {
        if (!errorMessage.empty()) {
            Statement s(db, "UPDATE runs SET error_message = :message WHERE id = :id");
            s.bind(":message", errorMessage).bind(":id", runId).run();
        }
        return;
    }
    const std::string now = utcNowIso8601();
    if (status == RunState::Running) {
        Statement s(db,
            "UPDATE runs SET status = 'running', queue_position = NULL, "
            "started_at = COALESCE(started_at, :now), owner_pid = :pid, "
            "owner_start_ticks = :ticks, error_message = COALESCE(:message, error_message) "
            "WHERE id = :id");
        s.bind(":now", now)
            .bind(":pid", static_cast<std::int64_t>(getpid()))
            .bind(":ticks", ownStartTicks())
            .bindTextOrNull(":message", errorMessage)
            .bind(":id", runId)
            .run();
    } else {
        Statement s(db,
            "UPDATE runs SET status = :status, queue_position = NULL, finished_at = :now, "
            "error_message = COALESCE(:message, error_message) WHERE id = :id");
        s.bind(":status", toString(status))
            .bind(":now", now)
            .bindTextOrNull(":message", errorMessage)
            .bind(":id", runId)
            .run();
    }
}

void ResultsStore::Impl::setFinalFigures(std::int64_t runId, const FinalFigures& f)
{
    requireRun(runId);
    Statement s(db, R"sql(UPDATE runs SET
        main_metric_name       = COALESCE(:main_metric_name, main_metric_name),
        best_validation_metric = COALESCE(:best_validation_metric, best_validation_metric),
        best_step              = COALESCE(:best_step, best_step),
        test_metric            = COALESCE(:test_metric, test_metric),
        last_metric            = COALESCE(:last_metric, last_metric),
        peak_allocated_bytes   = COALESCE(:peak_allocated_bytes, peak_allocated_bytes),
        peak_reserved_bytes    = COALESCE(:peak_reserved_bytes, peak_reserved_bytes),
        init_peak_allocated_bytes = COALESCE(:init_peak_allocated_bytes, init_peak_allocated_bytes),
        eval_peak_allocated_bytes = COALESCE(:eval_peak_allocated_bytes, eval_peak_allocated_bytes),
        weight_bytes           = COALESCE(:weight_bytes, weight_bytes),
        gradient_bytes         = COALESCE(:gradient_bytes, gradient_bytes),
        optimizer_bytes        = COALESCE(:optimizer_bytes, optimizer_bytes),
        trainable_params       = COALESCE(:trainable_params, trainable_params),
        total_params           = COALESCE(:total_params, total_params),
        backbone_params        = COALESCE(:backbone_params, backbone_params),
        wall_seconds           = COALESCE(:wall_seconds, wall_seconds),
        tokens_per_second      = COALESCE(:tokens_per_second, tokens_per_second)
        WHERE id = :id)sql");
    s.bindTextOrNull(":main_metric_name", f.mainMetricName)
        .bind(":best_validation_metric", f.bestValidationMetric)
        .bind(":best_step", f.bestStep)
        .bind(":test_metric", f.testMetric)
        .bind(":last_metric", f.lastMetric)
        .bind(":peak_allocated_bytes", f.peakAllocatedBytes)
        .bind(":peak_reserved_bytes", f.peakReservedBytes)
        .bind(":init_peak_allocated_bytes", f.initPeakAllocatedBytes)
        .bind(":eval_peak_allocated_bytes", f.evalPeakAllocatedBytes)
        .bind(":weight_bytes", f.weightBytes)
        .bind(":gradient_bytes", f.gradientBytes)
        .bind(":optimizer_bytes", f.optimizerBytes)
        .bind(":trainable_params", f.trainableParams)
        .bind(":total_params", f.totalParams)
        .bind(":backbone_params", f.backboneParams)
        .bind(":wall_seconds", f.wallSeconds)
        .bind(":tokens_per_second", f.tokensPerSecond)
        .bind(":id", runId)
        .run();
}

std::int64_t ResultsStore::Impl::insertRun(const NewRun& run)
{
    if (run.status != RunState::Queued && run.status != RunState::Running)
        throw Error(std::string("a new run is queued or running, not ") + toString(run.status));
    const nlohmann::json spec = parseJson(run.specJson, "the run spec");
    const std::string options = run.methodOptionsJson.empty() ? "{}" : run.methodOptionsJson;
    parseJson(options, "the method options");
    const std::string hash = run.specHash.empty() ? specHash(spec) : run.specHash;
    const bool running = run.status == RunState::Running;

    Statement s(db, R"sql(INSERT INTO runs (created_at, started_at, name, spec_json, spec_hash, method,
            method_options_json, backbone, task, seed, device, status, queue_position, owner_pid,
            owner_start_ticks, total_steps)
        VALUES (:now, :started_at, :name, :spec_json, :spec_hash, :method, :options, :backbone, :task, :seed,
            :device, :status,
            CASE WHEN :status = 'queued'
                 THEN (SELECT COALESCE(MAX(queue_position), 0) + 1 FROM runs WHERE status = 'queued') END,
            :owner_pid, :owner_start_ticks, :total_steps))sql");
    const std::string now = utcNowIso8601();
    s.bind(":now", now)
        .bind(":name", run.name)
        .bind(":spec_json", run.specJson)
        .bind(":spec_hash", hash)
        .bind(":method", run.method)
        .bind(":options", options)
        .bind(":backbone", run.backbone)
        .bind(":task", run.task)
        .bind(":seed", run.seed)
        .bind(":device", run.device)
        .bind(":status", toString(run.status))
        .bind(":total_steps", run.totalSteps);
    if (running) {
        s.bind(":started_at", now)
            .bind(":owner_pid", static_cast<std::int64_t>(getpid()))
            .bind(":owner_start_ticks", ownStartTicks());
    } else {
        s.bindNull(":started_at").bindNull(":owner_pid").bindNull(":owner_start_ticks");
    }
    s.run();
    return db.lastInsertRowId();
}

std::vector<RunRecord> ResultsStore::Impl::listRuns(const RunFilter& filter)
{
    std::string sql = kSelectRuns;
    std::vector<std::string> where;
    if (!filter.statuses.empty()) {
        std::string in;
        for (std::size_t i = 0; i < filter.statuses.size(); ++i)
            in += (i ? ", :status" : ":status") + std::to_string(i);
        where.push_back("status IN (" + in + ")");
    }
    if (!filter.task.empty())
        where.push_back("task = :task");
    if (!filter.backbone.empty())
        where.push_back("backbone = :backbone");
    if (!filter.method.empty())
        where.push_back("method = :method");
    if (!filter.device.empty())
        where.push_back("device = :device");
    for (std::size_t i = 0; i < where.size(); ++i)
        sql += (i ? " AND " : " WHERE ") + where[i];
    switch (filter.order) {
    case RunFilter::Order::IdAscending:
        sql += " ORDER BY id";
        break;
    case RunFilter::Order::IdDescending:
        sql += " ORDER BY id DESC";
        break;
    case RunFilter::Order::QueuePosition:
        sql += " ORDER BY queue_position IS NULL, queue_position, id";
        break;
    }
    if (filter.limit >= 0)
        sql += " LIMIT :limit";

    Statement s(db, sql);
    for (std::size_t i = 0; i < filter.statuses.size(); ++i)
        s.bind((":status" + std::to_string(i)).c_str(), toString(filter.statuses[i]));
    if (!filter.task.empty())
        s.bind(":task", filter.task);
    if (!filter.backbone.empty())
        s.bind(":backbone", filter.backbone);
    if (!filter.method.empty())
        s.bind(":method", filter.method);
    if (!filter.device.empty())
        s.bind(":device", filter.device);
    if (filter.limit >= 0)
        s.bind(":limit", filter.limit);
    std::vector<RunRecord> runs;
    while (s.step())
        runs.push_back(readRun(s));
    return runs;
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

bool ResultsStore::createRun(const NewRun& run, std::int64_t* runId, std::string* error)
{
    return m_impl->guard("creating a run", error, [&] {
        Transaction tx(m_impl->db);
        const std::int64_t id = m_impl->insertRun(run);
        tx.commit();
        if (runId)
            *runId = id;
    });
}

bool ResultsStore::createRuns(
    const std::vector<NewRun>& runs, std::vector<std::int64_t>* runIds, std::string* error)
{
    return m_impl->guard("creating " + str(static_cast<std::int64_t>(runs.size())) + " runs", error, [&] {
        std::vector<std::int64_t> ids;
        ids.reserve(runs.size());
        Transaction tx(m_impl->db);
        for (std::size_t i = 0; i < runs.size(); ++i) {
            try {
                ids.push_back(m_impl->insertRun(runs[i]));
            } catch (const std::exception& e) {
                throw Error("run " + str(static_cast<std::int64_t>(i + 1)) + " of "
                    + str(static_cast<std::int64_t>(runs.size())) + " (\"" + runs[i].name
                    + "\"): " + e.what());
            }
        }
        tx.commit();
        if (runIds)
            *runIds = std::move(ids);
    });
}

bool ResultsStore::setStatus(
    std::int64_t runId, RunState status, const std::string& errorMessage, std::string* error)
{
    return m_impl->guard(std::string("setting ") + runLabel(runId) + " " + toString(status), error, [&] {
        Transaction tx(m_impl->db);
        m_impl->setStatus(runId, status, errorMessage);
        tx.commit();
    });
}

bool ResultsStore::adoptRun(std::int64_t runId, std::string* error)
{
    return m_impl->guard("adopting " + runLabel(runId), error, [&] {
        Transaction tx(m_impl->db);
        const RunState current = m_impl->requireRun(runId);
        if (current != RunState::Running)
            throw Error(runLabel(runId) + " is " + toString(current) + "; only a running run can be adopted");
        Statement s(m_impl->db, "UPDATE runs SET owner_pid = :pid, owner_start_ticks = :ticks WHERE id = :id");
        s.bind(":pid", static_cast<std::int64_t>(getpid())).bind(":ticks", ownStartTicks()).bind(":id", runId).run();
        tx.commit();
    });
}

bool ResultsStore::setProgress(
    std::int64_t runId, std::int64_t step, std::int64_t totalSteps, std::string* error)
{
    return m_impl->guard("setting the progress of " + runLabel(runId), error, [&] {
        Transaction tx(m_impl->db);
        m_impl->requireRun(runId);
        Statement s(m_impl->db, "UPDATE runs SET step = :step, total_steps = :total WHERE id = :id");
        s.bind(":step", step).bind(":total", totalSteps).bind(":id", runId).run();
        tx.commit();
    });
}

bool ResultsStore::setFinalFigures(std::int64_t runId, const FinalFigures& figures, std::string* error)
{
    return m_impl->guard("setting the final figures of " + runLabel(runId), error, [&] {
        Transaction tx(m_impl->db);
        m_impl->setFinalFigures(runId, figures);
        tx.commit();
    });
}

bool ResultsStore::finishRun(std::int64_t runId, RunState status, const FinalFigures& figures,
    const std::string& errorMessage, std::string* error)
{
    return m_impl->guard(std::string("ending ") + runLabel(runId) + " as " + toString(status), error, [&] {
        if (!isFinalState(status))
            throw Error(std::string("a run ends finished, failed, cancelled or interrupted, not ")
                + toString(status));
        Transaction tx(m_impl->db);
        m_impl->setFinalFigures(runId, figures);
        m_impl->setStatus(runId, status, errorMessage);
        tx.commit();
    });
}

bool ResultsStore::deleteRun(std::int64_t runId, std::string* error)
{
    return m_impl->guard("deleting " + runLabel(runId), error, [&] {
        Transaction tx(m_impl->db);
        if (m_impl->requireRun(runId) == RunState::Running)
            throw Error(runLabel(runId) + " is running; cancel it first");
        const std::vector<std::string> files = store_detail::runFiles(m_impl->db, m_impl->filesDir, runId);
        Statement s(m_impl->db, "DELETE FROM runs WHERE id = :id");
        s.bind(":id", runId).run();
        tx.commit();
        try {
            store_detail::removeFiles(files);
        } catch (const std::exception& e) {
            throw Error(std::string("the run is deleted, but ") + e.what());
        }
    });
}

bool ResultsStore::getRun(std::int64_t runId, RunRecord* run, std::string* error)
{
    return m_impl->guard("reading " + runLabel(runId), error, [&] {
        RunRecord record = m_impl->getRun(runId);
        if (run)
            *run = std::move(record);
    });
}

bool ResultsStore::listRuns(const RunFilter& filter, std::vector<RunRecord>* runs, std::string* error)
{
    return m_impl->guard("listing runs", error, [&] {
        auto list = m_impl->listRuns(filter);
        if (runs)
            *runs = std::move(list);
    });
}

bool ResultsStore::findFinishedRun(const std::string& hash, std::optional<RunRecord>* run, std::string* error)
{
    return m_impl->guard("looking for a finished run with spec hash " + hash, error, [&] {
        Statement s(m_impl->db,
            std::string(kSelectRuns)
                + " WHERE spec_hash = :hash AND status = 'finished' ORDER BY id DESC LIMIT 1");
        s.bind(":hash", hash);
        std::optional<RunRecord> found;
        if (s.step())
            found = readRun(s);
        if (run)
            *run = std::move(found);
    });
}

bool ResultsStore::findFinishedRuns(
    const std::vector<std::string>& hashes, std::vector<std::optional<RunRecord>>* runs, std::string* error)
{
    return m_impl->guard(
        "looking for finished runs of " + str(static_cast<std::int64_t>(hashes.size())) + " specs", error,
        [&] {
            auto& db = m_impl->db;
            db.exec("BEGIN"); // one read snapshot for the whole batch
            try {
                Statement s(db,
                    std::string(kSelectRuns)
                        + " WHERE spec_hash = :hash AND status = 'finished' ORDER BY id DESC LIMIT 1");
                std::vector<std::optional<RunRecord>> found;
                found.reserve(hashes.size());
                for (const auto& hash : hashes) {
                    s.bind(":hash", hash);
                    found.push_back(s.step() ? std::optional<RunRecord>(readRun(s)) : std::nullopt);
                    s.reset();
                }
                db.exec("COMMIT");
                if (runs)
                    *runs = std::move(found);
            } catch (...) {
                sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
                throw;
            }
        });
}

bool ResultsStore::appendMetrics(
    std::int64_t runId, const std::vector<MetricPoint>& points, std::string* error)
{
    if (points.empty())
        return m_impl->guard("appending metrics", error, [] {});
    return m_impl->guard(
        "appending " + str(static_cast<std::int64_t>(points.size())) + " metric points to " + runLabel(runId),
        error, [&] {
            auto& db = m_impl->db;
            Transaction tx(db);
            m_impl->requireRun(runId);
            Statement s(db, R"sql(INSERT OR REPLACE INTO metrics (run_id, step, epoch, loss, learning_rate,
                allocated_bytes, peak_allocated_bytes, reserved_bytes, tokens_per_second, elapsed_seconds, time)
            VALUES (:run_id, :step, :epoch, :loss, :learning_rate, :allocated_bytes, :peak_allocated_bytes,
                :reserved_bytes, :tokens_per_second, :elapsed_seconds, :time))sql");
            const std::string now = utcNowIso8601();
            std::int64_t maxStep = points.front().step;
            for (const MetricPoint& p : points) {
                s.bind(":run_id", runId)
                    .bind(":step", p.step)
                    .bind(":epoch", p.epoch)
                    .bind(":loss", p.loss)
                    .bind(":learning_rate", p.learningRate)
                    .bind(":allocated_bytes", p.allocatedBytes)
                    .bind(":peak_allocated_bytes", p.peakAllocatedBytes)
                    .bind(":reserved_bytes", p.reservedBytes)
                    .bind(":tokens_per_second", p.tokensPerSecond)
                    .bind(":elapsed_seconds", p.elapsedSeconds)
                    .bind(":time", p.time.empty() ? now : p.time)
                    .run();
                s.reset();
                maxStep = std::max(maxStep, p.step);
            }
            Statement progress(db, "UPDATE runs SET step = MAX(step, :step) WHERE id = :id");
            progress.bind(":step", maxStep).bind(":id", runId).run();
            tx.commit();
        });
}

bool ResultsStore::getMetrics(
    std::int64_t runId, std::int64_t afterStep, std::vector<MetricPoint>* points, std::string* error)
{
    return m_impl->guard("reading the metrics of " + runLabel(runId), error, [&] {
        Statement s(m_impl->db, "SELECT * FROM metrics WHERE run_id = :id AND step > :after ORDER BY step");
        s.bind(":id", runId).bind(":after", afterStep);
        std::vector<MetricPoint> list;
        while (s.step())
            list.push_back(readMetricPoint(s));
        if (points)
            *points = std::move(list);
    });
}

bool ResultsStore::countMetrics(std::int64_t runId, std::int64_t* count, std::string* error)
{
    return m_impl->guard("counting the metrics of " + runLabel(runId), error, [&] {
        Statement s(m_impl->db, "SELECT count(*) AS n FROM metrics WHERE run_id = :id");
        s.bind(":id", runId);
        s.step();
        if (count)
            *count = s.int64("n");
    });
}

bool ResultsStore::addEvaluation(const Evaluation& evaluation, std::int64_t* id, std::string* error)
{
    return m_impl->guard(
        "adding a " + evaluation.split + " evaluation to " + runLabel(evaluation.runId), error, [&] {
            if (evaluation.split != "validation" && evaluation.split != "test")
                throw Error("split must be \"validation\" or \"test\", not \"" + evaluation.split + "\"");
            if (!evaluation.predictionsJson.empty())
                parseJson(evaluation.predictionsJson, "the predictions");
            nlohmann::json metrics = nlohmann::json::object();
            for (const auto& [name, value] : evaluation.metrics)
                metrics[name] = value; // NaN and infinities become null
            auto& db = m_impl->db;
            Transaction tx(db);
            m_impl->requireRun(evaluation.runId);
            Statement s(db, R"sql(INSERT INTO evaluations (run_id, step, epoch, split, metrics_json,
                main_metric_name, main_metric, predictions_json, time)
            VALUES (:run_id, :step, :epoch, :split, :metrics, :main_name, :main, :predictions, :time))sql");
            s.bind(":run_id", evaluation.runId)
                .bind(":step", evaluation.step)
                .bind(":epoch", evaluation.epoch)
                .bind(":split", evaluation.split)
                .bind(":metrics", metrics.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
                .bindTextOrNull(":main_name", evaluation.mainMetricName)
                .bind(":main", evaluation.mainMetric)
                .bindTextOrNull(":predictions", evaluation.predictionsJson)
                .bind(":time", evaluation.time.empty() ? utcNowIso8601() : evaluation.time)
                .run();
            const std::int64_t newId = db.lastInsertRowId();
            tx.commit();
            if (id)
                *id = newId;
        });
}

bool ResultsStore::getEvaluations(
    std::int64_t runId, std::vector<Evaluation>* evaluations, std::string* error)
{
    return m_impl->guard("reading the evaluations of " + runLabel(runId), error, [&] {
        Statement s(m_impl->db, "SELECT * FROM evaluations WHERE run_id = :id ORDER BY step, id");
        s.bind(":id", runId);
        std::vector<Evaluation> list;
        while (s.step()) {
            Evaluation e;
            e.id = s.int64("id");
            e.runId = s.int64("run_id");
            e.step = s.int64("step");
            e.epoch = s.optReal("epoch");
            e.split = s.text("split");
            const auto metrics = parseJson(s.text("metrics_json"), "metrics_json of evaluation " + str(e.id));
            if (metrics.is_object()) {
                for (const auto& [name, value] : metrics.items())
                    e.metrics[name]
                        = value.is_number() ? value.get<double>() : std::numeric_limits<double>::quiet_NaN();
            }
            e.mainMetricName = s.text("main_metric_name");
            e.mainMetric = s.optReal("main_metric");
            e.predictionsJson = s.text("predictions_json");
            e.time = s.text("time");
            list.push_back(std::move(e));
        }
        if (evaluations)
            *evaluations = std::move(list);
    });
}

bool ResultsStore::addLog(std::int64_t runId, LogLevel level, const std::string& message, std::string* error)
{
    return m_impl->guard("adding a log line to " + runLabel(runId), error, [&] {
        auto& db = m_impl->db;
        Transaction tx(db);
        m_impl->requireRun(runId);
        Statement s(
            db, "INSERT INTO logs (run_id, time, level, message) VALUES (:id, :time, :level, :message)");
        s.bind(":id", runId)
            .bind(":time", utcNowIso8601())
            .bind(":level", toString(level))
            .bind(":message", message);
        s.run();
        tx.commit();
    });
}

bool ResultsStore::getLogs(
    std::int64_t runId, std::int64_t afterId, std::vector<LogLine>* lines, std::string* error)
{
    return m_impl->guard("reading the log of " + runLabel(runId), error, [&] {
        Statement s(m_impl->db, "SELECT * FROM logs WHERE run_id = :id AND id > :after ORDER BY id");
        s.bind(":id", runId).bind(":after", afterId);
        std::vector<LogLine> list;
        while (s.step()) {
            LogLine line;
            line.id = s.int64("id");
            line.runId = s.int64("run_id");
            line.time = s.text("time");
            parseLogLevel(s.text("level"), &line.level);
            line.message = s.text("message");
            list.push_back(std::move(line));
        }
        if (lines)
            *lines = std::move(list);
    });
}

bool ResultsStore::exportRunsCsv(const std::string& path, const RunFilter& filter, std::string* error)
{
    return m_impl->guard("exporting runs to " + path, error, [&] {
        const std::vector<RunRecord> runs = m_impl->listRuns(filter);
        const std::string temporary = path + ".tmp";
        {
            std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
            if (!out)
                throw Error("cannot write " + temporary + ": " + std::strerror(errno));
            writeRunsCsv(out, runs);
            out.flush();
            if (!out) {
                const std::string reason = std::strerror(errno);
                std::remove(temporary.c_str());
                throw Error("writing " + temporary + ": " + reason);
            }
        }
        std::error_code ec;
        fs::rename(temporary, path, ec);
        if (ec) {
            std::remove(temporary.c_str());
            throw Error("renaming " + temporary + " to " + path + ": " + ec.message());
        }
    });
}

} // namespace ladder
