#include "train/RunEstimate.h"

#include <algorithm>
#include <filesystem>

#include "data/Batcher.h"
#include "data/PromptTemplate.h"
#include "data/Task.h"
#include "model/T5Tokenizer.h"
#include "model/TokenizerLoad.h"
#include "train/DemoPaths.h"
#include "train/TaskLoad.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {

TrainingLengths trainingLengths(const RunSpec& spec, const TaskSplits& task, const Tokenizer& tokenizer)
{
    const auto& o = spec.training;
    if (task.train.empty())
        throw Error("task " + task.info.name + ": the training split is empty");
    BatcherOptions bo;
    bo.batchSize = static_cast<int>(std::max<std::int64_t>(1, o.batchSize));
    bo.maxSourceLength = static_cast<int>(o.maxSourceLength);
    bo.maxTargetLength = static_cast<int>(
        o.maxTargetLength > 0 ? o.maxTargetLength : Batcher::targetLengthFor(task.info, tokenizer, 128));
    return lengthsOf(Batcher(tokenizer, task.train, bo));
}

TrainingLengths lengthsOf(const Batcher& batcher)
{
    TrainingLengths r;
    r.examples = batcher.exampleCount();
    for (std::size_t i = 0; i < batcher.exampleCount(); ++i) {
        r.source = std::max(r.source, static_cast<std::int64_t>(batcher.sourceIds(i).size()));
        r.target = std::max(r.target, static_cast<std::int64_t>(batcher.targetIds(i).size()));
    }
    r.truncatedSources = batcher.truncatedSources();
    return r;
}

TrainingLengths trainingLengthsFor(const RunSpec& spec, const std::string& folder, bool causal)
{
    const auto tokenizer = loadTokenizer(folder);
    auto task = loadTaskSplits(spec.task);
    if (causal)
        applyPromptTemplate(
            task, spec.task.generic.value("prompt_template", std::string()), "run spec task.prompt_template");
    return trainingLengths(spec, task, *tokenizer);
}

MemoryEstimateInput estimateInputFor(
    const RunSpec& spec, const LlamaConfig& config, const TrainingLengths& lengths)
{
    auto in = estimateInputFor(spec, T5Config {}, lengths);
    in.llama = config;
    return in;
}

MemoryEstimateInput estimateInputFor(
    const RunSpec& spec, const T5Config& config, const TrainingLengths& lengths)
{
    MemoryEstimateInput in;
    in.config = config;
    in.method = spec.method;
    // One rank's share of the global batch in a data-parallel run (docs/SCALING.md): the figure is a rank's
    // (each rank holds a full copy of the weights and optimizer state, and its share of the activations).
    const auto processes = std::max<std::int64_t>(1, spec.training.processes);
    in.batch = (spec.training.batchSize + processes - 1) / processes;
    in.dataParallel = processes > 1;
    in.srcLen = std::max<std::int64_t>(1, lengths.source);
    in.tgtLen = std::max<std::int64_t>(1, lengths.target);
    in.dtype = spec.training.dtype;
    in.gradientAccumulation = spec.training.gradientAccumulation;
    in.device = spec.device.rfind("cuda", 0) == 0 ? spec.device : std::string("cpu");
    return in;
}

MemoryEstimate estimateRunSpec(const RunSpec& spec, std::uint64_t cudaWorkspaceBytes)
{
    if (spec.task.type == "vl" || spec.method.visualDim > 0)
        throw Error(
            "no memory estimate for vision-and-language runs yet: the estimate does not price the visual "
            "features (docs/VL.md; ladder bench memory --vl measures them)");
    namespace fs = std::filesystem;
    const auto folder = backboneFolderFor(spec.backbone);
    if (isDemoBackboneName(spec.backbone) && !fs::exists(fs::path(folder) / "config.json"))
        throw Error("the demo backbone is not built yet (run `ladder demo`)");
    // config.json read once (a folder is read as one snapshot, as loadBackbone reads it); a folder without
    // one is T5's case below, whose first complaint is the tokenizer.
    const auto configPath = (fs::path(folder) / "config.json").string();
    nlohmann::json json;
    if (fs::exists(configPath)) {
        json = readJsonFile(configPath, "a HuggingFace config.json");
        const auto type = json.is_object() && json.contains("model_type") && json.at("model_type").is_string()
            ? json.at("model_type").get<std::string>()
            : std::string();
        if (LlamaConfig::supportsModelType(type)) {
            auto input = estimateInputFor(
                spec, LlamaConfig::fromJson(json, configPath), trainingLengthsFor(spec, folder, true));
            input.cudaWorkspaceBytes = cudaWorkspaceBytes;
            return estimateTrainingMemory(input);
        }
    }
    const auto spm = (fs::path(folder) / "spiece.model").string();
    if (!fs::exists(spm))
        throw Error(folder + ": no spiece.model (the backbone folder needs its SentencePiece tokenizer)");
    const T5Config config
        = json.is_null() ? T5Config::fromJsonFile(configPath) : T5Config::fromJson(json, configPath);
    const T5Tokenizer tokenizer(spm);
    auto input = estimateInputFor(spec, config, trainingLengths(spec, loadTaskSplits(spec.task), tokenizer));
    input.cudaWorkspaceBytes = cudaWorkspaceBytes;
    return estimateTrainingMemory(input);
}

} // namespace ladder
