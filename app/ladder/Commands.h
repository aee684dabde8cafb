#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace ladder::cli {

// Adds every subcommand to `app`. Each command's callback runs the work and records the exit code.
void registerCommands(CLI::App& app);
int exitCode();

// Runs `body`, turning any exception into one line on stderr ("ladder <command>: <what>") and exit 1.
void runGuarded(const std::string& command, const std::function<int()>& body);

} // namespace ladder::cli
