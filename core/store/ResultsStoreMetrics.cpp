// ResultsStore: what a run records as it goes (metric time series, evaluations, log lines), and the CSV
// export of runs with their final figures.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "store/ResultsStoreImpl.h"
#include "store/RunsCsv.h"
#include "store/Sqlite.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {

namespace fs = std::filesystem;
using sqlite::Statement;
using sqlite::Transaction;
using store_detail::runLabel;
using store_detail::str;

namespace {

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

} // namespace

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
