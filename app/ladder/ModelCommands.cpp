#include <CLI/CLI.hpp>

#include "Commands.h"

namespace ladder::cli {
void registerModelCommands(CLI::App& app) {}
} // namespace ladder::cli
