#pragma once

#include <string>

namespace ladder {

// Where the built-in demo lives (built by `ladder demo`): the backbone folder and the tasks folder.
std::string demoBackboneDirectory();
std::string demoTasksDirectory();

} // namespace ladder
