#include "JsonOutput.h"
#include "util/Json.h"

#include <iostream>

namespace ladder::cli {

void printJson(const nlohmann::json& j)
{
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

nlohmann::json runJson(const RunRecord& r)
{
    const auto& f = r.figures;
    const auto options = tryParseJson(r.methodOptionsJson.empty() ? "{}" : r.methodOptionsJson)
                             .value_or(nlohmann::json(nullptr));
    return { { "id", r.id }, { "name", jsonText(r.name) }, { "status", toString(r.status) },
        { "method", jsonText(r.method) }, { "method_options", options }, { "backbone", jsonText(r.backbone) },
        { "task", jsonText(r.task) }, { "seed", jsonOptional(r.seed) }, { "device", jsonText(r.device) },
        { "created_at", jsonText(r.createdAt) }, { "started_at", jsonText(r.startedAt) },
        { "finished_at", jsonText(r.finishedAt) }, { "step", r.step },
        { "total_steps", r.totalSteps > 0 ? nlohmann::json(r.totalSteps) : nlohmann::json(nullptr) },
        { "error", jsonText(r.errorMessage) }, { "trainable_params", jsonOptional(f.trainableParams) },
        { "backbone_params", jsonOptional(f.backboneParams) },
        { "total_params", jsonOptional(f.totalParams) },
        { "trainable_percent", jsonOptional(r.trainablePercent()) },
        { "peak_allocated_bytes", jsonOptional(f.peakAllocatedBytes) },
        { "init_peak_allocated_bytes", jsonOptional(f.initPeakAllocatedBytes) },
        { "eval_peak_allocated_bytes", jsonOptional(f.evalPeakAllocatedBytes) },
        { "main_metric", jsonText(f.mainMetricName) },
        { "best_validation", jsonOptional(f.bestValidationMetric) },
        { "best_step", jsonOptional(f.bestStep) }, { "last_validation", jsonOptional(f.lastMetric) },
        { "test", jsonOptional(f.testMetric) }, { "wall_seconds", jsonOptional(f.wallSeconds) },
        { "tokens_per_second", jsonOptional(f.tokensPerSecond) } };
}

} // namespace ladder::cli
