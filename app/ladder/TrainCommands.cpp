// ladder train | sweep | eval: experiments from a run spec to a stored, comparable result (ladder runs:
// RunsCommands.cpp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "DistributedCommands.h"
#include "DistributedLaunch.h"
#include "Interrupt.h"
#include "JsonOutput.h"
#include "MethodFlags.h"
#include "SlurmCommands.h"
#include "SweepPlacement.h"
#include "export/RunModel.h"
#include "model/T5Tokenizer.h"
#include "peft/Method.h"
#include "store/ResultsStore.h"
#include "train/DevicePlacement.h"
#include "train/RunWorkerProcess.h"
#include "train/SlurmExport.h"
#include "train/StoreRecorder.h"
#include "train/Sweep.h"
#include "train/TrainState.h"
#include "train/Trainer.h"
#include "train/TrainerInputs.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder::cli {
namespace {

std::string clock(double seconds)
{
    if (!std::isfinite(seconds) || seconds < 0)
        return "--:--";
    const auto s = static_cast<long long>(seconds);
    std::ostringstream o;
    o << std::setfill('0');
    if (s >= 3600)
        o << s / 3600 << ":" << std::setw(2) << (s / 60) % 60 << ":" << std::setw(2) << s % 60;
    else
        o << std::setw(2) << s / 60 << ":" << std::setw(2) << s % 60;
    return o.str();
}

// Progress on stderr: a one-line bar redrawn in place on a terminal; elsewhere (a log file, a pipe, a batch
// job) a plain line at most every 10 seconds and at the last step. Ctrl+C cancels the run cleanly (between
// steps).
class ProgressBar : public TrainerObserver {
public:
    // plainLines: never redraw in place (runs of a parallel sweep share the terminal).
    explicit ProgressBar(std::string label, bool plainLines = false)
        : m_label(std::move(label))
        , m_terminal(!plainLines && isatty(STDERR_FILENO) != 0)
    {
    }
    void onStep(const TrainStep& s) override
    {
        const double frac
            = s.totalSteps ? static_cast<double>(s.step) / static_cast<double>(s.totalSteps) : 0.0;
        const int width = 24;
        const int filled = static_cast<int>(frac * width);
        const double eta = s.step
            ? s.elapsedSeconds / static_cast<double>(s.step) * static_cast<double>(s.totalSteps - s.step)
            : NAN;
        if (!m_terminal) {
            if (s.step != s.totalSteps && s.elapsedSeconds - m_lastLine < 10.0 && m_lastLine >= 0)
                return;
            m_lastLine = s.elapsedSeconds;
        }
        std::cerr << (m_terminal ? "\r" : "") << m_label;
        if (m_terminal)
            std::cerr << " [" << std::string(filled, '#') << std::string(width - filled, '.') << "]";
        std::cerr << " step " << s.step << "/" << s.totalSteps << "  loss " << std::fixed
                  << std::setprecision(4) << s.loss << "  mem " << mb(static_cast<double>(s.memory.allocated))
                  << " MB (peak " << mb(static_cast<double>(s.memory.peakAllocated)) << ")  ETA "
                  << clock(eta) << (m_terminal ? "   " : "\n") << std::flush;
    }
    void onEval(const TrainEval& e) override
    {
        std::cerr << (m_terminal ? "\r" : "") << m_label << " " << e.split << " step " << e.step << ": "
                  << e.mainName << " " << std::setprecision(4) << e.main << " (" << e.examples
                  << " examples, " << e.invalid << " unparseable)"
                  << (m_terminal ? std::string(30, ' ') : std::string()) << "\n";
    }
    void onLog(const std::string& level, const std::string& message) override
    {
        if (level == "warning" || level == "error")
            std::cerr << "\n" << level << ": " << message << "\n";
        else if (message.rfind("loading ", 0) == 0) // a stage that shows no progress of its own
            std::cerr << m_label << ": " << message << std::endl;
    }
    // LST's Fisher pass before the first step: redrawn in place on a terminal, else a line every 10%.
    void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) override
    {
        const auto tenths = total > 0 ? done * 10 / total : 10;
        if (done == m_initDone || (!m_terminal && tenths <= m_initTenths && done != total))
            return;
        m_initTenths = tenths;
        m_initDone = done;
        std::cerr << (m_terminal ? "\r" : "") << m_label << " " << what << " " << done << "/" << total
                  << " examples" << (m_terminal ? (done == total ? "\n" : "   ") : "\n") << std::flush;
    }
    bool cancelRequested() override { return g_interrupted != 0; }

private:
    std::string m_label;
    bool m_terminal;
    double m_lastLine = -1.0;
    std::int64_t m_initTenths = -1;
    std::int64_t m_initDone = -1;
};

bool openStore(ResultsStore& store, const std::string& path)
{
    std::string error;
    if (!store.open(path, &error))
        throw Error(error);
    return true;
}

void printSummary(std::int64_t id, const RunSummary& s)
{
    std::cout << "run " << id << ": " << toString(s.status);
    if (!s.message.empty())
        std::cout << " (" << s.message << ")";
    std::cout << "\n";
    if (s.trainableParams)
        std::cout << "  trainable      " << s.trainableParams << " of " << s.backboneParams << " ("
                  << std::setprecision(3) << std::fixed
                  << 100.0 * static_cast<double>(s.trainableParams) / static_cast<double>(s.backboneParams)
                  << "%)\n";
    std::cout << "  peak memory    " << mb(static_cast<double>(s.peakAllocatedBytes)) << " MB "
              << s.meterLabel << ", training steps\n";
    if (s.initPeakAllocatedBytes)
        std::cout << "  init peak      " << mb(static_cast<double>(s.initPeakAllocatedBytes)) << " MB\n";
    if (s.evalPeakAllocatedBytes)
        std::cout << "  eval peak      " << mb(static_cast<double>(s.evalPeakAllocatedBytes)) << " MB\n";
    if (std::isfinite(s.bestValidation))
        std::cout << "  validation     " << s.mainMetric << " " << std::setprecision(4) << s.bestValidation
                  << " (best, step " << s.bestStep << ")\n";
    if (std::isfinite(s.testMetric))
        std::cout << "  test           " << s.mainMetric << " " << std::setprecision(4) << s.testMetric
                  << "\n";
    std::cout << "  wall time      " << std::setprecision(1) << s.wallSeconds << " s\n";
}

int reportRun(
    ResultsStore& store, const std::string& path, std::int64_t id, const RunSummary& summary, bool asJson);

// The spec's method options with the method flags given on the command line (--side-checkpoint true,
// --backbone-dtype int4, ...) put over them: the run records the spec it trained.
RunSpec withMethodFlags(const RunSpec& spec, const MethodFlags& flags, const std::string& config)
{
    const auto given = flags.given();
    if (given.empty())
        return spec;
    for (const auto& [key, value] : given.items()) {
        if (!MethodOptions::hasField(spec.method.method, key)) {
            std::string flag = key;
            std::replace(flag.begin(), flag.end(), '_', '-');
            throw UsageError(
                "--" + flag + " is not an option of method " + spec.method.method + " (" + config + ")");
        }
    }
    const std::string source = config + " with the command line's method flags";
    auto j = spec.toJson();
    j["method"] = spec.method.withFields(given, source).toJson();
    return RunSpec::fromJson(j, source);
}

// Launched as a rank (torchrun, srun, `--nproc`: docs/SCALING.md), rank 0 records the run and the others
// train beside it.
int runTrain(const std::string& config, const std::string& storeOverride, bool asJson,
    const MethodFlags& flags, double distTimeout)
{
    // Ctrl+C from the start (registerTrainCommands installs the handler): before the run is recorded it
    // ends here; once the trainer loads, it ends the run as cancelled at its first poll after the load.
    const auto spec = withMethodFlags(RunSpec::fromFile(config), flags, config);
    const auto env = distributedEnvFromProcess();
    std::shared_ptr<DistributedGroup> group;
    if (env && env->rank > 0)
        return trainFollowerRank(spec, joinGroupFor(spec, *env, collectiveTimeout(distTimeout)));
    ResultsStore store;
    const auto path = storePathFor(spec, storeOverride);
    openStore(store, path);
    throwIfInterrupted();
    if (env)
        group = joinGroupFor(spec, *env, collectiveTimeout(distTimeout));
    ProgressBar bar(spec.displayName());
    std::string error;
    std::int64_t id = -1;
    if (!store.createRun(newRunFor(spec, RunState::Running), &id, &error))
        throw Error(error);
    reportRunToLauncher(
        path, id); // rank 0 of `--nproc`: a rank 0 that dies leaves its run failed, not running
    const auto summary = trainRecordedRun(spec, store, id, bar, group);
    if (group)
        group->shutdown();
    return reportRun(store, path, id, summary, asJson);
}

// ladder train --resume RUN_ID: an interrupted, failed or cancelled run continues from its training state
// in the store's files folder (the state of its last save; without one it trains again from step 0), as
// the same run: its metrics past the state are dropped and recorded again.
int runResume(std::int64_t id, const std::string& storeOverride, bool asJson)
{
    const auto path = requireExistingStore(storeOverride);
    ResultsStore store;
    std::string error;
    if (!store.open(path, ResultsStore::OpenMode::Existing, &error))
        throw Error(error);
    RunRecord run;
    if (!store.getRun(id, &run, &error))
        throw Error(error);
    const auto label = "run " + std::to_string(id);
    if (run.status != RunState::Interrupted && run.status != RunState::Failed
        && run.status != RunState::Cancelled)
        throw Error(label + " is " + toString(run.status)
            + "; only an interrupted, failed or cancelled run can be resumed");
    const auto spec = RunSpec::fromJson(parseJson(run.specJson, label + " spec"), label + " spec");
    // A state file that does not read is refused here, before the run changes.
    const auto header = readTrainStateHeader(store.statePath(id));
    if (header && header->runId == id && header->runCreatedAt == run.createdAt)
        std::cerr << label << ": resuming from step " << header->step << " of " << header->totalSteps << " ("
                  << store.statePath(id) << ")\n";
    else
        std::cerr << label << ": no training state of its own in " << store.filesDir()
                  << "; it trains again from step 0\n";
    throwIfInterrupted();
    if (!store.resumeRun(id, RunState::Running, &error))
        throw Error(error);
    ProgressBar bar(spec.displayName());
    const auto summary = trainRecordedRun(spec, store, id, bar);
    return reportRun(store, path, id, summary, asJson);
}

// The end of `ladder train`: the summary, or the run as JSON; the exit code of its outcome.
int reportRun(
    ResultsStore& store, const std::string& path, std::int64_t id, const RunSummary& summary, bool asJson)
{
    std::string error;
    std::cerr << "\n";
    const int code = summary.status == RunOutcome::Finished
        ? kExitDone
        : (summary.status == RunOutcome::Cancelled ? kExitCancelled : kExitError);
    if (asJson) { // the run as `runs list --json` shows it, and the store
        RunRecord record;
        if (!store.getRun(id, &record, &error))
            throw Error(error);
        auto j = runJson(record);
        j["store"] = path;
        printJson(j);
        return code;
    }
    printSummary(id, summary);
    std::cout << "  store          " << path << "\n";
    return code;
}

// What printSummary prints, from the run's record in the store (a sweep's runs train in other processes).
RunSummary summaryOf(const RunRecord& r)
{
    RunSummary s;
    s.status = r.status == RunState::Finished ? RunOutcome::Finished
        : r.status == RunState::Cancelled     ? RunOutcome::Cancelled
                                              : RunOutcome::Failed;
    s.message = r.errorMessage;
    const auto& f = r.figures;
    s.trainableParams = f.trainableParams.value_or(0);
    s.backboneParams = f.backboneParams.value_or(0);
    s.peakAllocatedBytes = static_cast<std::uint64_t>(f.peakAllocatedBytes.value_or(0));
    s.initPeakAllocatedBytes = static_cast<std::uint64_t>(f.initPeakAllocatedBytes.value_or(0));
    s.evalPeakAllocatedBytes = static_cast<std::uint64_t>(f.evalPeakAllocatedBytes.value_or(0));
    s.meterLabel = r.device.rfind("cuda", 0) == 0 ? "peak allocated (CUDA caching allocator)"
                                                  : "peak allocated (CPU tracking allocator)";
    s.mainMetric = f.mainMetricName;
    s.bestValidation = f.bestValidationMetric.value_or(std::nan(""));
    s.bestStep = f.bestStep.value_or(0);
    s.testMetric = f.testMetric.value_or(std::nan(""));
    s.wallSeconds = f.wallSeconds.value_or(0.0);
    return s;
}

// --parallel N (1 or more) as a number; "auto" is runSweep's.
int parallelFlag(const std::string& text)
{
    std::size_t used = 0;
    int n = 0;
    try {
        n = std::stoi(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != text.size() || used == 0 || n < 1)
        throw UsageError("--parallel: expected auto or 1 or more runs at once, got \"" + text + "\"");
    return n;
}

// Each run of a sweep trains in a process of its own (`ladder worker`, core/train/RunWorkerProcess.h),
// `parallel` at a time: a crash fails that run only, and runs at once do not share LibTorch's seed,
// threads or memory meter. With one at a time the progress bar is `ladder train`'s; with several, each
// run reports plain lines with its label.
// parallel "auto": the runs start while they fit their devices by their memory estimates
// (SweepPlacement.h), on the measured devices or deviceBudget's pretend ones.
int runSweep(const std::string& config, const std::string& storeOverride, const std::string& parallelText,
    const std::string& deviceBudget, bool asJson, long long index)
{
    const bool placed = parallelText == "auto";
    const int parallel = placed ? 2 : parallelFlag(parallelText); // auto: several at once, as for N > 1
    if (!deviceBudget.empty() && !placed)
        throw UsageError(
            "--device-budget: only with --parallel auto (runs placed by their memory estimates)");
    if (!deviceBudget.empty()) {
        try {
            parseDeviceBudgets(deviceBudget, "--device-budget");
        } catch (const Error& e) {
            throw UsageError(e.what());
        }
    }
    const auto sweep = readJsonFile(config, "a sweep JSON file");
    const auto raw = selectSweepRuns(expandSweep(sweep, config), index, config); // --index: one run
    std::vector<RunSpec> specs;
    for (std::size_t i = 0; i < raw.size(); ++i)
        specs.push_back(RunSpec::fromJson(raw[i], config + " (run " + std::to_string(i + 1) + ")"));
    std::string path = storeOverride;
    if (path.empty() && sweep.contains("store") && sweep.at("store").is_string())
        path = sweep.at("store").get<std::string>();
    path = storePathFor(specs.front(), path);
    ResultsStore store;
    openStore(store, path);
    throwIfInterrupted();
    // Why a spec is left to the run that holds it (ResultsStore::claimSpec): "running as run 4 (pid 812)",
    // "queued as run 7", "finished as run 5 meanwhile".
    const auto heldText = [](const RunRecord& holder) {
        const std::string run = " as run " + std::to_string(holder.id);
        if (holder.status == RunState::Running)
            return "running" + run
                + (holder.ownerPid ? " (pid " + std::to_string(*holder.ownerPid) + ")" : std::string());
        if (holder.status == RunState::Queued)
            return "queued" + run;
        return std::string(toString(holder.status)) + run + " meanwhile";
    };
    int failed = 0, skipped = 0, done = 0, held = 0;
    std::vector<std::int64_t> skippedIds, trainedIds, heldIds;
    std::vector<WorkerJob> jobs;
    // Specs with a finished run are skipped now; the others are claimed one by one as they start
    // (ResultsStore::claimSpec), so that another writer on the store (a second sweep, the workbench's
    // queue) and this one train each spec once. A spec whose earlier run failed, was cancelled or was
    // interrupted is trained again, as a new run.
    std::vector<std::optional<RunRecord>> finishedBefore;
    std::set<std::string> claimedHashes;
    std::string findError;
    if (!findFinishedRunsFor(store, specs, &finishedBefore, &findError))
        throw Error(findError);
    for (std::size_t i = 0; i < specs.size(); ++i) {
        WorkerJob job;
        job.index = i;
        job.spec = specs[i];
        job.label = "[" + std::to_string(i + 1) + "/" + std::to_string(specs.size()) + "] "
            + specs[i].displayName();
        // A grid that repeats a spec (entries that differ in name only) asked for each entry: the first
        // claims the spec, the others train regardless.
        job.claim = claimedHashes.insert(runSpecHash(specs[i])).second;
        if (const auto& existing = finishedBefore[i]) {
            (asJson ? std::cerr : std::cout)
                << job.label << ": finished before as run " << existing->id << ", skipped\n";
            ++skipped;
            skippedIds.push_back(existing->id);
            job.launch = false;
        }
        jobs.push_back(std::move(job));
    }
    int neverFits = 0;
    const auto launchJobs = [&](auto&&... callbacks) {
        if (placed)
            runPlacedInWorkers(jobs, path, deviceBudget, asJson ? std::cerr : std::cout, callbacks...,
                [&](const WorkerJob&, const std::string&) { ++neverFits; });
        else
            runInWorkers(jobs, path, parallel, callbacks...);
    };
    launchJobs(
        [&](const WorkerJob& job) -> std::unique_ptr<TrainerObserver> {
            return std::make_unique<ProgressBar>(job.label, /*plainLines=*/parallel > 1);
        },
        [&](const WorkerJob& job, std::int64_t runId, const RunWorkerResult& result) {
            std::cerr << "\n";
            trainedIds.push_back(runId);
            RunRecord record;
            std::string error;
            if (asJson) {
                // The runs are printed at the end, as one document.
            } else if (!store.getRun(runId, &record, &error)) {
                std::cout << job.label << ": run " << runId << " " << toString(result.state) << " (" << error
                          << ")\n";
            } else {
                if (parallel > 1)
                    std::cout << job.label << "\n";
                printSummary(runId, summaryOf(record));
            }
            (result.state == RunState::Finished ? done : failed)++;
            return !interrupted();
        },
        [] { return interrupted(); },
        [&](const WorkerJob& job, const RunRecord& holder) {
            (asJson ? std::cerr : std::cout) << job.label << ": " << heldText(holder) << ", skipped\n";
            ++held;
            heldIds.push_back(holder.id);
        });
    failed += neverFits;
    const int code = interrupted() ? kExitCancelled : (failed == 0 ? kExitDone : kExitError);
    if (asJson) { // {"store", "runs": the runs trained, as `runs list --json`, "skipped": ids finished
                  // before}
        nlohmann::json runs = nlohmann::json::array();
        std::sort(trainedIds.begin(), trainedIds.end());
        for (const auto id : trainedIds) {
            RunRecord record;
            std::string error;
            if (!store.getRun(id, &record, &error))
                throw Error(error);
            runs.push_back(runJson(record));
        }
        printJson({ { "store", path }, { "runs", runs }, { "skipped", skippedIds }, { "held", heldIds } });
        return code;
    }
    std::cout << "sweep: " << done << " finished, " << skipped << " skipped, " << failed
              << " failed or cancelled";
    if (held > 0)
        std::cout << ", " << held << " held by another writer";
    if (neverFits > 0)
        std::cout << " (" << neverFits << " never fit their device)";
    std::cout << "; store " << path << "\n";
    return code;
}

int runEval(const std::string& storePath, std::int64_t id, bool asJson)
{
    ResultsStore store;
    const auto path = storePath.empty() ? ResultsStore::defaultPath() : storePath;
    openStore(store, path);
    RunRecord r;
    std::string error;
    if (!store.getRun(id, &r, &error))
        throw Error(error);
    // The run's own checkpoint in this store's files folder, checked against the size and SHA-256 recorded
    // with it (a file overwritten, damaged or missing is refused, naming it and both hashes), loaded into the
    // spec's backbone and method on the run's device (export/RunModel.h).
    throwIfInterrupted();
    auto run = loadStoredRun(store, id, runSpecOf(store, id).device);
    const auto& spec = run.spec;
    throwIfInterrupted();
    TrainerInputs inputs;
    inputs.backbone = run.backbone;
    inputs.tokenizer = run.tokenizer;
    inputs.task = loadTaskSplits(spec.task);
    auto& method = run.method;
    nlohmann::json out { { "run", id }, { "validation", nullptr }, { "test", nullptr } };
    for (const char* split : { "validation", "test" }) {
        if ((std::string(split) == "test" ? inputs.task.test : inputs.task.validation).empty())
            continue;
        throwIfInterrupted();
        const auto e = evaluateSplit(spec, inputs, *method, split);
        if (asJson) {
            nlohmann::json values = nlohmann::json::object();
            for (const auto& [k, v] : e.values)
                values[k] = jsonNumber(v);
            out[split] = { { "main_metric", e.mainName }, { "main", jsonNumber(e.main) },
                { "metrics", values }, { "examples", e.examples }, { "unparseable", e.invalid } };
        } else {
            std::cout << split << ": " << e.mainName << " " << std::setprecision(4) << e.main;
            for (const auto& [k, v] : e.values)
                if (k != e.mainName)
                    std::cout << ", " << k << " " << v;
            std::cout << " (" << e.examples << " examples)\n";
        }
        Evaluation ev;
        ev.runId = id;
        ev.step = r.figures.bestStep.value_or(r.step);
        ev.split = split;
        ev.metrics = e.values;
        ev.mainMetricName = e.mainName;
        ev.mainMetric = e.main;
        if (!store.addEvaluation(ev, nullptr, &error))
            throw Error(error);
    }
    if (asJson)
        printJson(out);
    return kExitDone;
}

} // namespace

void registerTrainCommands(CLI::App& app)
{
    {
        auto config = std::make_shared<std::string>();
        auto store = std::make_shared<std::string>();
        auto json = std::make_shared<bool>(false);
        auto resume = std::make_shared<std::int64_t>(0);
        auto* cmd
            = app.add_subcommand("train", "Train one run from a run spec and record it in the results store");
        auto* configOption = cmd->add_option("--config", *config, "run spec JSON (- : standard input)");
        auto* resumeOption = cmd->add_option("--resume", *resume,
            "continue the interrupted, failed or cancelled run RUN_ID from its last saved training state");
        resumeOption->option_text("RUN_ID");
        configOption->excludes(resumeOption);
        auto flags = std::make_shared<MethodFlags>();
        flags->addTo(
            cmd); // over the spec's method options (not with --resume: a resumed run is the same run)
        cmd->add_option("--store", *store,
            "results store (default: the spec's, else " + ResultsStore::defaultPath()
                + "; with --resume, the run's store, never created)");
        cmd->add_flag("--json", *json, "print the run as `runs list --json` does (progress stays on stderr)");
        auto nproc = std::make_shared<int>(1);
        auto distTimeout = std::make_shared<double>(0.0);
        auto* nprocOption = cmd->add_option("--nproc", *nproc,
            "data parallel on this machine: start N ranks of this run (Gloo on the CPU, NCCL with one GPU "
            "each; default: the spec's training.processes); the spec's batch size is the global batch");
        nprocOption->option_text("N");
        cmd->add_option("--dist-timeout", *distTimeout,
               "data parallel: seconds before a collective waiting for a dead or stuck rank fails (default "
               "LADDER_DIST_TIMEOUT, else 600)")
            ->option_text("SECONDS");
        cmd->callback([config, store, json, resume, resumeOption, flags, nproc, nprocOption, distTimeout] {
            installInterruptHandler(); // before anything is read or loaded
            runGuarded("train", [&] {
                if (resumeOption->count() > 0) {
                    if (!flags->given().empty())
                        throw UsageError("train --resume: method flags would change the run; a resumed run "
                                         "keeps its spec");
                    if (*nproc != 1 || distributedEnvFromProcess())
                        throw UsageError("train --resume: a data-parallel run does not resume (its training "
                                         "state is not saved)");
                    return runResume(*resume, *store, *json);
                }
                if (config->empty())
                    throw UsageError("train: expected --config FILE (a run spec) or --resume RUN_ID");
                if (*nproc < 1)
                    throw UsageError("--nproc: expected 1 or more processes, got " + std::to_string(*nproc));
                // The launcher: N ranks of this same command line (--nproc, else the spec's
                // training.processes). A rank (RANK set) ignores both.
                const int processes = nprocOption->count() > 0
                    ? *nproc
                    : static_cast<int>(RunSpec::fromFile(*config).training.processes);
                if (processes > 1 && !distributedEnvFromProcess()) {
                    if (*config == "-")
                        throw UsageError("train --config -: each of the " + std::to_string(processes)
                            + " data-parallel ranks reads the spec again: give it as a file");
                    LocalLaunch launch;
                    launch.processes = processes;
                    launch.arguments = programArguments();
                    return launchLocalRanks(launch);
                }
                return runTrain(*config, *store, *json, *flags, *distTimeout);
            });
        });
    }
    {
        auto config = std::make_shared<std::string>();
        auto store = std::make_shared<std::string>();
        auto* cmd
            = app.add_subcommand("sweep", "Run a grid of specs one after another; finished runs are skipped");
        cmd->add_option("--config", *config, "sweep JSON: base, methods, seeds, grid")->required();
        auto parallel = std::make_shared<std::string>("1");
        cmd->add_option("--store", *store, "results store");
        cmd->add_option("--parallel", *parallel,
               "runs trained at once, each in a process of its own (a crash fails that run only); auto: "
               "as many as fit their devices by their memory estimates")
            ->capture_default_str();
        auto deviceBudget = std::make_shared<std::string>();
        cmd->add_option("--device-budget", *deviceBudget,
               "with --parallel auto: pretend device memory, e.g. cpu=2GiB or cpu=600MiB,cuda:0=20GiB "
               "(default: $LADDER_DEVICE_BUDGET, else the devices' free memory less a margin)")
            ->option_text("DEVICE=SIZE,...");
        auto json = std::make_shared<bool>(false);
        cmd->add_flag("--json", *json,
            "machine-readable output: {store, runs (as runs list --json), skipped (ids finished before)}");
        auto slurm = std::make_shared<SlurmSweepFlags>(); // --emit slurm, --index (SlurmCommands.cpp)
        slurm->addTo(cmd);
        cmd->callback([config, store, parallel, deviceBudget, json, slurm] {
            installInterruptHandler(); // before anything is read or loaded
            runGuarded("sweep", [&] {
                if (slurm->emitting())
                    return emitSlurmSweep(*config, *slurm, *json);
                return runSweep(*config, *store, *parallel, *deviceBudget, *json, slurm->index());
            });
        });
    }
    {
        auto store = std::make_shared<std::string>();
        auto id = std::make_shared<std::int64_t>(0);
        auto json = std::make_shared<bool>(false);
        auto* cmd = app.add_subcommand("eval", "Evaluate a stored run's best weights on validation and test");
        cmd->add_option("--run", *id, "run id")->required();
        cmd->add_option(
            "--store", *store, "results store (default: " + ResultsStore::defaultPath() + "; never created)");
        cmd->add_flag("--json", *json, "machine-readable output: {run, validation, test}");
        cmd->callback([store, id, json] {
            installInterruptHandler(); // before the backbone, the task and the checkpoint load
            runGuarded("eval", [&] {
                requireExistingStore(*store); // eval only reads: a missing store is never created
                return runEval(*store, *id, *json);
            });
        });
    }
}

} // namespace ladder::cli
