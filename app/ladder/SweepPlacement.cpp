// ladder sweep --parallel auto: runs placed on devices by their memory estimates (SweepPlacement.h).
#include "SweepPlacement.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <thread>

#include "LockedObserver.h"
#include "device/Devices.h"
#include "store/ResultsStore.h"
#include "train/DevicePlacement.h"
#include "train/MemoryPlan.h"
#include "train/RunEstimate.h"
#include "train/RunWorkerProcess.h"
#include "train/StoreRecorder.h"
#include "util/Error.h"
#include "util/Text.h"

namespace ladder::cli {
namespace {

// How often the sweep looks again when runs wait and none ends (a device's free memory, a lease held
// elsewhere), and how long its device leases last (renewed well within).
constexpr auto kRecheck = std::chrono::seconds(2);
constexpr int kLeaseSeconds = 60;
constexpr auto kLeaseRenew = std::chrono::seconds(20);

struct JobEstimate {
    std::optional<std::uint64_t> charge;
    std::string noEstimate;
};

JobEstimate estimateJob(const WorkerJob& job)
{
    JobEstimate e;
    const std::string device = placementDevice(job.spec.device);
    try {
        const std::uint64_t workspace
            = device.rfind("cuda", 0) == 0 && cuda::available() ? cuda::cublasWorkspaceBytes() : 0;
        e.charge = runCharge(estimateRunSpec(job.spec, workspace).total, device);
    } catch (const std::exception& ex) {
        e.noEstimate = oneLine(ex.what(), 200);
    }
    return e;
}

// The device as measured now (nullopt: not a device of this machine).
std::optional<ComputeDevice> measure(const std::string& device)
{
    if (device == "cpu")
        return cpuDevice();
    for (auto& d : cuda::devices())
        if (d.id == device)
            return d;
    return std::nullopt;
}

std::string budgetText(const DeviceBudget& b)
{
    if (b.pretend)
        return b.device + ": pretend budget " + formatBinaryBytes(b.capacityBytes);
    return b.device + ": " + formatBinaryBytes(b.capacityBytes) + " for runs ("
        + formatBinaryBytes(b.totalBytes) + " in all, less what other processes use and a "
        + formatBinaryBytes(safetyMargin(b.device, b.totalBytes)) + " margin)";
}

} // namespace

void runPlacedInWorkers(const std::vector<WorkerJob>& jobs, const std::string& storePath,
    const std::string& deviceBudget, std::ostream& out,
    const std::function<std::unique_ptr<TrainerObserver>(const WorkerJob&)>& makeObserver,
    const std::function<bool(const WorkerJob&, std::int64_t runId, const RunWorkerResult&)>& onEnd,
    const std::function<bool()>& stopLaunching,
    const std::function<void(const WorkerJob&, const RunRecord& holder)>& onHeld,
    const std::function<void(const WorkerJob&, const std::string& reason)>& onNever)
{
    std::map<std::string, std::uint64_t> pretend;
    if (!deviceBudget.empty()) {
        pretend = parseDeviceBudgets(deviceBudget, "--device-budget");
    } else if (const char* env = std::getenv(kDeviceBudgetVariable); env && *env) {
        pretend = parseDeviceBudgets(env, kDeviceBudgetVariable);
    }
    const std::string program = selfExecutable();
    ResultsStore store;
    std::string error;
    if (!store.open(storePath, &error))
        throw Error(error);
    const std::string leaseOwner = ResultsStore::newLeaseOwner();

    // Entries are numbered as the sweep numbers them: job.index + 1.
    std::vector<std::size_t> pending;
    std::map<std::size_t, JobEstimate> estimates;
    std::map<std::string, JobEstimate> byShape;
    for (const auto& job : jobs) {
        if (!job.launch)
            continue;
        if (stopLaunching && stopLaunching())
            break;
        pending.push_back(job.index);
        // The estimate does not depend on the run's seed (the task's split has a seed of its own): one
        // estimate per shape of run, so a sweep over seeds tokenises its task once.
        auto shape = job.spec.toJson();
        for (const char* key : { "seed", "name", "store" })
            shape.erase(key);
        const std::string key = shape.dump();
        if (!byShape.count(key))
            byShape[key] = estimateJob(job);
        const auto& e = estimates[job.index] = byShape.at(key);
        out << job.label << ": "
            << (e.charge ? "needs " + formatBinaryBytes(*e.charge) + " on " + placementDevice(job.spec.device)
                         : "no memory estimate (" + e.noEstimate + ")")
            << "\n";
    }
    out.flush();

    std::mutex mutex; // the output, `finished`, and the callbacks
    std::condition_variable ended;
    std::vector<std::size_t> finished; // jobs whose thread is done, to join
    std::atomic<bool> stop { false };
    struct Active {
        std::thread thread;
        std::string device;
        std::optional<std::uint64_t> charge;
    };
    std::map<std::size_t, Active> active; // the main thread's only
    std::map<std::string, DeviceBudget> budgets;
    std::set<std::string> leases;
    std::map<std::size_t, std::string> said; // the last line printed for a job
    auto lastRenew = std::chrono::steady_clock::now();
    const auto jobOf = [&](std::size_t index) -> const WorkerJob& {
        for (const auto& j : jobs)
            if (j.index == index)
                return j;
        throw Error("no job " + std::to_string(index));
    };
    const auto busy = [&](const std::string& device) {
        for (const auto& [i, a] : active)
            if (a.device == device)
                return true;
        return false;
    };
    const auto say = [&](std::size_t i, const std::string& line) {
        if (said[i] == line)
            return;
        said[i] = line;
        std::lock_guard lock(mutex);
        out << jobOf(i).label << ": " << line << "\n";
        out.flush();
    };

    auto joinAll = [&] {
        for (auto& [i, a] : active)
            if (a.thread.joinable())
                a.thread.join();
    };
    try {
        for (;;) {
            {
                std::lock_guard lock(mutex);
                for (const auto i : finished) { // their onEnd has been called
                    active[i].thread.join();
                    active.erase(i);
                }
                finished.clear();
            }
            if (stop || (stopLaunching && stopLaunching())) {
                stop = true;
                pending.clear();
            }
            if (pending.empty() && active.empty())
                break;

            // The devices the waiting runs need: this sweep's lease on each (a device leased to another queue
            // waits), given up on the devices it no longer uses; renewed every kLeaseRenew.
            std::set<std::string> needed;
            for (const auto i : pending)
                needed.insert(placementDevice(jobOf(i).spec.device));
            std::map<std::string, std::string> leasedElsewhere; // device -> its holder
            for (const auto& device : needed) {
                if (leases.count(device))
                    continue;
                bool acquired = false;
                if (!store.acquireDeviceLease(device, leaseOwner, kLeaseSeconds, &acquired, &error))
                    throw Error(error);
                if (acquired) {
                    leases.insert(device);
                    continue;
                }
                std::optional<DeviceLease> lease;
                store.getDeviceLease(device, &lease);
                leasedElsewhere[device] = lease ? lease->owner : std::string("unknown");
            }
            const bool renew = std::chrono::steady_clock::now() - lastRenew >= kLeaseRenew;
            for (auto it = leases.begin(); it != leases.end();) {
                if (!busy(*it) && !needed.count(*it)) {
                    store.releaseDeviceLease(*it, leaseOwner);
                    it = leases.erase(it);
                    continue;
                }
                bool renewed = true;
                if (renew && store.renewDeviceLease(*it, leaseOwner, kLeaseSeconds, &renewed) && !renewed) {
                    leasedElsewhere[*it] = "lost to another queue";
                    it = leases.erase(it);
                    continue;
                }
                ++it;
            }
            if (renew)
                lastRenew = std::chrono::steady_clock::now();

            // Budgets: measured again for each device none of this sweep's runs is on.
            for (const auto& device : needed) {
                if (busy(device))
                    continue;
                budgets.erase(device);
                if (const auto measured = measure(device))
                    budgets[device] = ladder::deviceBudget(*measured, pretend);
                else if (pretend.count(device))
                    budgets[device] = deviceBudgets({}, { { device, pretend.at(device) } }).front();
            }
            std::vector<DeviceBudget> devices;
            for (const auto& [d, b] : budgets)
                devices.push_back(b);
            std::vector<QueuedRun> queue;
            std::vector<std::size_t> left;
            for (const auto i : pending) {
                const std::string device = placementDevice(jobOf(i).spec.device);
                if (const auto it = leasedElsewhere.find(device); it != leasedElsewhere.end()) {
                    say(i, "waits: " + device + " is leased to another queue (" + it->second + ")");
                    left.push_back(i);
                    continue;
                }
                QueuedRun q;
                q.id = static_cast<std::int64_t>(i + 1);
                q.device = device;
                q.chargeBytes = estimates[i].charge;
                q.noEstimate = estimates[i].noEstimate;
                queue.push_back(q);
            }
            std::vector<PlacedRun> placed;
            for (const auto& [i, a] : active)
                placed.push_back({ static_cast<std::int64_t>(i + 1), a.device, a.charge });

            // Decide, claim and print every start of this round before any of them is launched.
            std::vector<std::pair<std::size_t, std::int64_t>> launches; // job, run id
            std::set<std::string> shownBudgets;
            for (const auto& p : placeQueuedRuns(devices, placed, queue)) {
                const std::size_t i = static_cast<std::size_t>(p.id - 1);
                const auto& job = jobOf(i);
                if (p.verdict == Placement::Verdict::Never) {
                    say(i, "never fits: " + p.reason + "; not trained");
                    std::lock_guard lock(mutex);
                    if (onNever)
                        onNever(job, p.reason);
                    continue;
                }
                if (p.verdict == Placement::Verdict::Wait) {
                    say(i, "waits: " + p.reason);
                    left.push_back(i);
                    continue;
                }
                std::int64_t runId = -1;
                std::optional<RunRecord> holder;
                const NewRun run = newRunFor(job.spec, RunState::Running);
                if (!(job.claim ? store.claimSpec(run, &runId, &holder, &error)
                                : store.createRun(run, &runId, &error)))
                    throw Error(error);
                if (holder) {
                    std::lock_guard lock(mutex);
                    if (onHeld)
                        onHeld(job, *holder);
                    continue;
                }
                if (budgets.count(p.device) && !busy(p.device) && shownBudgets.insert(p.device).second) {
                    std::lock_guard lock(mutex);
                    out << "placement on " << budgetText(budgets.at(p.device)) << "\n";
                }
                say(i, "starts on " + p.device + " as run " + std::to_string(runId) + ": " + p.reason);
                launches.push_back({ i, runId });
                active[i].device = p.device;
                active[i].charge = estimates[i].charge;
            }
            pending = left;
            for (const auto& [i, runId] : launches) {
                const WorkerJob& job = jobOf(i);
                active[i].thread = std::thread([&, i, runId = runId, &job] {
                    std::unique_ptr<TrainerObserver> inner;
                    {
                        std::lock_guard lock(mutex);
                        inner = makeObserver(job);
                    }
                    LockedObserver observer(std::move(inner), mutex);
                    const auto result = superviseJob(program, storePath, runId, job, observer);
                    std::lock_guard lock(mutex);
                    if (!onEnd(job, runId, result))
                        stop = true;
                    finished.push_back(i);
                    ended.notify_all();
                });
            }
            std::unique_lock lock(mutex);
            ended.wait_for(lock, kRecheck, [&] { return !finished.empty(); });
        }
    } catch (...) {
        // A store that fails mid-sweep: no new run starts, the ones running end by themselves.
        stop = true;
        joinAll();
        for (const auto& device : leases)
            store.releaseDeviceLease(device, leaseOwner);
        throw;
    }
    for (const auto& device : leases)
        store.releaseDeviceLease(device, leaseOwner);
}

} // namespace ladder::cli
