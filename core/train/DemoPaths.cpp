#include "train/DemoPaths.h"

#include <cstdlib>
#include <filesystem>

namespace ladder {
namespace {

// $XDG_CACHE_HOME/ladderbench/demo-v1, else ~/.cache/ladderbench/demo-v1. The version changes when the
// demo recipe changes, so an old cache is never mistaken for a new one.
std::filesystem::path demoRoot()
{
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    std::filesystem::path base;
    if (xdg && *xdg)
        base = xdg;
    else if (const char* home = std::getenv("HOME"); home && *home)
        base = std::filesystem::path(home) / ".cache";
    else
        base = std::filesystem::temp_directory_path();
    return base / "ladderbench" / "demo-v1";
}

} // namespace

std::string demoBackboneDirectory()
{
    return (demoRoot() / "backbone").string();
}

std::string demoTasksDirectory()
{
    return (demoRoot() / "tasks").string();
}

} // namespace ladder
