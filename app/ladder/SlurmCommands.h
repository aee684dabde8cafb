#pragma once

#include <string>

namespace CLI {
class App;
}

namespace ladder::cli {

// `ladder sweep --emit slurm ... --out DIR` (a sweep as a Slurm job array, train/SlurmExport.h) and
// `ladder sweep --index I` (one run of the sweep: what each array task runs). The sweep subcommand
// (TrainCommands.cpp) registers these flags with addTo() and hands over to emitSlurmSweep() when --emit
// is given.
class SlurmSweepFlags {
public:
    // Adds --emit, --out, --partition, --gpus-per-run, --cpus-per-run, --time, --max-parallel, --ladder and
    // --index to the sweep subcommand.
    void addTo(CLI::App* sweep);
    // Whether --emit was given (then the sweep is written, not run).
    bool emitting() const;
    // --index, or -1 for every run. Throws UsageError for a negative index, and for the --emit flags
    // without --emit.
    long long index() const;
    // Whether `option` ("--store", "--emit", ...) of the sweep subcommand was given.
    bool given(const char* option) const;

    // The fields the options write into.
    std::string emit;
    std::string out;
    std::string partition;
    int gpusPerRun = 0;
    int cpusPerRun = 0;
    std::string time;
    int maxParallel = 0;
    std::string ladder;
    long long runIndex = -1;

private:
    CLI::App* m_sweep = nullptr;
};

// Writes DIR/sweep.sbatch and DIR/sweep.json and prints what to submit and import. Throws UsageError for
// a command line that mixes --emit with running flags (--store, --parallel, --index), Error otherwise.
int emitSlurmSweep(const std::string& config, const SlurmSweepFlags& flags, bool asJson);

} // namespace ladder::cli
