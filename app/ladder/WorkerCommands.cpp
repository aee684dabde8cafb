// ladder worker: trains one run of a results store in this process, for a supervisor (the window's queue,
// `ladder sweep --parallel N`) that reads its events. Not meant to be typed; hidden from --help.
// The protocol and the supervisor: core/train/RunWorkerProcess.h.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "DistributedCommands.h"
#include "DistributedLaunch.h"
#include "LockedObserver.h"
#include "store/ResultsStore.h"
#include "train/RunWorkerProcess.h"
#include "train/StoreRecorder.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;

void onStopSignal(int)
{
    g_stop = 1;
}

class WorkerEvents : public RunEventWriter {
public:
    using RunEventWriter::RunEventWriter;
    bool cancelRequested() override { return g_stop != 0 || RunEventWriter::cancelRequested(); }
};

// The worker dies with its supervisor (SIGKILL when the process that started it ends: a window killed with
// SIGKILL, crashed or stopped by the kernel's OOM killer). Its run then stays "running" with this dead
// process as owner, and the next open of the store (the window restarted) marks it interrupted, to be
// resumed; a worker that trained on unsupervised would hold the device beside the next window's runs and
// could not be cancelled from it. Throws when the supervisor is already gone.
void dieWithSupervisor()
{
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const char* supervisor = std::getenv(kSupervisorPidVariable);
    if (supervisor && *supervisor && std::to_string(::getppid()) != supervisor)
        throw Error(std::string("the supervisor (pid ") + supervisor + ") ended before this worker started");
}

// The test faults that name a run (docs/WORKBENCH.md): LADDER_FAULT_INJECT="nan@N run=ID" reaches the
// trainer of run ID only, as "nan@N". Before any thread starts (setenv).
void targetNanInjection(std::int64_t runId)
{
    const char* value = std::getenv("LADDER_FAULT_INJECT");
    if (!value || !*value)
        return;
    const std::string forRun = nanInjectionForRun(value, runId);
    if (forRun.empty())
        ::unsetenv("LADDER_FAULT_INJECT");
    else
        ::setenv("LADDER_FAULT_INJECT", forRun.c_str(), 1);
}

// LADDER_WORKER_RLIMIT_AS="MiB [run=ID]": caps this process's address space at what it maps now plus MiB,
// so that the run's allocations fail for real (an out-of-memory run on any machine). Returns the line to
// log, or "" when no limit applies.
std::string limitAddressSpace(std::int64_t runId)
{
    const char* value = std::getenv("LADDER_WORKER_RLIMIT_AS");
    std::uint64_t headroom = 0;
    if (!value || !*value || !parseAddressSpaceLimit(value, runId, &headroom))
        return "";
    std::uint64_t pages = 0;
    if (std::FILE* statm = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(statm, "%lu", &pages) != 1)
            pages = 0;
        std::fclose(statm);
    }
    if (pages == 0)
        throw Error("LADDER_WORKER_RLIMIT_AS: cannot read this process's size (/proc/self/statm)");
    const std::uint64_t mapped = pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    rlimit limit {};
    ::getrlimit(RLIMIT_AS, &limit);
    limit.rlim_cur = mapped + headroom;
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_cur > limit.rlim_max)
        limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_AS, &limit) != 0)
        throw Error(std::string("LADDER_WORKER_RLIMIT_AS: setrlimit failed: ") + std::strerror(errno));
    return "LADDER_WORKER_RLIMIT_AS: address space capped at " + std::to_string(limit.rlim_cur >> 20)
        + " MiB (" + std::to_string(mapped >> 20) + " MiB mapped + " + std::to_string(headroom >> 20)
        + " MiB)";
}

// The spec of a run as its worker reads it (a data-parallel run's launcher and ranks other than 0 read it
// without adopting the run).
RunSpec specOfRun(const std::string& storePath, std::int64_t runId)
{
    ResultsStore store;
    std::string error;
    if (!store.open(storePath, ResultsStore::OpenMode::Existing, &error))
        throw Error(error);
    RunRecord run;
    if (!store.getRun(runId, &run, &error))
        throw Error(error);
    const auto label = "run " + std::to_string(runId) + " spec";
    return RunSpec::fromJson(parseJson(run.specJson, label), label);
}

int runWorker(const std::string& storePath, std::int64_t runId, int processes)
{
    dieWithSupervisor();
    targetNanInjection(runId);
    // A run of several processes (training.processes, the form's "GPUs per run", docs/SCALING.md): this
    // worker becomes their launcher, and rank 0 (with this process's stdin and stdout: the supervisor's
    // cancel line and the events) is the worker that records the run.
    const auto env = distributedEnvFromProcess();
    std::shared_ptr<DistributedGroup> group;
    // Decided from the supervisor's --nproc, before this process opens the store. (Reading the spec here
    // through a store opened and closed before the worker's own connection made the window's and the
    // worker's later writes fail with "database disk image is malformed" in test_bad_inputs_gui; why is not
    // understood yet: docs/SCALING.md, "Open questions".)
    if (!env && processes > 1) {
        LocalLaunch launch;
        launch.processes = processes;
        launch.arguments = programArguments();
        return launchLocalRanks(launch);
    }
    if (env && env->rank > 0) {
        std::signal(SIGTERM, onStopSignal); // the launcher passes the supervisor's SIGTERM on: a cancel
        std::signal(SIGINT, onStopSignal);
        const auto spec = specOfRun(storePath, runId);
        return trainFollowerRank(
            spec, joinGroupFor(spec, *env, collectiveTimeout(0)), [] { return g_stop != 0; });
    }
    // The events get stdout to themselves: anything else that prints to stdout (a library) goes to stderr.
    const int eventsFd = ::dup(STDOUT_FILENO);
    if (eventsFd < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
        throw Error("cannot set up the event stream");
    ::fcntl(eventsFd, F_SETFD, FD_CLOEXEC);
    std::FILE* events = ::fdopen(eventsFd, "w");
    if (!events)
        throw Error("cannot open the event stream");
    std::signal(SIGPIPE, SIG_IGN); // a closed event pipe must not end the run: the store has it
    std::signal(SIGTERM, onStopSignal);
    std::signal(SIGINT, onStopSignal);

    // Shared with the stdin thread, which outlives this function (detached): never a dangling reference.
    const auto writerOwner = std::make_shared<WorkerEvents>(events);
    WorkerEvents& writer = *writerOwner;
    // A "cancel" line on stdin asks the run to stop between steps. End of input alone does not (the
    // supervisor's death kills this process: dieWithSupervisor).
    std::thread([writerOwner] {
        std::string line;
        while (std::getline(std::cin, line))
            if (line == "cancel")
                writerOwner->requestCancel();
    }).detach();

    ResultsStore store;
    std::string error;
    if (!store.open(storePath, &error))
        throw Error(error);
    RunRecord run;
    if (!store.getRun(runId, &run, &error))
        throw Error(error);
    if (run.status != RunState::Running)
        throw Error("run " + std::to_string(runId) + " is " + toString(run.status)
            + "; a worker trains a run its supervisor has set running");
    // The run is this process's now: if it dies, the next open of the store marks the run interrupted
    // even while the supervisor lives on (and the supervisor marks it failed with the signal).
    if (!store.adoptRun(runId, &error))
        throw Error(error);
    if (const char* fault = std::getenv("LADDER_WORKER_FAULT"); fault && *fault) {
        int signal = 0;
        std::int64_t step = 0;
        if (parseFaultInjection(fault, runId, &signal, &step))
            writer.setFault(signal, step);
    }
    if (const std::string limited = limitAddressSpace(runId); !limited.empty()) {
        store.addLog(runId, LogLevel::Warning, limited);
        writer.onLog("warning", limited);
    }
    RunSpec spec;
    try {
        spec = RunSpec::fromJson(parseJson(run.specJson, "run " + std::to_string(runId) + " spec"),
            "run " + std::to_string(runId) + " spec");
    } catch (const std::exception& e) {
        store.setStatus(runId, RunState::Failed, e.what());
        writer.writeEnd(RunState::Failed, e.what());
        return 1;
    }
    if (env) {
        reportRunToLauncher(storePath, runId);
        try {
            group = joinGroupFor(spec, *env, collectiveTimeout(0));
        } catch (const std::exception& e) {
            store.setStatus(runId, RunState::Failed, e.what());
            writer.writeEnd(RunState::Failed, e.what());
            return 1;
        }
    }
    const auto summary = trainRecordedRun(spec, store, runId, writer, group);
    if (group)
        group->shutdown();
    const RunState state = summary.status == RunOutcome::Finished ? RunState::Finished
        : summary.status == RunOutcome::Cancelled                 ? RunState::Cancelled
                                                                  : RunState::Failed;
    writer.writeEnd(state, summary.message);
    return state == RunState::Finished ? 0 : state == RunState::Cancelled ? 130 : 1;
}

} // namespace

std::string selfExecutable()
{
    std::error_code ec;
    const auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec)
        throw Error("cannot find this program's path (/proc/self/exe): " + ec.message());
    return path.string();
}

RunWorkerResult superviseJob(const std::string& program, const std::string& storePath, std::int64_t runId,
    const WorkerJob& job, TrainerObserver& observer)
{
    RunWorkerLaunch launch;
    launch.program = program;
    launch.storePath = storePath;
    launch.runId = runId;
    launch.processes = static_cast<int>(job.spec.training.processes);
    return superviseRunWorker(launch, observer);
}

void runInWorkers(const std::vector<WorkerJob>& jobs, const std::string& storePath, int parallel,
    const std::function<std::unique_ptr<TrainerObserver>(const WorkerJob&)>& makeObserver,
    const std::function<bool(const WorkerJob&, std::int64_t runId, const RunWorkerResult&)>& onEnd,
    const std::function<bool()>& stopLaunching,
    const std::function<void(const WorkerJob&, const RunRecord& holder)>& onHeld)
{
    const std::string program = selfExecutable();
    std::mutex outputMutex;
    std::atomic<std::size_t> next { 0 };
    std::string firstError;
    auto worker = [&] {
        ResultsStore store;
        std::string error;
        if (!store.open(storePath, &error)) {
            std::lock_guard lock(outputMutex);
            if (firstError.empty())
                firstError = error;
            return;
        }
        for (std::size_t i; (i = next.fetch_add(1)) < jobs.size();) {
            if (stopLaunching && stopLaunching())
                return;
            const auto& job = jobs[i];
            if (!job.launch) // the caller skipped it (e.g. it finished before)
                continue;
            std::int64_t runId = -1;
            std::optional<RunRecord> holder;
            const NewRun run = newRunFor(job.spec, RunState::Running);
            // A claim is taken as the run starts, not for the whole grid up front: writers sharing the
            // store then share the grid's runs.
            if (!(job.claim ? store.claimSpec(run, &runId, &holder, &error)
                            : store.createRun(run, &runId, &error))) {
                std::lock_guard lock(outputMutex);
                if (firstError.empty())
                    firstError = error;
                return;
            }
            if (holder) {
                std::lock_guard lock(outputMutex);
                if (onHeld)
                    onHeld(job, *holder);
                continue;
            }
            LockedObserver observer(makeObserver(job), outputMutex);
            const auto result = superviseJob(program, storePath, runId, job, observer);
            std::lock_guard lock(outputMutex);
            if (!onEnd(job, runId, result))
                return;
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < std::max(1, parallel); ++t)
        threads.emplace_back(worker);
    for (auto& t : threads)
        t.join();
    if (!firstError.empty())
        throw Error(firstError);
}

void registerWorkerCommands(CLI::App& app)
{
    auto store = std::make_shared<std::string>();
    auto id = std::make_shared<std::int64_t>(0);
    auto* cmd = app.add_subcommand("worker",
        "Train one running run of a store and report its events as JSON lines on stdout (for a supervisor)");
    cmd->group(""); // hidden
    cmd->add_option("--store", *store, "results store")->required();
    cmd->add_option("--run", *id, "run id (status running)")->required();
    auto nproc = std::make_shared<int>(1);
    cmd->add_option("--nproc", *nproc, "the run's data-parallel ranks: this worker starts them")
        ->check(CLI::Range(1, 1024));
    cmd->callback(
        [store, id, nproc] { runGuarded("worker", [&] { return runWorker(*store, *id, *nproc); }); });
}

} // namespace ladder::cli
