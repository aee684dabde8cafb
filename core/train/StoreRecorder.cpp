#include "train/StoreRecorder.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "model/T5Config.h"
#include "peft/Method.h"
#include "store/SpecHash.h"
#include "train/DemoPaths.h"
#include "train/TrainState.h"
#include "util/Error.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {

std::optional<double> finite(double v)
{
    return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
}

std::string seconds(std::chrono::milliseconds duration)
{
    char text[32];
    std::snprintf(text, sizeof text, "%g s", static_cast<double>(duration.count()) / 1000.0);
    return text;
}

LogLevel levelOf(const std::string& level)
{
    LogLevel l = LogLevel::Info;
    parseLogLevel(level, &l);
    return l;
}

RunState stateOf(RunOutcome outcome)
{
    switch (outcome) {
    case RunOutcome::Finished:
        return RunState::Finished;
    case RunOutcome::Cancelled:
        return RunState::Cancelled;
    case RunOutcome::Failed:
        break;
    }
    return RunState::Failed;
}

FinalFigures figuresOf(const RunSummary& s)
{
    FinalFigures f;
    f.bestValidationMetric = finite(s.bestValidation);
    if (s.bestStep > 0)
        f.bestStep = s.bestStep;
    f.testMetric = finite(s.testMetric);
    f.mainMetricName = s.mainMetric;
    f.lastMetric = finite(s.lastValidation);
    if (s.peakAllocatedBytes)
        f.peakAllocatedBytes = static_cast<std::int64_t>(s.peakAllocatedBytes);
    if (s.peakReservedBytes)
        f.peakReservedBytes = static_cast<std::int64_t>(s.peakReservedBytes);
    if (s.initPeakAllocatedBytes)
        f.initPeakAllocatedBytes = static_cast<std::int64_t>(s.initPeakAllocatedBytes);
    if (s.evalPeakAllocatedBytes)
        f.evalPeakAllocatedBytes = static_cast<std::int64_t>(s.evalPeakAllocatedBytes);
    if (s.weightBytes)
        f.weightBytes = static_cast<std::int64_t>(s.weightBytes);
    if (s.trainableParams) {
        f.gradientBytes = static_cast<std::int64_t>(s.gradientBytes);
        f.optimizerBytes = static_cast<std::int64_t>(s.optimizerBytes);
        f.trainableParams = s.trainableParams;
        f.totalParams = s.totalParams;
        f.backboneParams = s.backboneParams;
    }
    if (s.wallSeconds > 0)
        f.wallSeconds = s.wallSeconds;
    if (s.tokensPerSecond > 0)
        f.tokensPerSecond = s.tokensPerSecond;
    return f;
}

} // namespace

StoreRecorder::StoreRecorder(ResultsStore& store, std::int64_t runId, TrainerObserver& inner)
    : m_store(store)
    , m_runId(runId)
    , m_inner(inner)
    , m_writer(store, runId)
{
    std::string error;
    if (!m_store.reserveSpace(m_runId, ResultsStore::kRunReserveBytes, &error))
        reportStoreError(error);
}

StoreRecorder::~StoreRecorder()
{
    m_store.releaseReserve(m_runId);
}

void StoreRecorder::noteStoreFailure(const std::string& error)
{
    if (!m_store.lastErrorWasDiskFull() || !m_diskFull.empty())
        return;
    // The points not written yet are lost with the disk; the reserve makes room for the failure itself.
    m_diskFull = error;
    m_writer.discardPending();
    m_store.releaseReserve(m_runId);
}

void StoreRecorder::throwIfDiskFull() const
{
    if (!m_diskFull.empty())
        throw Error(m_diskFull);
}

RunSummary StoreRecorder::recorded(RunSummary summary) const
{
    if (!m_diskFull.empty() && summary.status == RunOutcome::Finished) {
        summary.status = RunOutcome::Failed;
        summary.message = m_diskFull;
    }
    return summary;
}

void StoreRecorder::reportStoreError(const std::string& what)
{
    m_inner.onLog("warning", "results store: " + what);
}

void StoreRecorder::onStarted(const RunSummary& figures)
{
    std::string error;
    if (!m_store.setFinalFigures(m_runId, figuresOf(figures), &error)) {
        reportStoreError(error);
        noteStoreFailure(error);
    }
    m_inner.onStarted(figures);
    throwIfDiskFull();
}

void StoreRecorder::onStep(const TrainStep& s)
{
    MetricPoint p;
    p.step = s.step;
    p.epoch = static_cast<double>(s.epoch);
    p.loss = s.loss;
    p.learningRate = s.learningRate;
    p.allocatedBytes = static_cast<std::int64_t>(s.memory.allocated);
    p.peakAllocatedBytes = static_cast<std::int64_t>(s.memory.peakAllocated);
    p.reservedBytes = static_cast<std::int64_t>(s.memory.reserved);
    p.tokensPerSecond = s.tokensPerSecond;
    p.elapsedSeconds = s.elapsedSeconds;
    std::string error;
    if (!m_writer.add(p, &error)) {
        reportStoreError(error);
        noteStoreFailure(error);
    }
    if ((s.step == 1 || s.step % 50 == 0) // total steps for progress displays; cheap
        && !m_store.setProgress(m_runId, s.step, s.totalSteps, &error))
        noteStoreFailure(error);
    m_inner.onStep(s);
    throwIfDiskFull();
}

void StoreRecorder::onEval(const TrainEval& e)
{
    std::string error;
    if (!m_writer.flush(&error)) {
        reportStoreError(error);
        noteStoreFailure(error);
    }
    Evaluation ev;
    ev.runId = m_runId;
    ev.step = e.step;
    ev.epoch = static_cast<double>(e.epoch);
    ev.split = e.split;
    ev.metrics = e.values;
    ev.mainMetricName = e.mainName;
    ev.mainMetric = finite(e.main);
    if (!e.predictions.empty()) {
        auto list = nlohmann::json::array();
        for (const auto& p : e.predictions)
            list.push_back({ { "id", p.id }, { "target", p.target }, { "prediction", p.prediction } });
        // Invalid UTF-8 in a generated text (a byte-fallback piece) is replaced, never a failed write.
        ev.predictionsJson = list.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    if (m_diskFull.empty() && !m_store.addEvaluation(ev, nullptr, &error)) {
        reportStoreError(error);
        noteStoreFailure(error);
    }
    m_inner.onEval(e);
    throwIfDiskFull();
}

void StoreRecorder::onLog(const std::string& level, const std::string& message)
{
    std::string error;
    if (!m_store.addLog(m_runId, levelOf(level), message, &error)) {
        m_inner.onLog("warning", "results store: " + error);
        noteStoreFailure(error); // never throws: the trainer logs while it fails a run
    }
    m_inner.onLog(level, message);
}

void StoreRecorder::onStateSaving(std::int64_t step)
{
    std::string error;
    if (!m_writer.flush(&error)) {
        reportStoreError(error);
        noteStoreFailure(error);
    }
    m_inner.onStateSaving(step);
    throwIfDiskFull(); // a state whose history the store lost is not saved
}

void StoreRecorder::onBestModel(const Method& method)
{
    // Written beside its place and renamed into it, so the checkpoint path never holds half a file; then
    // its hash goes into the run's row.
    const auto path = checkpointPath(m_store, m_runId);
    const auto temporary = path + ".tmp";
    try {
        fs::create_directories(fs::path(path).parent_path());
        method.saveTrainable(temporary);
        fs::rename(temporary, path);
        std::string error;
        if (!m_store.recordCheckpoint(m_runId, &error)) {
            reportStoreError(error);
            noteStoreFailure(error);
        }
    } catch (const std::exception& e) {
        std::error_code ec;
        fs::remove(temporary, ec);
        const std::string what = e.what();
        // A full disk ends the run (see diskFull()); other failures leave it without a checkpoint.
        const bool full = what.find(std::strerror(ENOSPC)) != std::string::npos
            || what.find(std::strerror(EDQUOT)) != std::string::npos;
        if (full && m_diskFull.empty()) {
            m_diskFull
                = "saving the best trainable weights to " + path + ": no space left on device (" + what + ")";
            m_writer.discardPending();
            m_store.releaseReserve(m_runId);
        }
        reportStoreError(std::string("saving the best trainable weights to ") + path + ": " + what);
    }
    m_inner.onBestModel(method);
    throwIfDiskFull();
}

bool StoreRecorder::finish(const RunSummary& summary)
{
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + m_finalWriteRetry;
    auto pause = std::chrono::milliseconds(100);
    std::string error;
    bool flushed = false;
    for (int attempt = 1;; ++attempt) {
        if (!flushed) {
            flushed = m_writer.flush(&error);
            if (!flushed && !m_store.lastErrorWasBusy()) { // not worth waiting for: write the status anyway
                reportStoreError(error);
                noteStoreFailure(error);
                flushed = true;
            }
        }
        const RunSummary outcome = recorded(summary); // failed when the disk filled
        if (flushed
            && m_store.finishRun(
                m_runId, stateOf(outcome.status), figuresOf(outcome), outcome.message, &error)) {
            if (attempt > 1)
                m_inner.onLog(
                    "info", "results store: the final write succeeded at try " + std::to_string(attempt));
            return true;
        }
        if (m_store.lastErrorWasDiskFull() && m_diskFull.empty()) {
            noteStoreFailure(error); // the reserve is released: once more, as failed
            continue;
        }
        if (!m_store.lastErrorWasBusy() || Clock::now() + pause > deadline)
            break;
        if (attempt == 1)
            reportStoreError(error + " (trying again for up to " + seconds(m_finalWriteRetry) + ")");
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(5000));
    }
    reportStoreError(error);
    return false;
}

std::string StoreRecorder::checkpointPath(const ResultsStore& store, std::int64_t runId)
{
    return store.checkpointPath(runId);
}

std::string StoreRecorder::checkpointPath(const std::string& storePath, std::int64_t runId)
{
    return ResultsStore::checkpointPathFor(storePath, runId);
}

std::string storePathFor(const RunSpec& spec, const std::string& overridePath)
{
    if (!overridePath.empty())
        return overridePath;
    if (!spec.store.empty())
        return spec.store;
    return ResultsStore::defaultPath();
}

std::string runSpecHash(const RunSpec& spec)
{
    auto j = spec.toJson();
    j.erase("store");
    j.erase("name");
    // How often the state is saved changes no result: a spec hashes as it did before the field existed.
    j.at("training").erase("save_state_every_steps");
    return specHash(j);
}

bool findFinishedRunsFor(ResultsStore& store, const std::vector<RunSpec>& specs,
    std::vector<std::optional<RunRecord>>* finished, std::string* error)
{
    std::vector<std::string> hashes;
    hashes.reserve(specs.size());
    for (const auto& spec : specs)
        hashes.push_back(runSpecHash(spec));
    return store.findFinishedRuns(hashes, finished, error);
}

namespace {

// The backbone's encoder layers, read from its config.json for the run's name ("keep 9/12"); 0 when the
// folder cannot be read yet (the name then says "keep 9", and the run itself reports the folder's error).
std::int64_t backboneLayersForName(const RunSpec& spec)
{
    if (spec.name.empty() && spec.method.method == "ladder" && !spec.method.keep.empty()) {
        const std::string folder = backboneFolderFor(spec.backbone);
        std::error_code ec;
        if (fs::is_regular_file(fs::path(folder) / "config.json", ec)) {
            try {
                return T5Config::fromJsonFile((fs::path(folder) / "config.json").string()).numLayers;
            } catch (const std::exception&) {
            }
        }
    }
    return 0;
}

} // namespace

NewRun newRunFor(const RunSpec& spec, RunState status)
{
    NewRun run;
    run.name = spec.name.empty() ? spec.defaultName(backboneLayersForName(spec)) : spec.name;
    run.specJson = spec.toJson().dump();
    run.specHash = runSpecHash(spec);
    run.method = spec.method.method;
    run.methodOptionsJson = spec.method.toJson().dump();
    run.backbone = spec.backbone;
    std::string taskName = spec.task.name;
    if (taskName == "auto") { // a GLUE folder named after its task: RTE -> rte
        taskName = fs::path(spec.task.path).filename().string();
        if (taskName.empty())
            taskName = fs::path(spec.task.path).parent_path().filename().string();
        std::transform(taskName.begin(), taskName.end(), taskName.begin(),
            [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    }
    run.task = spec.task.type == "demo" ? "demo-" + taskName : taskName;
    run.seed = static_cast<std::int64_t>(spec.seed);
    run.device = spec.device;
    run.status = status;
    return run;
}

RunSummary trainRecordedRun(const RunSpec& spec, ResultsStore& store, std::int64_t runId,
    TrainerObserver& observer, std::shared_ptr<DistributedGroup> group)
{
    StoreRecorder recorder(store, runId, observer);
    Trainer trainer(spec);
    trainer.setDistributed(group);
    const auto failBeforeStart = [&](const std::string& message) {
        RunSummary failed;
        failed.status = RunOutcome::Failed;
        failed.message = message;
        failed.device = spec.device;
        recorder.onLog("error", message);
        recorder.finish(failed);
        return failed;
    };
    // The run's training state: saved as it trains, and resumed from when the run has one of its own.
    Trainer::StateOptions state;
    RunRecord run;
    std::string error;
    if (!store.getRun(runId, &run, &error))
        return failBeforeStart(error);
    state.path = store.statePath(runId);
    state.runId = runId;
    state.runCreatedAt = run.createdAt;
    state.specHash = run.specHash;
    try {
        if (const auto header = readTrainStateHeader(state.path)) {
            if (header->runId == runId && header->runCreatedAt == run.createdAt
                && header->specHash == run.specHash) {
                state.resume = true;
                if (!store.rewindRun(runId, header->step, &error))
                    return failBeforeStart(error);
            } else { // left by another store at this path, since deleted: never this run's
                std::error_code ec;
                fs::remove(state.path, ec);
                recorder.onLog("warning",
                    "removed " + state.path + ": the training state of run " + std::to_string(header->runId)
                        + " created " + header->runCreatedAt + ", not this run's");
            }
        }
    } catch (const std::exception& e) {
        return failBeforeStart(
            std::string(e.what()) + " (delete the file to train the run again from step 0)");
    }
    trainer.setStateOptions(state);
    const auto result = recorder.recorded(trainer.run(recorder));
    if (result.status == RunOutcome::Finished) { // a finished run is never resumed: its state goes
        std::error_code ec;
        fs::remove(state.path, ec);
    }
    recorder.finish(result);
    return result;
}

} // namespace ladder
