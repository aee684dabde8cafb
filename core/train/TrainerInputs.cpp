#include "train/TrainerInputs.h"

#include <filesystem>

#include "data/PromptTemplate.h"
#include "model/BackboneLoad.h"
#include "model/Tokenizer.h"
#include "model/TokenizerLoad.h"
#include "train/DemoPaths.h"
#include "train/TaskLoad.h"
#include "util/Error.h"

namespace ladder {
namespace fs = std::filesystem;

std::string backboneFolderOf(const RunSpec& spec)
{
    return backboneFolderFor(spec.backbone); // "demo" and "demo-llama" are the built demo's
}

TrainerInputs loadBackboneInputs(const RunSpec& spec)
{
    TrainerInputs inputs;
    const auto folder = backboneFolderOf(spec);
    if (isDemoBackboneName(spec.backbone) && !fs::exists(fs::path(folder) / "config.json"))
        throw Error("the demo backbone '" + spec.backbone + "' is not built yet (run `ladder demo`, once)");
    // The tokenizer first: a folder without one fails before its weights are read.
    inputs.tokenizer = loadTokenizer(folder);
    inputs.backbone = loadBackbone(folder).model;
    return inputs;
}

TrainerInputs loadTrainerInputs(
    const RunSpec& spec, const std::function<bool(const std::string& stage)>& beforeStage)
{
    const auto stage = [&](const std::string& what) {
        if (beforeStage && beforeStage(what))
            throw LoadCancelled();
    };
    stage("backbone " + backboneFolderOf(spec));
    auto inputs = loadBackboneInputs(spec);
    stage("task " + spec.task.type + ":" + spec.task.name);
    inputs.task = loadTaskSplits(spec.task);
    if (inputs.backbone->shape().encoderBlocks == 0) // a causal LM reads prompts (data/PromptTemplate.h)
        applyPromptTemplate(inputs.task, spec.task.generic.value("prompt_template", std::string()),
            "run spec task.prompt_template");
    stage({});
    return inputs;
}

} // namespace ladder
