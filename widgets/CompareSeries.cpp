#include "CompareSeries.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <tuple>

#include <nlohmann/json.hpp>

#include "RunsTableModel.h"
#include "util/Json.h"

namespace ladder::widgets {
namespace {
constexpr double kBytesPerMegabyte = 1e6;
} // namespace

std::string CompareSeries::groupKey(const RunRecord& run)
{
    auto parsed = tryParseJson(run.specJson);
    if (!parsed)
        return "run:" + std::to_string(run.id);
    auto& spec = *parsed;
    if (!spec.is_object())
        return "run:" + std::to_string(run.id);
    spec.erase("seed");
    spec.erase("name");
    spec.erase("store");
    return spec.dump(); // nlohmann::json objects keep their keys sorted: a canonical form
}

void CompareSeries::meanAndStd(const std::vector<double>& values, double* mean, double* stdDev)
{
    double sum = 0;
    for (double v : values)
        sum += v;
    const double n = static_cast<double>(values.size());
    *mean = values.empty() ? 0.0 : sum / n;
    double squares = 0;
    for (double v : values)
        squares += (v - *mean) * (v - *mean);
    *stdDev = values.size() < 2 ? 0.0 : std::sqrt(squares / (n - 1));
}

namespace {

const std::optional<double>& metricOf(const RunRecord& run, CompareMetric metric)
{
    return metric == CompareMetric::BestValidation ? run.figures.bestValidationMetric
                                                   : run.figures.testMetric;
}

bool plottable(const RunRecord& run, CompareMetric metric)
{
    const auto& value = metricOf(run, metric);
    return run.figures.peakAllocatedBytes && value && std::isfinite(*value);
}

} // namespace

std::vector<ComparePoint> CompareSeries::build(const std::vector<RunRecord>& runs, CompareMetric metric)
{
    // Finished runs group by spec (seeds averaged); an unfinished run is a group of its own.
    std::map<std::string, std::vector<const RunRecord*>> groups;
    std::vector<std::string> order; // first appearance
    for (const auto& run : runs) {
        if (!plottable(run, metric))
            continue;
        const std::string key
            = run.status == RunState::Finished ? groupKey(run) : "unfinished:" + std::to_string(run.id);
        auto& members = groups[key];
        if (members.empty())
            order.push_back(key);
        members.push_back(&run);
    }
    std::vector<ComparePoint> points;
    for (const auto& key : order) {
        auto members = groups[key];
        std::sort(members.begin(), members.end(), [](auto* a, auto* b) { return a->id < b->id; });
        ComparePoint p;
        p.groupKey = key;
        const RunRecord& first = *members.front();
        p.method = first.method;
        p.task = first.task;
        p.backbone = first.backbone;
        p.options = RunsTableModel::optionsSummary(first).toStdString();
        p.metricName = first.figures.mainMetricName;
        p.finished = first.status == RunState::Finished;
        p.state = toString(first.status);
        std::vector<double> memory;
        std::vector<double> values;
        for (const RunRecord* run : members) {
            p.runIds.push_back(run->id);
            p.seeds.push_back(run->seed.value_or(-1));
            p.names.push_back(run->name);
            memory.push_back(static_cast<double>(*run->figures.peakAllocatedBytes) / kBytesPerMegabyte);
            values.push_back(*metricOf(*run, metric));
        }
        meanAndStd(memory, &p.memoryMB, &p.memoryStdMB);
        meanAndStd(values, &p.metric, &p.metricStd);
        points.push_back(std::move(p));
    }
    std::stable_sort(points.begin(), points.end(), [](const ComparePoint& a, const ComparePoint& b) {
        return std::tie(a.method, a.memoryMB) < std::tie(b.method, b.memoryMB);
    });
    return points;
}

std::vector<std::pair<std::string, int>> CompareSeries::absent(
    const std::vector<RunRecord>& runs, CompareMetric metric)
{
    const RunState order[] = { RunState::Queued, RunState::Running, RunState::Cancelled, RunState::Failed,
        RunState::Interrupted };
    std::map<RunState, int> unfinished;
    int finishedWithout = 0;
    for (const auto& run : runs) {
        if (plottable(run, metric))
            continue;
        if (run.status == RunState::Finished)
            ++finishedWithout;
        else
            ++unfinished[run.status];
    }
    std::vector<std::pair<std::string, int>> out;
    for (const RunState state : order)
        if (unfinished.count(state))
            out.emplace_back(toString(state), unfinished[state]);
    if (finishedWithout > 0)
        out.emplace_back(std::string("finished without ")
                + (metric == CompareMetric::BestValidation ? "a validation metric" : "a test metric"),
            finishedWithout);
    return out;
}

std::vector<std::size_t> CompareSeries::paretoFront(const std::vector<ComparePoint>& points)
{
    // O(n log n): in order of memory (metric descending within equal memory), a point is dominated exactly
    // when a point with less memory reaches its metric, or one with the same memory beats it.
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < points.size(); ++i)
        if (points[i].finished)
            order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return std::make_tuple(points[a].memoryMB, -points[a].metric)
            < std::make_tuple(points[b].memoryMB, -points[b].metric);
    });
    std::vector<std::size_t> front;
    bool haveBest = false;
    double bestBefore = 0; // the best metric among points with less memory than the current group
    for (std::size_t start = 0; start < order.size();) {
        std::size_t end = start;
        while (end < order.size() && points[order[end]].memoryMB == points[order[start]].memoryMB)
            ++end;
        const double top = points[order[start]].metric; // the group's best
        if (!haveBest || top > bestBefore)
            for (std::size_t k = start; k < end && points[order[k]].metric == top; ++k)
                front.push_back(order[k]);
        bestBefore = haveBest ? std::max(bestBefore, top) : top;
        haveBest = true;
        start = end;
    }
    return front;
}

} // namespace ladder::widgets
