#pragma once

// `ladder train --nproc N` (and a queued run whose spec asks for several processes): this process starts N
// ranks of the same command on this machine, as `torchrun --nproc-per-node N --no-python` would, and
// supervises them (docs/SCALING.md).
#include <chrono>
#include <string>
#include <vector>

namespace ladder::cli {

// The command line this process was started with (main() keeps it), for relaunching it as ranks.
void setProgramArguments(int argc, char** argv);
const std::vector<std::string>& programArguments();

struct LocalLaunch {
    int processes = 2;
    std::vector<std::string> arguments; // argv of each rank; [0] is replaced by this program's path
    // After a rank has failed, the others get this long to notice (a peer's closed connection reaches them
    // at once; a rank that never joined waits for the TCPStore) before SIGTERM, then SIGKILL 10 s later.
    std::chrono::seconds grace { 30 };
};

// Starts the ranks with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, a free
// MASTER_PORT, LADDER_LAUNCHER) and LADDER_SUPERVISOR_PID (this process). Rank 0 keeps this process's stdin
// and stdout (a supervisor's cancel line and events, `--json`); the other ranks read /dev/null and write
// stdout to stderr. SIGINT and SIGTERM are passed on to every rank; a rank dies with this process
// (PR_SET_PDEATHSIG). Returns the exit code: 0 when every rank ended 0, else rank 0's when it failed, else
// the first failing rank's.
// A rank 0 that dies without recording its run's end (a signal, the kernel's OOM killer) would leave the
// run "running": rank 0 names its store and run in the file LADDER_LAUNCH_REPORT names
// (reportRunToLauncher), and the launcher then marks that run failed with how rank 0 ended.
int launchLocalRanks(const LocalLaunch& launch);

// Rank 0 of ranks started by launchLocalRanks: tells the launcher which run it records (no-op otherwise).
void reportRunToLauncher(const std::string& storePath, std::int64_t runId);

} // namespace ladder::cli
