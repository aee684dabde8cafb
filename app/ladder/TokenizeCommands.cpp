#include <CLI/CLI.hpp>

#include "Commands.h"

namespace ladder::cli {
void registerTokenizeCommands(CLI::App& app) {}
} // namespace ladder::cli
