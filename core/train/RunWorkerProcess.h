#pragma once

// Every run in its own process. The window's queue and `ladder sweep --parallel N` start `ladder worker
// --store PATH --run ID` for a run that is already "running" in the store, and supervise it here:
//
//   supervisor (a thread of the window, or of the sweep)          worker process (`ladder worker`)
//     superviseRunWorker()  --- stdin: "cancel\n" ------------>     RunEventWriter::cancelRequested()
//                           <-- stdout: one JSON event a line ---   RunEventWriter (a TrainerObserver)
//                           <-- stderr: free text (kept: last lines)
//
// The worker adopts the run (it becomes the run's owner process in the store), trains it with
// trainRecordedRun() (the path `ladder train` takes) and records everything in the store itself; the
// events only feed the live display. Cancel asks politely (stdin), then SIGTERM (the worker treats it as
// a cancel too), then SIGKILL. A worker that dies without recording its end (a signal, an abort, the
// kernel's out-of-memory killer) leaves its run marked here: failed, with the signal and its last lines,
// or cancelled when the supervisor had to kill it after a cancel. Process-wide state (LibTorch's seed and
// thread count, the CPU memory meter, a CUDA context) is then per run. Protocol: docs/WORKBENCH.md.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "store/StoreTypes.h"
#include "train/Trainer.h"

namespace ladder {

// ---- The worker's side --------------------------------------------------------------------------------

// Writes the trainer's events as JSON lines to `out` (flushed per line) and answers cancelRequested()
// from requestCancel() (a "cancel" line on stdin, SIGTERM or SIGINT: see runWorkerMain in the CLI).
// Events: {"event":"step", "step", "total_steps", "epoch", "loss", "learning_rate", "allocated",
// "peak_allocated", "tokens_per_second", "elapsed_seconds"}, {"event":"init", "what", "done", "total"},
// {"event":"eval", "step", "epoch", "split", "main_name", "main", "values", "examples", "invalid"},
// {"event":"log", "level", "message"}, {"event":"end", "status", "message"}.
class RunEventWriter : public TrainerObserver {
public:
    explicit RunEventWriter(std::FILE* out);

    void onStep(const TrainStep& step) override;
    void onEval(const TrainEval& eval) override;
    void onLog(const std::string& level, const std::string& message) override;
    void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) override;
    bool cancelRequested() override { return m_cancel.load(); }

    void writeEnd(RunState state, const std::string& message);
    void requestCancel() { m_cancel.store(true); }

    // A documented fault injection for tests (docs/WORKBENCH.md): LADDER_WORKER_FAULT="SIGNAL step=N
    // [run=ID]" raises SIGNAL (e.g. SIGSEGV) in the worker of run ID (any run when absent) when step N
    // begins to be reported.
    void setFault(int signal, std::int64_t step);

private:
    void write(const std::string& line);

    std::FILE* m_out;
    std::mutex m_mutex;
    std::atomic<bool> m_cancel { false };
    int m_faultSignal = 0;
    std::int64_t m_faultStep = 0;
};

// Parses LADDER_WORKER_FAULT for run `runId`: the signal and step, or false when no fault applies.
// Throws Error for a value that does not parse.
bool parseFaultInjection(const std::string& value, std::int64_t runId, int* signal, std::int64_t* step);

// LADDER_FAULT_INJECT="nan@N [run=ID]" as the trainer of run `runId` is to read it: a worker knows its run,
// so it keeps "nan@N" for run ID (or for every run when run= is absent) and gives "" (no fault) to the
// other runs. Anything else is returned unchanged: the trainer names the variable in its error.
std::string nanInjectionForRun(const std::string& value, std::int64_t runId);

// LADDER_WORKER_RLIMIT_AS="MiB [run=ID]" (docs/WORKBENCH.md): the worker of run ID (every worker when run=
// is absent) caps its address space (setrlimit RLIMIT_AS) at MiB above what it has mapped when the run
// starts, so that the run meets a real allocation failure. The headroom in bytes, or false when no limit
// applies to this run; throws Error for a value that does not parse.
bool parseAddressSpaceLimit(const std::string& value, std::int64_t runId, std::uint64_t* headroomBytes);

// The environment variable by which a supervisor tells its worker its pid (the worker dies with it).
constexpr const char* kSupervisorPidVariable = "LADDER_SUPERVISOR_PID";

// ---- The supervisor's side -----------------------------------------------------------------------------

struct RunWorkerLaunch {
    std::string program; // the `ladder` executable
    std::string storePath;
    std::int64_t runId = 0;
    std::vector<std::string> setEnv; // "NAME=value" for the worker's environment
    // A data-parallel run's ranks (its spec's training.processes): `ladder worker --nproc N` starts them
    // (docs/SCALING.md). The supervisor says so: the worker decides before it opens the store.
    int processes = 1;
    double politeSeconds = 30.0; // after a cancel, before SIGTERM
    double termSeconds = 10.0; // after SIGTERM, before SIGKILL
};

struct RunWorkerResult {
    RunState state = RunState::Failed; // as recorded in the store at the end
    std::string message; // the run's error message, or what went wrong supervising it
    std::string exit; // how the process ended ("exited with status 0", "killed by ...")
    std::vector<std::string> lastLines; // the worker's last stderr lines (at most kKeptLines)
    static constexpr std::size_t kKeptLines = 20;
};

// Starts the worker for a run that is "running" in the store, feeds its events to `observer` (on this
// thread), polls observer.cancelRequested() to cancel, waits for the process and makes sure the run
// ends in a final state in the store (retrying while the store is busy). Never throws.
RunWorkerResult superviseRunWorker(const RunWorkerLaunch& launch, TrainerObserver& observer);

// Parses one event line and forwards it to `observer`; an "end" event fills *endState/*endMessage.
// False for a line that is not an event (ignored by the supervisor).
bool dispatchRunEvent(
    const std::string& line, TrainerObserver& observer, RunState* endState, std::string* endMessage);

} // namespace ladder
