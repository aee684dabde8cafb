#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "data/Task.h"
#include "model/BackboneModel.h"
#include "train/RunSpec.h"
#include "train/TaskLoad.h"
#include "train/Trainer.h"

namespace ladder {

class Method;
class Tokenizer;

// What a run trains on: a backbone with its tokenizer, and a task.
struct TrainerInputs {
    BackboneModel backbone; // T5ForConditionalGenerationImpl or a decoder (model/BackboneModel.h)
    std::shared_ptr<Tokenizer> tokenizer;
    TaskSplits task;
};

// Evaluates `method` on one split of `inputs.task` by generation ("validation" or "test") with the
// spec's evaluation settings.
TrainEval evaluateSplit(const RunSpec& spec, TrainerInputs& inputs, Method& method, const std::string& split);

// The backbone folder of a spec: spec.backbone, or the built demo's folder for "demo".
std::string backboneFolderOf(const RunSpec& spec);

// The backbone ("demo" or a HF folder: T5, Llama, Mistral, Qwen2; model/BackboneLoad.h) and its tokenizer
// (model/TokenizerLoad.h), in eval mode on the CPU; the task
// is left empty. The first stage of loadTrainerInputs, and what a trained run is loaded on
// (export/RunModel.h). Errors name the folder ("the demo backbone is not built yet", no tokenizer file).
TrainerInputs loadBackboneInputs(const RunSpec& spec);

// Loads the backbone and the task of a spec.
// beforeStage (optional) is called before each stage with what it loads ("backbone FOLDER", "task
// TYPE:NAME") and once after the last with an empty string; returning true stops the load there, and
// Trainer::run then ends the run as cancelled.
TrainerInputs loadTrainerInputs(
    const RunSpec& spec, const std::function<bool(const std::string& stage)>& beforeStage = {});

// Thrown by loadTrainerInputs when beforeStage asks to stop: Trainer::run ends the run cancelled.
struct LoadCancelled : std::runtime_error {
    LoadCancelled()
        : std::runtime_error("cancelled while loading")
    {
    }
};

} // namespace ladder
