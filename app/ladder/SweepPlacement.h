#pragma once

// `ladder sweep --parallel auto`: the runs of a sweep start while they fit their devices by their memory
// estimates (core/train/DevicePlacement.h), each in a process of its own as runInWorkers() starts them.

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "Commands.h"

namespace ladder::cli {

// runInWorkers() with the runs placed by their estimates instead of `parallel` at a time: each launched
// job's spec is estimated first (estimateRunSpec), then the jobs start in order while they fit what the
// runs already started leave of their device's budget (measured, or deviceBudget: "cpu=2GiB,cuda:0=20GiB"
// as parseDeviceBudgets reads it; empty: $LADDER_DEVICE_BUDGET, else none). A device's budget is measured
// again whenever none of this sweep's runs is on it. The sweep takes the device lease of each device it
// places runs on (ResultsStore::acquireDeviceLease), so a window's queue and this sweep never place runs
// on one device at once; a device leased elsewhere waits. Prints each job's estimate, where it starts and
// why it waits (once per reason) to `out`, numbering runs as the sweep's entries ("[3/6]" is run 3). A
// job that can never fit is not trained: onNever (serialised) gets it with the reason. The callbacks are
// runInWorkers()'s.
void runPlacedInWorkers(const std::vector<WorkerJob>& jobs, const std::string& storePath,
    const std::string& deviceBudget, std::ostream& out,
    const std::function<std::unique_ptr<TrainerObserver>(const WorkerJob&)>& makeObserver,
    const std::function<bool(const WorkerJob&, std::int64_t runId, const RunWorkerResult&)>& onEnd,
    const std::function<bool()>& stopLaunching,
    const std::function<void(const WorkerJob&, const RunRecord& holder)>& onHeld,
    const std::function<void(const WorkerJob&, const std::string& reason)>& onNever);

} // namespace ladder::cli
