#pragma once

#include <string>

namespace ladder {

// Where the built-in demo lives (built by `ladder demo`): the T5 backbone folder, the decoder-only (Llama)
// backbone folder and the tasks folder.
std::string demoBackboneDirectory();
std::string demoLlamaBackboneDirectory();
std::string demoTasksDirectory();

// The names a run spec's "backbone" may give the built demo's backbones: "demo" (the T5) and "demo-llama"
// (the decoder, issue #21). Anything else is a folder.
inline constexpr const char* kDemoBackboneName = "demo";
inline constexpr const char* kDemoLlamaBackboneName = "demo-llama";
bool isDemoBackboneName(const std::string& backbone);
// The folder a spec's backbone names: the demo folders for the names above, else `backbone` itself.
std::string backboneFolderFor(const std::string& backbone);

} // namespace ladder
