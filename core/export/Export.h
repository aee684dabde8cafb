#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "export/ExportFolder.h"

namespace ladder {

class ResultsStore;

// The formats of `ladder export --format` (docs/EXPORT.md): "hf", "peft", "ladder".
const std::vector<std::string>& exportFormats();

// `ladder export` and the workbench's Export...: finished run `runId` of `store` as `format` at `outDir`.
// Refuses, before loading anything, a format the run's method has no form in (checkHfExportable,
// checkPeftExportable: the error names what to use instead) and an `outDir` that exists and is not an empty
// folder. hf and peft load the run on the CPU (loadFinishedRun: finished, checkpoint verified), write into a
// fresh folder beside `outDir` ("<outDir>.partial-<pid>-<n>") and rename it to `outDir` at the end, so a
// failure leaves nothing under `outDir` (the partial folder is removed); ladder is writeLadderBundle's, which
// does the same. Returns what was written. Throws Error naming the run, file or folder.
ExportedFolder exportRun(
    ResultsStore& store, std::int64_t runId, const std::string& format, const std::string& outDir);

} // namespace ladder
