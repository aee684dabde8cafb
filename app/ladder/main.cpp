// `ladder`: the headless command-line tool. Links ladder_core only.
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "Commands.h"
#include "device/Devices.h"
#include "ladder/Version.h"
#include "train/MemoryMeter.h"

int main(int argc, char** argv)
{
    // Before any tensor exists, so that every CPU allocation is counted (docs/PERFORMANCE.md).
    ladder::installCpuMemoryTracker();
    CLI::App app{"ladder - Ladder Side-Tuning workbench, command line"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("ladder ") + ladder::kVersion + " (LibTorch " +
                                          ladder::torchVersion() + ", CUDA " + ladder::cudaRuntimeVersion() + ")");
    ladder::cli::registerCommands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return ladder::cli::exitCode();
}
