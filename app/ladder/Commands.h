#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/StoreTypes.h"
#include "train/RunSpec.h"

namespace CLI {
class App;
}

namespace ladder {
class TrainerObserver;
struct RunWorkerResult;
} // namespace ladder

namespace ladder::cli {

// The exit status of every command (also in `ladder --help` and README's CLI section).
enum ExitCode : int {
    kExitDone = 0, // done
    kExitError = 1, // an error: a file, a field, a store, a failed run; one line on stderr
    kExitUsage = 2, // the command line: an unknown, missing or malformed option or argument
    kExitCancelled = 130, // cancelled by Ctrl+C (SIGINT), 128 + 2 as shells report a signal
};

// The table above as `ladder --help` prints it (the footer of every command's help).
std::string exitCodeTable();

// A command-line mistake found by a command itself (two flags that exclude each other, a flag value
// the parser cannot check): runGuarded exits 2, as for the parser's own errors.
class UsageError : public std::runtime_error {
public:
    explicit UsageError(const std::string& message)
        : std::runtime_error(message)
    {
    }
};

// Thrown when Ctrl+C was pressed (Interrupt.h): runGuarded exits 130.
class Cancelled : public std::runtime_error {
public:
    Cancelled()
        : std::runtime_error("cancelled")
    {
    }
};

// Adds every subcommand to `app`. Each command's callback runs the work and records the exit code.
void registerCommands(CLI::App& app);
int exitCode();

// Runs `body` and records its return value as the exit code. An exception becomes one line on stderr
// ("ladder <command>: <what>") and exit 1; a UsageError exits 2, Cancelled 130.
void runGuarded(const std::string& command, const std::function<int()>& body);

// Commands that only read a results store (runs, eval) never create one: throws "no results store at
// PATH" (exit 1) when `path` does not exist. An empty path means ResultsStore::defaultPath(). Returns the
// path.
std::string requireExistingStore(const std::string& path);

// Bytes as megabytes (10^6) with one decimal, as every text table of the CLI shows memory: "308.9".
std::string mb(double bytes);

// This program's own path (/proc/self/exe): the `ladder worker` a sweep starts.
std::string selfExecutable();

// One run of a sweep for runInWorkers(): launch false skips it (finished before). claim true creates its
// run only when no other writer holds the spec (ResultsStore::claimSpec): `ladder sweep`'s runs.
struct WorkerJob {
    std::size_t index = 0;
    RunSpec spec;
    std::string label;
    bool launch = true;
    bool claim = false;
};

// Starts `program`'s worker for `job`'s run `runId` (its spec's processes as the worker's ranks) and
// supervises it with `observer` (superviseRunWorker). What runInWorkers and `sweep --parallel auto` share.
RunWorkerResult superviseJob(const std::string& program, const std::string& storePath, std::int64_t runId,
    const WorkerJob& job, TrainerObserver& observer);

// Trains each job in a process of its own (`ladder worker`), `parallel` at a time: creates the run
// (running) in the store, supervises its worker with the observer makeObserver returns (its calls are
// serialised across the runs) and calls onEnd (serialised too) when it has ended; onEnd returning false,
// or stopLaunching returning true, starts no further run. A job with claim true whose spec another writer
// holds is not trained: onHeld (serialised) gets the run that holds it. Throws Error when the store cannot
// be used.
void runInWorkers(const std::vector<WorkerJob>& jobs, const std::string& storePath, int parallel,
    const std::function<std::unique_ptr<TrainerObserver>(const WorkerJob&)>& makeObserver,
    const std::function<bool(const WorkerJob&, std::int64_t runId, const RunWorkerResult&)>& onEnd,
    const std::function<bool()>& stopLaunching = {},
    const std::function<void(const WorkerJob&, const RunRecord& holder)>& onHeld = {});

} // namespace ladder::cli
