#include "Commands.h"

#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

namespace ladder::cli {
namespace {
int g_exitCode = 0;
} // namespace

// Defined in one file per command family.
void registerModelCommands(CLI::App& app);
void registerTokenizeCommands(CLI::App& app);
void registerMethodCommands(CLI::App& app);
void registerTrainCommands(CLI::App& app);
void registerDemoCommands(CLI::App& app);
void registerEstimateCommands(CLI::App& app);

void registerCommands(CLI::App& app)
{
    registerModelCommands(app);
    registerTokenizeCommands(app);
    registerMethodCommands(app);
    registerTrainCommands(app);
    registerDemoCommands(app);
    registerEstimateCommands(app);
}

int exitCode()
{
    return g_exitCode;
}

void runGuarded(const std::string& command, const std::function<int()>& body)
{
    try {
        g_exitCode = body();
    } catch (const std::exception& e) {
        std::string what = e.what();
        // c10::Error messages carry a C++ backtrace after the first line; a user needs the first line.
        if (const auto nl = what.find('\n'); nl != std::string::npos)
            what.resize(nl);
        std::cerr << "ladder " << command << ": " << what << "\n";
        g_exitCode = 1;
    }
}

} // namespace ladder::cli
