#pragma once

#include "data/Task.h"
#include "train/RunSpec.h"

namespace ladder {

// The splits of a run spec's task: GLUE (the paper's splits), a built-in demo task (a folder with
// task.json and JSONL splits) or generic JSONL/CSV/TSV files. Errors name the file and field.
TaskSplits loadTaskSplits(const TaskSpec& task);

} // namespace ladder
