#include "train/TrainState.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include <ATen/ATen.h>

#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kMetadataKey = "ladder_train_state";

[[noreturn]] void fail(const std::string& path, const std::string& what)
{
    throw Error("training state " + path + ": " + what);
}

// A finite double, or null (JSON has no NaN or infinity).
json number(double value)
{
    return std::isfinite(value) ? json(value) : json(nullptr);
}

const json& field(const json& j, const char* name, const std::string& path)
{
    const auto it = j.find(name);
    if (it == j.end())
        fail(path, std::string("field ") + name + ": missing");
    return *it;
}

std::int64_t intField(const json& j, const char* name, const std::string& path, std::int64_t min)
{
    const auto& v = field(j, name, path);
    if (!v.is_number_integer() || v.get<std::int64_t>() < min)
        fail(path,
            std::string("field ") + name + ": expected an integer >= " + std::to_string(min) + ", got "
                + brief(v));
    return v.get<std::int64_t>();
}

// A double, or `missing` for null.
double realField(const json& j, const char* name, const std::string& path, double missing)
{
    const auto& v = field(j, name, path);
    if (v.is_null())
        return missing;
    if (!v.is_number())
        fail(path, std::string("field ") + name + ": expected a number or null, got " + brief(v));
    return v.get<double>();
}

std::string stringField(const json& j, const char* name, const std::string& path)
{
    const auto& v = field(j, name, path);
    if (!v.is_string())
        fail(path, std::string("field ") + name + ": expected a string, got " + brief(v));
    return v.get<std::string>();
}

json metadataOf(const std::string& path)
{
    std::map<std::string, std::string> metadata;
    try {
        metadata = readSafetensorsMetadata(path);
    } catch (const std::exception& e) {
        throw Error(std::string("training state: ") + e.what());
    }
    const auto it = metadata.find(kMetadataKey);
    if (it == metadata.end())
        fail(path,
            std::string("not a LadderBench training state (no \"") + kMetadataKey
                + "\" in the safetensors metadata)");
    json j;
    try {
        j = parseJson(it->second, "training state " + path + " metadata");
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
    if (!j.is_object())
        fail(path, "the metadata is not a JSON object");
    const auto version = intField(j, "version", path, 1);
    if (version != TrainState::kVersion)
        fail(path,
            "format version " + std::to_string(version) + "; this LadderBench reads version "
                + std::to_string(TrainState::kVersion));
    return j;
}

// Whose state it is and how far it got: the fields readTrainStateHeader() gives.
TrainStateHeader headerOf(const json& j, const std::string& path)
{
    TrainStateHeader h;
    h.runId = intField(j, "run_id", path, 0);
    h.runCreatedAt = stringField(j, "run_created_at", path);
    h.specHash = stringField(j, "spec_hash", path);
    h.step = intField(j, "step", path, 0);
    h.totalSteps = intField(j, "total_steps", path, 0);
    return h;
}

} // namespace

void saveTrainState(const std::string& path, const TrainState& s)
{
    json adam = json::object();
    for (const auto& [name, step] : s.adamSteps)
        adam[name] = step;
    const json meta { { "version", TrainState::kVersion }, { "run_id", s.runId },
        { "run_created_at", s.runCreatedAt }, { "spec_hash", s.specHash }, { "step", s.step },
        { "total_steps", s.totalSteps }, { "epoch", s.epoch }, { "next_batch", s.nextBatch },
        { "last_eval_step", s.lastEvalStep }, { "best_score", number(s.bestScore) },
        { "best_step", s.bestStep }, { "last_validation", number(s.lastValidation) },
        { "peak_allocated_bytes", s.peakAllocatedBytes }, { "peak_reserved_bytes", s.peakReservedBytes },
        { "init_peak_allocated_bytes", s.initPeakAllocatedBytes },
        { "eval_peak_allocated_bytes", s.evalPeakAllocatedBytes }, { "run_tokens", s.runTokens },
        { "run_step_seconds", s.runStepSeconds }, { "elapsed_seconds", s.elapsedSeconds },
        { "adam_steps", adam } };
    TensorMap tensors;
    const auto add = [&](const char* prefix, const TensorMap& map) {
        for (const auto& [name, t] : map)
            tensors[std::string(prefix) + name] = t;
    };
    add("param/", s.params);
    add("exp_avg/", s.expAvg);
    add("exp_avg_sq/", s.expAvgSq);
    add("best/", s.best);
    if (s.cpuRng.defined())
        tensors["rng/cpu"] = s.cpuRng;
    if (s.cudaRng.defined())
        tensors["rng/cuda"] = s.cudaRng;

    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (ec)
        fail(path, "cannot create its folder: " + ec.message());
    try {
        writeSafetensors(path, tensors, { { kMetadataKey, meta.dump() } });
    } catch (const std::exception& e) {
        // writeSafetensors names the path; strerror's "No space left on device" is kept in the line.
        throw Error(std::string("saving the training state: ") + oneLine(e.what(), 600));
    }
}

std::optional<TrainStateHeader> readTrainStateHeader(const std::string& path)
{
    std::error_code ec;
    if (!fs::exists(path, ec))
        return std::nullopt;
    return headerOf(metadataOf(path), path);
}

TrainState loadTrainState(const std::string& path)
{
    const json j = metadataOf(path);
    TensorMap tensors;
    try {
        tensors = readSafetensors(path);
    } catch (const std::exception& e) {
        throw Error(std::string("training state: ") + e.what());
    }
    TrainState s;
    const auto h = headerOf(j, path);
    s.runId = h.runId;
    s.runCreatedAt = h.runCreatedAt;
    s.specHash = h.specHash;
    s.step = h.step;
    s.totalSteps = h.totalSteps;
    s.epoch = intField(j, "epoch", path, 0);
    s.nextBatch = intField(j, "next_batch", path, 0);
    s.lastEvalStep = intField(j, "last_eval_step", path, -1);
    s.bestScore = realField(j, "best_score", path, -std::numeric_limits<double>::infinity());
    s.bestStep = intField(j, "best_step", path, 0);
    s.lastValidation = realField(j, "last_validation", path, std::numeric_limits<double>::quiet_NaN());
    s.peakAllocatedBytes = static_cast<std::uint64_t>(intField(j, "peak_allocated_bytes", path, 0));
    s.peakReservedBytes = static_cast<std::uint64_t>(intField(j, "peak_reserved_bytes", path, 0));
    s.initPeakAllocatedBytes = static_cast<std::uint64_t>(intField(j, "init_peak_allocated_bytes", path, 0));
    s.evalPeakAllocatedBytes = static_cast<std::uint64_t>(intField(j, "eval_peak_allocated_bytes", path, 0));
    s.runTokens = intField(j, "run_tokens", path, 0);
    s.runStepSeconds = realField(j, "run_step_seconds", path, 0.0);
    s.elapsedSeconds = realField(j, "elapsed_seconds", path, 0.0);
    if (s.step > s.totalSteps)
        fail(path,
            "field step: " + std::to_string(s.step) + " is past total_steps " + std::to_string(s.totalSteps));
    const auto& adam = field(j, "adam_steps", path);
    if (!adam.is_object())
        fail(path, "field adam_steps: expected an object, got " + brief(adam));
    for (const auto& [name, v] : adam.items()) {
        if (!v.is_number_integer() || v.get<std::int64_t>() < 1)
            fail(path,
                "field adam_steps." + oneLine(name, 80) + ": expected an integer >= 1, got " + brief(v));
        s.adamSteps[name] = v.get<std::int64_t>();
    }

    for (auto& [key, t] : tensors) {
        const auto slash = key.find('/');
        const std::string kind = slash == std::string::npos ? key : key.substr(0, slash);
        const std::string name = slash == std::string::npos ? std::string() : key.substr(slash + 1);
        if (kind == "param")
            s.params[name] = t;
        else if (kind == "exp_avg")
            s.expAvg[name] = t;
        else if (kind == "exp_avg_sq")
            s.expAvgSq[name] = t;
        else if (kind == "best")
            s.best[name] = t;
        else if (key == "rng/cpu")
            s.cpuRng = t;
        else if (key == "rng/cuda")
            s.cudaRng = t;
        else
            fail(path, "tensor " + oneLine(key, 120) + ": not part of a training state");
    }
    if (s.params.empty())
        fail(path, "it holds no \"param/\" tensors");
    const auto matchParams = [&](const char* what, const TensorMap& map) {
        for (const auto& [name, t] : map) {
            const auto p = s.params.find(name);
            if (p == s.params.end())
                fail(path,
                    std::string("tensor ") + what + "/" + oneLine(name, 120)
                        + ": no param/ tensor of that name");
            if (!p->second.sizes().equals(t.sizes()) || p->second.scalar_type() != t.scalar_type())
                fail(path,
                    std::string("tensor ") + what + "/" + oneLine(name, 120)
                        + ": its shape or dtype differs from the parameter's");
        }
    };
    matchParams("exp_avg", s.expAvg);
    matchParams("exp_avg_sq", s.expAvgSq);
    matchParams("best", s.best);
    for (const auto& [name, step] : s.adamSteps)
        if (!s.expAvg.count(name) || !s.expAvgSq.count(name))
            fail(path, "field adam_steps." + oneLine(name, 80) + ": no exp_avg/exp_avg_sq tensors for it");
    if (s.expAvg.size() != s.adamSteps.size() || s.expAvgSq.size() != s.adamSteps.size())
        fail(path, "the optimizer's moments and adam_steps name different parameters");
    if (!s.best.empty() && s.best.size() != s.params.size())
        fail(path, "it holds best/ tensors for some parameters only");
    if (!s.cpuRng.defined() || s.cpuRng.scalar_type() != at::kByte || s.cpuRng.dim() != 1)
        fail(path, "tensor rng/cpu: missing or not a 1-D uint8 tensor");
    if (s.cudaRng.defined() && (s.cudaRng.scalar_type() != at::kByte || s.cudaRng.dim() != 1))
        fail(path, "tensor rng/cuda: not a 1-D uint8 tensor");
    return s;
}

} // namespace ladder
