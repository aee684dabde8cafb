#include "Commands.h"

#include <exception>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "store/ResultsStore.h"
#include "util/Error.h"
#include "util/Text.h"

namespace ladder::cli {
namespace {
int g_exitCode = kExitDone;
constexpr std::size_t kMaxErrorChars = 400;

void printError(const std::string& command, const std::exception& e)
{
    // One line of at most a few hundred characters, whatever the error quotes: c10::Error messages carry a
    // C++ backtrace after the first line, and a message may quote a value from a hostile file.
    std::string what = e.what();
    if (const auto nl = what.find('\n'); nl != std::string::npos)
        what.resize(nl);
    std::cerr << "ladder " << command << ": " << oneLine(what, kMaxErrorChars) << "\n";
}
} // namespace

// Defined in one file per command family.
void registerModelCommands(CLI::App& app);
void registerTokenizeCommands(CLI::App& app);
void registerMethodCommands(CLI::App& app);
void registerTrainCommands(CLI::App& app);
void registerRunsCommands(CLI::App& app);
void registerExportCommands(CLI::App& app);
void registerDemoCommands(CLI::App& app);
void registerEstimateCommands(CLI::App& app);
void registerWorkerCommands(CLI::App& app);
void registerPlanCommands(CLI::App& app);
void registerPredictCommands(CLI::App& app);

void registerCommands(CLI::App& app)
{
    registerModelCommands(app);
    registerTokenizeCommands(app);
    registerMethodCommands(app);
    registerTrainCommands(app);
    registerRunsCommands(app);
    registerExportCommands(app);
    registerDemoCommands(app);
    registerEstimateCommands(app);
    registerPlanCommands(app);
    registerPredictCommands(app);
    registerWorkerCommands(app);
}

std::string exitCodeTable()
{
    return "Exit status (every command):\n"
           "  0    done\n"
           "  1    error: a file, field, store or run failed; one line on stderr names it\n"
           "  2    usage: an unknown, missing or malformed option or argument\n"
           "  130  cancelled by Ctrl+C (a second Ctrl+C ends at once)\n"
           "\n"
           "--json (every command that prints results): one JSON document on stdout, progress and\n"
           "messages on stderr; every key is always there, and a missing value is null.";
}

std::string mb(double bytes)
{
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << bytes / 1e6;
    return s.str();
}

int exitCode()
{
    return g_exitCode;
}

void runGuarded(const std::string& command, const std::function<int()>& body)
{
    try {
        g_exitCode = body();
    } catch (const UsageError& e) {
        printError(command, e);
        g_exitCode = kExitUsage;
    } catch (const Cancelled& e) {
        printError(command, e);
        g_exitCode = kExitCancelled;
    } catch (const std::exception& e) {
        printError(command, e);
        g_exitCode = kExitError;
    }
}

std::string requireExistingStore(const std::string& path)
{
    const auto p = path.empty() ? ResultsStore::defaultPath() : path;
    std::error_code ec;
    if (!std::filesystem::exists(p, ec) || std::filesystem::is_directory(p, ec))
        throw Error("no results store at " + p);
    return p;
}

} // namespace ladder::cli
