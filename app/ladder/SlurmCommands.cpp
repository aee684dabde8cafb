// ladder sweep --emit slurm | --index: a sweep as a Slurm job array, one array task per run, each task
// training its run into a store of its own; `ladder runs import` (RunsCommands.cpp) merges the stores.
#include "SlurmCommands.h"

#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "JsonOutput.h"
#include "train/SlurmExport.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder::cli {
namespace {

// The flags that only mean something with --emit slurm.
constexpr const char* kEmitFlags[]
    = { "--out", "--partition", "--gpus-per-run", "--cpus-per-run", "--time", "--max-parallel", "--ladder" };

// Slurm's default MaxArraySize (slurm.conf): array indices run from 0 to 1000.
constexpr std::size_t kDefaultMaxArraySize = 1001;

} // namespace

void SlurmSweepFlags::addTo(CLI::App* sweep)
{
    m_sweep = sweep;
    sweep
        ->add_option("--emit", emit,
            "write the sweep as a job array for a cluster instead of running it: slurm (with --out DIR)")
        ->check(CLI::IsMember({ "slurm" }))
        ->option_text("slurm");
    sweep
        ->add_option("--out", out,
            "with --emit: the folder for sweep.sbatch, the sweep's copy and the runs' stores (on a file "
            "system the compute nodes share)")
        ->option_text("DIR");
    sweep->add_option("--partition", partition, "with --emit: the Slurm partition (default: the cluster's)")
        ->option_text("P");
    sweep->add_option("--gpus-per-run", gpusPerRun, "with --emit: GPUs per run (--gres=gpu:G; default 0)")
        ->option_text("G");
    sweep
        ->add_option("--cpus-per-run", cpusPerRun,
            "with --emit: CPUs per run (--cpus-per-task, also OMP_NUM_THREADS; default: the cluster's)")
        ->option_text("C");
    sweep->add_option("--time", time, "with --emit: each run's time limit, HH:MM:SS or D-HH:MM:SS")
        ->option_text("HH:MM:SS");
    sweep
        ->add_option("--max-parallel", maxParallel,
            "with --emit: at most K runs at once (the array's %K; default: no limit)")
        ->option_text("K");
    sweep
        ->add_option("--ladder", ladder,
            "with --emit: the ladder program the tasks run (default: this one, "
                + std::string("/proc/self/exe)"))
        ->option_text("PATH");
    sweep
        ->add_option("--index", runIndex,
            "run only run I of the sweep (0-based, in the sweep's order): what each array task runs")
        ->option_text("I");
}

bool SlurmSweepFlags::given(const char* option) const
{
    return m_sweep && m_sweep->get_option(option)->count() > 0;
}

bool SlurmSweepFlags::emitting() const
{
    return given("--emit");
}

long long SlurmSweepFlags::index() const
{
    for (const char* flag : kEmitFlags)
        if (given(flag))
            throw UsageError(std::string(flag) + ": only with --emit slurm");
    if (!given("--index"))
        return -1;
    if (runIndex < 0)
        throw UsageError("--index: expected a run index of 0 or more, got " + std::to_string(runIndex));
    return runIndex;
}

int emitSlurmSweep(const std::string& config, const SlurmSweepFlags& flags, bool asJson)
{
    for (const char* flag : { "--store", "--parallel", "--index" })
        if (flags.given(flag))
            throw UsageError(std::string(flag)
                + ": not with --emit slurm (each array task runs one run, --index <task>, into "
                  "DIR/run-<task>.sqlite)");
    if (flags.out.empty())
        throw UsageError("--emit slurm: expected --out DIR, the folder to write the job into");
    if (flags.given("--max-parallel") && flags.maxParallel < 1)
        throw UsageError(
            "--max-parallel: expected 1 or more runs at once, got " + std::to_string(flags.maxParallel));
    if (flags.given("--cpus-per-run") && flags.cpusPerRun < 1)
        throw UsageError(
            "--cpus-per-run: expected 1 or more CPUs per run, got " + std::to_string(flags.cpusPerRun));
    SlurmOptions options;
    options.partition = flags.partition;
    options.gpusPerRun = flags.gpusPerRun;
    options.cpusPerRun = flags.cpusPerRun;
    options.time = flags.time;
    options.maxParallel = flags.maxParallel;
    std::error_code ec;
    options.ladderPath = flags.ladder.empty()
        ? selfExecutable()
        : std::filesystem::absolute(flags.ladder, ec).lexically_normal().string();
    options.workingDir = std::filesystem::current_path(ec).string();
    try {
        validateSlurmOptions(options); // the flags' own mistakes exit 2
    } catch (const Error& e) {
        throw UsageError(e.what());
    }
    const auto sweep = readJsonFile(config, "a sweep JSON file");
    const auto written = writeSlurmSweep(sweep, config, flags.out, options);
    if (asJson) {
        printJson({ { "runs", written.runs }, { "script", written.script }, { "config", written.config },
            { "logs", written.logsDir }, { "submit", written.submitCommand },
            { "import", written.importCommand } });
        return kExitDone;
    }
    std::cout << "ladder sweep: wrote a Slurm job array of " << written.runs
              << (written.runs == 1 ? " run" : " runs");
    if (options.maxParallel > 0)
        std::cout << " (at most " << options.maxParallel << " at once)";
    std::cout << " to " << written.outDir << ":\n"
              << "  " << written.script << "   the job script\n"
              << "  " << written.config << "     the sweep's copy its tasks read\n"
              << "  " << written.logsDir << "/          each task's output, run-<index>.out\n"
              << "Submit it (" << written.outDir << " must be on a file system the compute nodes share):\n"
              << "  " << written.submitCommand << "\n"
              << "When the job has ended, merge the runs' stores into your results store:\n"
              << "  " << written.importCommand << "   [--store MAIN]\n";
    if (written.runs > kDefaultMaxArraySize)
        std::cout << "note: " << written.runs << " array tasks are more than Slurm's default MaxArraySize ("
                  << kDefaultMaxArraySize
                  << "); ask `scontrol show config | grep MaxArraySize` before submitting\n";
    return kExitDone;
}

} // namespace ladder::cli
