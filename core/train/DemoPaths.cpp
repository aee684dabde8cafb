#include "train/DemoPaths.h"

#include "data/DemoTasks.h"

namespace ladder {

// All follow demoCacheDir() (LADDER_DEMO_DIR, else the XDG cache), so `ladder demo`, the trainer and the
// workbench always agree on where the demo is.
std::string demoBackboneDirectory()
{
    return demofs::join(demoCacheDir(), "backbone");
}

std::string demoLlamaBackboneDirectory()
{
    return demofs::join(demoCacheDir(), "backbone-llama");
}

std::string demoTasksDirectory()
{
    return demofs::join(demoCacheDir(), "tasks");
}

bool isDemoBackboneName(const std::string& backbone)
{
    return backbone == kDemoBackboneName || backbone == kDemoLlamaBackboneName;
}

std::string backboneFolderFor(const std::string& backbone)
{
    if (backbone == kDemoBackboneName)
        return demoBackboneDirectory();
    if (backbone == kDemoLlamaBackboneName)
        return demoLlamaBackboneDirectory();
    return backbone;
}

} // namespace ladder
