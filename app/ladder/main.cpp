// `ladder`: the headless command-line tool. Links ladder_core only.
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "Commands.h"
#include "DistributedLaunch.h"
#include "device/Devices.h"
#include "ladder/Version.h"
#include "train/MemoryMeter.h"

int main(int argc, char** argv)
{
    // Before any tensor exists, so that every CPU allocation is counted (docs/PERFORMANCE.md).
    ladder::installCpuMemoryTracker();
    ladder::cli::setProgramArguments(argc, argv); // `--nproc` starts its ranks with the same command line
    CLI::App app { "ladder - Ladder Side-Tuning workbench, command line" };
    // Before the subcommands are added: they inherit it, so every command's --help ends with the table.
    app.footer(ladder::cli::exitCodeTable());
    app.require_subcommand(1);
    app.set_version_flag("--version",
        std::string("ladder ") + ladder::kVersion + " (LibTorch " + ladder::torchVersion() + ", CUDA "
            + ladder::cudaRuntimeVersion() + ")");
    ladder::cli::registerCommands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0; every other parse error is a usage error, exit 2, with the parser's
        // message (CLI11's own codes, 105-109, would differ from one mistake to the next).
        return app.exit(e) == 0 ? ladder::cli::kExitDone : ladder::cli::kExitUsage;
    }
    return ladder::cli::exitCode();
}
