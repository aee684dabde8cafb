#include "train/TrainerInputs.h"

#include <filesystem>

#include "model/T5Checkpoint.h"
#include "model/T5Tokenizer.h"
#include "train/DemoPaths.h"
#include "train/TaskLoad.h"
#include "util/Error.h"

namespace ladder {
namespace fs = std::filesystem;

std::string backboneFolderOf(const RunSpec& spec)
{
    return spec.backbone == "demo" ? demoBackboneDirectory() : spec.backbone;
}

TrainerInputs loadBackboneInputs(const RunSpec& spec)
{
    TrainerInputs inputs;
    const auto folder = backboneFolderOf(spec);
    if (spec.backbone == "demo" && !fs::exists(fs::path(folder) / "config.json"))
        throw Error("the demo backbone is not built yet (run `ladder demo`, about 15 minutes once)");
    const auto spm = (fs::path(folder) / "spiece.model").string();
    if (!fs::exists(spm))
        throw Error(folder + ": no spiece.model (the backbone folder needs its SentencePiece tokenizer)");
    inputs.tokenizer = std::make_shared<T5Tokenizer>(spm);
    inputs.backbone = loadT5(folder).model;
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
    stage({});
    return inputs;
}

} // namespace ladder
