#include "store/RunsCsv.h"

#include <charconv>
#include <ostream>

namespace ladder {

namespace {

std::string number(std::int64_t value)
{
    return std::to_string(value);
}

std::string number(double value)
{
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    return std::string(buffer, result.ptr);
}

template <typename T> std::string optionalNumber(const std::optional<T>& value)
{
    return value ? number(*value) : std::string();
}

} // namespace

std::string csvField(const std::string& value)
{
    const bool needsQuotes = value.find_first_of(",\"\r\n") != std::string::npos
        || (!value.empty() && (value.front() == ' ' || value.back() == ' '));
    if (!needsQuotes)
        return value;
    std::string quoted;
    quoted.reserve(value.size() + 2);
    quoted += '"';
    for (const char c : value) {
        if (c == '"')
            quoted += '"';
        quoted += c;
    }
    quoted += '"';
    return quoted;
}

const std::vector<std::string>& runsCsvColumns()
{
    static const std::vector<std::string> columns = {
        "id",
        "name",
        "status",
        "method",
        "method_options_json",
        "backbone",
        "task",
        "seed",
        "device",
        "created_at",
        "started_at",
        "finished_at",
        "error_message",
        "queue_position",
        "step",
        "total_steps",
        "main_metric_name",
        "best_validation_metric",
        "best_step",
        "test_metric",
        "last_metric",
        "peak_allocated_bytes",
        "peak_reserved_bytes",
        "init_peak_allocated_bytes",
        "eval_peak_allocated_bytes",
        "weight_bytes",
        "gradient_bytes",
        "optimizer_bytes",
        "trainable_params",
        "total_params",
        "backbone_params",
        "trainable_percent",
        "wall_seconds",
        "tokens_per_second",
        "spec_hash",
        "spec_json",
    };
    return columns;
}

void writeRunsCsv(std::ostream& out, const std::vector<RunRecord>& runs)
{
    const auto writeLine = [&out](const std::vector<std::string>& fields) {
        for (std::size_t i = 0; i < fields.size(); ++i) {
            if (i > 0)
                out << ',';
            out << csvField(fields[i]);
        }
        out << "\r\n";
    };
    writeLine(runsCsvColumns());
    for (const RunRecord& run : runs) {
        const FinalFigures& f = run.figures;
        writeLine({
            number(run.id),
            run.name,
            toString(run.status),
            run.method,
            run.methodOptionsJson,
            run.backbone,
            run.task,
            optionalNumber(run.seed),
            run.device,
            run.createdAt,
            run.startedAt,
            run.finishedAt,
            run.errorMessage,
            optionalNumber(run.queuePosition),
            number(run.step),
            number(run.totalSteps),
            f.mainMetricName,
            optionalNumber(f.bestValidationMetric),
            optionalNumber(f.bestStep),
            optionalNumber(f.testMetric),
            optionalNumber(f.lastMetric),
            optionalNumber(f.peakAllocatedBytes),
            optionalNumber(f.peakReservedBytes),
            optionalNumber(f.initPeakAllocatedBytes),
            optionalNumber(f.evalPeakAllocatedBytes),
            optionalNumber(f.weightBytes),
            optionalNumber(f.gradientBytes),
            optionalNumber(f.optimizerBytes),
            optionalNumber(f.trainableParams),
            optionalNumber(f.totalParams),
            optionalNumber(f.backboneParams),
            optionalNumber(run.trainablePercent()),
            optionalNumber(f.wallSeconds),
            optionalNumber(f.tokensPerSecond),
            run.specHash,
            run.specJson,
        });
    }
}

} // namespace ladder
