#include "train/DemoPaths.h"

#include "data/DemoTasks.h"

namespace ladder {

// Both follow demoCacheDir() (LADDER_DEMO_DIR, else the XDG cache), so `ladder demo`, the trainer and the
// workbench always agree on where the demo is.
std::string demoBackboneDirectory()
{
    return demofs::join(demoCacheDir(), "backbone");
}

std::string demoTasksDirectory()
{
    return demofs::join(demoCacheDir(), "tasks");
}

} // namespace ladder
