#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ladder {

// A sweep as a Slurm job array (`ladder sweep --emit slurm`, the workbench's Tools > Sweeps > Export for
// Slurm...): one array task per run of the sweep, in expandSweep()'s order, each running
//   ladder sweep --config DIR/sweep.json --index $SLURM_ARRAY_TASK_ID --store DIR/run-<index>.sqlite
// so every task writes a store of its own (SQLite over a cluster's shared file system is no place for
// concurrent writers); `ladder runs import DIR/run-*.sqlite` then merges them (ResultsStore::importStore).

// The sbatch options. Empty / 0 fields are left out of the script (the cluster's defaults apply).
struct SlurmOptions {
    std::string partition; // --partition
    int gpusPerRun = 0; // --gres=gpu:G per task (0: none)
    int cpusPerRun = 0; // --cpus-per-task (0: the cluster's default); also OMP_NUM_THREADS
    std::string time; // --time, HH:MM:SS or D-HH:MM:SS
    int maxParallel = 0; // the array's %K: at most K tasks at once (0: no limit)
    std::string jobName = "ladder-sweep";
    std::string ladderPath; // the `ladder` the tasks run: an absolute path (required)
    std::string workingDir; // the tasks' working directory (#SBATCH --chdir), where a spec's relative
                            // paths resolve: an absolute path (required)
};

// Throws Error naming the flag (--time, --max-parallel, --partition, --gpus-per-run, --cpus-per-run,
// --ladder) and what it expects, for a value sbatch would refuse or misread.
void validateSlurmOptions(const SlurmOptions& options);

// The job script, for `runs` runs whose files are in the absolute folder `outDir`.
std::string slurmScript(std::size_t runs, const std::string& outDir, const SlurmOptions& options);

// What writeSlurmSweep() wrote, and what to run next.
struct SlurmExport {
    std::size_t runs = 0;
    std::string outDir; // absolute
    std::string script; // outDir/sweep.sbatch
    std::string config; // outDir/sweep.json
    std::string logsDir; // outDir/logs: each task's stdout and stderr, run-<index>.out
    std::string submitCommand; // "sbatch <script>"
    std::string importCommand; // "ladder runs import <outDir>/run-*.sqlite"
};

// Checks the options and the sweep (every spec must read: RunSpec::fromJson), then writes into `outDir`
// (created when missing; made absolute) the sweep's copy, sweep.json, so that the job does not depend on
// the file it came from, the script sweep.sbatch and the folder logs/. Refuses a folder that holds a
// sweep's stores already (run-*.sqlite: `ladder runs import` would mix two sweeps). `source` names the
// sweep in messages. Throws Error.
SlurmExport writeSlurmSweep(const nlohmann::json& sweep, const std::string& source, const std::string& outDir,
    const SlurmOptions& options);

// `ladder sweep --index I`: the expanded sweep's run I alone (0-based), or all of them when `index` is
// negative. Throws Error "SOURCE: --index I is out of range: the sweep has N runs (0 to N-1)".
std::vector<nlohmann::json> selectSweepRuns(
    std::vector<nlohmann::json> runs, long long index, const std::string& source);

} // namespace ladder
