// ResultsStore: the run records (creating runs, their status changes and final figures, reading, listing
// and deleting them), with the mapping of a runs row to a RunRecord.
#include <sqlite3.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "store/ResultsStoreImpl.h"
#include "store/SpecHash.h"
#include "store/Sqlite.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {

using sqlite::Statement;
using sqlite::Transaction;
using store_detail::kSelectRuns;
using store_detail::ownStartTicks;
using store_detail::readRun;
using store_detail::runLabel;
using store_detail::str;

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

} // namespace

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

void ResultsStore::Impl::setStatus(std::int64_t runId, RunState status, const std::string& reason)
{
    // A run's reason is one line of at most 1,000 characters, whoever wrote it: a message that quotes a
    // hostile file, or LibTorch's backtrace, must not grow the store by megabytes (docs/RELIABILITY.md).
    const std::string errorMessage = oneLine(reason, 1000);
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

// ---- Runs: the public calls ---------------------------------------------------------------------------

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
        Statement s(
            m_impl->db, "UPDATE runs SET owner_pid = :pid, owner_start_ticks = :ticks WHERE id = :id");
        s.bind(":pid", static_cast<std::int64_t>(getpid()))
            .bind(":ticks", ownStartTicks())
            .bind(":id", runId)
            .run();
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

bool ResultsStore::renameRun(std::int64_t runId, const std::string& name, std::string* error)
{
    return m_impl->guard("renaming " + runLabel(runId), error, [&] {
        if (name.find_first_not_of(" \t\r\n") == std::string::npos)
            throw Error("a run's name cannot be empty");
        const std::string trimmed = oneLine(name, kMaxRunNameLength);
        Transaction tx(m_impl->db);
        m_impl->requireRun(runId);
        Statement s(m_impl->db, "UPDATE runs SET name = :name WHERE id = :id");
        s.bind(":name", trimmed).bind(":id", runId).run();
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

} // namespace ladder
