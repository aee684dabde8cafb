#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "device/Devices.h"

namespace ladder {

// Several runs per device (issue 19, docs/WORKBENCH.md "Several runs per device"): where the queue (the
// window's RunQueueController, `ladder sweep --parallel auto`) starts its queued runs, by their memory
// estimates. No Qt, no device call, no allocation: the callers measure the devices and estimate the runs
// and this decides.
//
// - A run's charge on a device is its estimated training peak (train/MemoryEstimate.h), plus 10% for what
//   the estimate leaves out (the caching allocator's rounding and fragmentation, evaluation's generation),
//   plus the memory of a worker process itself: its CUDA context, cuBLAS/cuDNN and allocator pools on a
//   GPU (1 GiB), LibTorch's code and heap on the CPU (256 MiB).
// - A device's capacity is what the runs placed on it may use together: its free memory (CUDA) or
//   MemAvailable (CPU) when the placer had no run on it, less a safety margin (CUDA: 5% of the device,
//   at least 512 MiB; CPU: 10% of the RAM, at least 1 GiB), or a pretend budget given by the user, taken as
//   it is (no margin). Its limit is the most it could ever give: the whole device less the margin, or the
//   pretend budget.
// - First fit in queue order: each queued run goes to its spec's device ("cuda" is cuda:0) when its
//   charge fits what the runs already there leave of the capacity. It waits when it does not, and never
//   starts when its charge is above the device's limit.
// - Queue order is kept per device: a run that waits for memory holds its device's line, and a smaller
//   run queued after it for the same device waits behind it rather than overtaking it (a stream of small
//   runs would otherwise starve a big one forever; the price is memory left idle until enough runs end).
//   Runs for other devices go on. A run that can never start holds no line.
// - A run without an estimate (its backbone or task could not be read: the reason is kept) runs alone:
//   only on a device with no placed run, and nothing joins it. A run whose estimate is still being made
//   waits for it. A device without a budget takes one run at a time, as the queue did before, whatever the
//   estimates (the workbench's CPU unless a CPU budget is given, a GPU before the window has listed it).

// The memory a device gives to runs.
struct DeviceBudget {
    std::string device; // "cpu", "cuda:0", ...
    std::uint64_t totalBytes = 0; // the device's memory (RAM on the CPU)
    std::uint64_t capacityBytes = 0; // what the runs placed on it may use together
    std::uint64_t limitBytes = 0; // the most it could ever give
    bool pretend = false; // a pretend budget (capacity = limit = the budget)
};

// A run placed on a device (running).
struct PlacedRun {
    std::int64_t id = 0;
    std::string device;
    std::optional<std::uint64_t> chargeBytes; // nullopt: it has no estimate, and runs alone
};

// A queued run, in queue order.
struct QueuedRun {
    std::int64_t id = 0;
    std::string device; // its spec's device
    std::optional<std::uint64_t> chargeBytes; // runCharge() of its estimate
    bool estimatePending = false; // its estimate is being made
    std::string noEstimate; // why it has no estimate (with chargeBytes nullopt and not pending)
};

struct Placement {
    enum class Verdict { Start, Wait, Never };
    std::int64_t id = 0;
    Verdict verdict = Verdict::Wait;
    std::string device;
    // Wait and Never: why, e.g. "needs 3.1 GiB, cuda:0 has 1.2 GiB left of 76.0 GiB with runs 4 and 7 on
    // it"; Start: how it fits ("needs 3.1 GiB, cuda:0 had 7.9 GiB left of 76.0 GiB").
    std::string reason;
};

constexpr std::uint64_t kGiB = std::uint64_t(1) << 30;
constexpr std::uint64_t kMiB = std::uint64_t(1) << 20;
// A worker process's own memory, above its tensors (see the top of this file).
constexpr std::uint64_t kRunProcessBytesCuda = kGiB;
constexpr std::uint64_t kRunProcessBytesCpu = 256 * kMiB;
// The share of the estimate added for what it leaves out, in percent.
constexpr std::uint64_t kRunEstimateSlackPercent = 10;

// The environment variable of pretend budgets ("cpu=2GiB"): read by the window's queue, and by `ladder sweep
// --parallel auto` when --device-budget is not given.
constexpr const char* kDeviceBudgetVariable = "LADDER_DEVICE_BUDGET";

// "cuda" (LibTorch's current device, the first one) is "cuda:0"; other names are kept.
std::string placementDevice(const std::string& specDevice);
// The bytes a run with this estimated peak takes on `device` (placementDevice names).
std::uint64_t runCharge(std::uint64_t estimatedPeakBytes, const std::string& device);
// The safety margin kept free on a device of `totalBytes`.
std::uint64_t safetyMargin(const std::string& device, std::uint64_t totalBytes);

// Pretend budgets, as `--device-budget` and LADDER_DEVICE_BUDGET give them: "cpu=2GiB" or
// "cpu=600MiB,cuda:0=20GiB" (sizes as parseByteSize reads them). Throws ladder::Error naming `what` and
// the expected form for anything else (an unknown device name, a repeated device, a bad size).
std::map<std::string, std::uint64_t> parseDeviceBudgets(const std::string& text, const std::string& what);

// The budgets of measured devices: capacity = free - margin, limit = total - margin; a pretend budget
// replaces a device's figures (and adds a device the list lacks).
std::vector<DeviceBudget> deviceBudgets(
    const std::vector<ComputeDevice>& devices, const std::map<std::string, std::uint64_t>& pretend);
// One device's budget (deviceBudgets() of that device alone).
DeviceBudget deviceBudget(const ComputeDevice& device, const std::map<std::string, std::uint64_t>& pretend);

// Decides every queued run in queue order (one Placement each, in the same order). A run given Start is
// counted as placed for the runs after it, so several may start in one call.
std::vector<Placement> placeQueuedRuns(const std::vector<DeviceBudget>& devices,
    const std::vector<PlacedRun>& placed, const std::vector<QueuedRun>& queue);

} // namespace ladder
