#include "train/DevicePlacement.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "train/MemoryPlan.h"
#include "util/Error.h"
#include "util/Text.h"

namespace ladder {
namespace {

bool isCuda(const std::string& device)
{
    return device.rfind("cuda", 0) == 0;
}

// "run 4", "runs 4 and 7", "runs 4, 7 and 9".
std::string runList(const std::vector<std::int64_t>& ids)
{
    if (ids.size() == 1)
        return "run " + std::to_string(ids.front());
    std::string out = "runs ";
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i > 0)
            out += i + 1 == ids.size() ? " and " : ", ";
        out += std::to_string(ids[i]);
    }
    return out;
}

// "of 76.0 GiB" or "of its 2.0 GiB pretend budget".
std::string ofCapacity(const DeviceBudget& b)
{
    return b.pretend ? "of its " + formatBinaryBytes(b.capacityBytes) + " pretend budget"
                     : "of " + formatBinaryBytes(b.capacityBytes);
}

// What one device holds while the queue is placed.
struct DeviceState {
    const DeviceBudget* budget = nullptr; // nullptr: not known, one run at a time
    std::vector<std::int64_t> runs;
    std::uint64_t used = 0;
    std::optional<std::int64_t> alone; // a placed run without an estimate
    std::optional<std::int64_t> lineHeldBy; // a queued run that waits: later runs wait behind it
};

bool validDeviceName(const std::string& name)
{
    if (name == "cpu")
        return true;
    if (name.rfind("cuda:", 0) != 0 || name.size() == 5)
        return false;
    return std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

std::string placementDevice(const std::string& specDevice)
{
    return specDevice == "cuda" ? std::string("cuda:0") : specDevice;
}

std::uint64_t runCharge(std::uint64_t estimatedPeakBytes, const std::string& device)
{
    return estimatedPeakBytes + estimatedPeakBytes / 100 * kRunEstimateSlackPercent
        + (isCuda(device) ? kRunProcessBytesCuda : kRunProcessBytesCpu);
}

std::uint64_t safetyMargin(const std::string& device, std::uint64_t totalBytes)
{
    return isCuda(device) ? std::max<std::uint64_t>(totalBytes / 20, 512 * kMiB)
                          : std::max<std::uint64_t>(totalBytes / 10, kGiB);
}

std::map<std::string, std::uint64_t> parseDeviceBudgets(const std::string& text, const std::string& what)
{
    const std::string expected = what
        + ": expected DEVICE=SIZE[,DEVICE=SIZE...] such as cpu=2GiB or "
          "cpu=600MiB,cuda:0=20GiB";
    std::map<std::string, std::uint64_t> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        const auto eq = item.find('=');
        if (eq == std::string::npos)
            throw Error(expected + ", got \"" + oneLine(text, 80) + "\"");
        std::string device = item.substr(0, eq);
        device.erase(0, device.find_first_not_of(' '));
        device.erase(device.find_last_not_of(' ') + 1);
        device = placementDevice(device);
        if (!validDeviceName(device))
            throw Error(expected + "; \"" + oneLine(device, 40) + "\" is not cpu, cuda or cuda:N");
        if (out.count(device))
            throw Error(what + ": " + device + " is given twice");
        out[device] = parseByteSize(item.substr(eq + 1), what + " of " + device);
    }
    if (out.empty())
        throw Error(expected + ", got nothing");
    return out;
}

DeviceBudget deviceBudget(const ComputeDevice& device, const std::map<std::string, std::uint64_t>& pretend)
{
    DeviceBudget b;
    b.device = device.id;
    b.totalBytes = device.totalBytes;
    if (const auto it = pretend.find(device.id); it != pretend.end()) {
        b.pretend = true;
        b.capacityBytes = b.limitBytes = it->second;
        return b;
    }
    const std::uint64_t margin = safetyMargin(device.id, device.totalBytes);
    b.limitBytes = device.totalBytes > margin ? device.totalBytes - margin : 0;
    b.capacityBytes = std::min(b.limitBytes, device.freeBytes > margin ? device.freeBytes - margin : 0);
    return b;
}

std::vector<DeviceBudget> deviceBudgets(
    const std::vector<ComputeDevice>& devices, const std::map<std::string, std::uint64_t>& pretend)
{
    std::vector<DeviceBudget> out;
    std::set<std::string> seen;
    for (const auto& d : devices) {
        out.push_back(deviceBudget(d, pretend));
        seen.insert(d.id);
    }
    for (const auto& [id, bytes] : pretend) {
        if (seen.count(id))
            continue;
        ComputeDevice d;
        d.id = id;
        d.totalBytes = d.freeBytes = bytes;
        out.push_back(deviceBudget(d, pretend));
    }
    return out;
}

std::vector<Placement> placeQueuedRuns(const std::vector<DeviceBudget>& devices,
    const std::vector<PlacedRun>& placed, const std::vector<QueuedRun>& queue)
{
    std::map<std::string, DeviceState> state;
    auto stateOf = [&](const std::string& device) -> DeviceState& {
        auto it = state.find(device);
        if (it != state.end())
            return it->second;
        DeviceState s;
        for (const auto& b : devices)
            if (b.device == device)
                s.budget = &b;
        return state.emplace(device, s).first->second;
    };
    auto place = [&](DeviceState& s, std::int64_t id, const std::optional<std::uint64_t>& charge) {
        s.runs.push_back(id);
        if (charge)
            s.used += *charge;
        else
            s.alone = id;
    };
    for (const auto& run : placed)
        place(stateOf(placementDevice(run.device)), run.id, run.chargeBytes);

    std::vector<Placement> out;
    for (const auto& run : queue) {
        Placement p;
        p.id = run.id;
        p.device = placementDevice(run.device);
        DeviceState& s = stateOf(p.device);
        const DeviceBudget* b = s.budget;
        const std::string on = s.runs.empty() ? std::string() : " with " + runList(s.runs) + " on it";
        auto wait = [&](std::string reason, bool holdsLine) {
            p.verdict = Placement::Verdict::Wait;
            p.reason = std::move(reason);
            if (holdsLine)
                s.lineHeldBy = run.id;
        };
        auto start = [&](std::string reason) {
            p.verdict = Placement::Verdict::Start;
            p.reason = std::move(reason);
            place(s, run.id, run.chargeBytes);
        };
        if (run.chargeBytes && b && *run.chargeBytes > b->limitBytes) {
            // Never, whatever runs there: it holds no line.
            p.verdict = Placement::Verdict::Never;
            p.reason = "needs " + formatBinaryBytes(*run.chargeBytes) + ", more than "
                + (b->pretend ? p.device + "'s pretend budget of " + formatBinaryBytes(b->limitBytes)
                              : p.device + " can ever give: " + formatBinaryBytes(b->limitBytes) + " ("
                            + formatBinaryBytes(b->totalBytes) + " less a "
                            + formatBinaryBytes(safetyMargin(p.device, b->totalBytes)) + " margin)");
        } else if (s.lineHeldBy) {
            wait("behind run " + std::to_string(*s.lineHeldBy) + ", queued before it for " + p.device
                    + " (queue order)",
                false);
        } else if (!b) {
            // No budget: estimates do not matter, one run at a time.
            const std::string why = p.device + " takes one run at a time (no memory budget for it)";
            if (s.runs.empty())
                start(why);
            else
                wait(why + on, true);
        } else if (run.estimatePending) {
            wait("estimating its memory", true);
        } else if (s.alone) {
            wait(p.device + " runs run " + std::to_string(*s.alone) + " alone (it has no memory estimate)",
                true);
        } else if (!run.chargeBytes) {
            if (s.runs.empty())
                start("runs alone on " + p.device + ": no memory estimate ("
                    + (run.noEstimate.empty() ? std::string("unknown") : run.noEstimate) + ")");
            else
                wait("no memory estimate (" + run.noEstimate + "): waits to run alone on " + p.device + on,
                    true);
        } else {
            const std::uint64_t left = b->capacityBytes > s.used ? b->capacityBytes - s.used : 0;
            const std::string needs = "needs " + formatBinaryBytes(*run.chargeBytes) + ", " + p.device;
            if (*run.chargeBytes <= left) {
                start(needs + " had " + formatBinaryBytes(left) + " left " + ofCapacity(*b) + on);
            } else {
                std::string why = needs + " has " + formatBinaryBytes(left) + " left " + ofCapacity(*b);
                if (!s.runs.empty())
                    why += on;
                else if (!b->pretend)
                    why += " (" + formatBinaryBytes(b->totalBytes) + " in all; other processes use the rest)";
                wait(why, true);
            }
        }
        out.push_back(std::move(p));
    }
    return out;
}

} // namespace ladder
