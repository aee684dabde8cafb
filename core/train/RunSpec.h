#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "peft/MethodOptions.h"

namespace ladder {

// Where a run's data comes from.
struct TaskSpec {
    // "glue": a folder in the original GLUE TSV layout (name: the task or "auto");
    // "demo": a built-in WordNet demo task (name: "supersense" or the pair task; path: the demo tasks
    //         folder, default the demo cache);
    // "generic": the user's own JSONL/CSV/TSV (path, text_columns, label_column, ... see docs/DATA.md).
    std::string type = "glue";
    std::string path;
    std::string name = "auto";
    nlohmann::json generic = nlohmann::json::object(); // the generic reader's fields, verbatim
    std::uint64_t dataSeed = 42; // the paper's split seed
};

// Training settings (docs/DATA.md defaults, scaled where noted).
struct TrainingOptions {
    double learningRate
        = 0.0; // 0 = the method's paper default (full/bitfit/adapter/lora 3e-4, prompt 0.3, ladder 3e-3)
    std::int64_t epochs = 20;
    std::int64_t maxSteps = 0; // > 0: stop after this many optimizer steps (overrides epochs)
    std::int64_t batchSize = 100;
    std::int64_t gradientAccumulation = 1;
    std::int64_t warmupSteps = 500;
    double weightDecay = 0.0;
    double maxGradNorm = 1.0; // 0 = no clipping
    std::int64_t evalEverySteps = 0; // 0 = once per epoch
    std::int64_t maxSourceLength = 128;
    std::int64_t maxTargetLength = 0; // 0 = the longest tokenised label (+ eos), else 128
    bool bucketByLength = false;
    std::int64_t threads = 0; // CPU threads for this run (0 = LibTorch's default)
    std::string dtype = "fp32"; // "fp32", or "bf16": mixed precision (bf16 autocast on the run's device, fp32
                                // master weights and AdamW state)
    std::int64_t numBeams = 1; // evaluation decoding
    std::int64_t maxEvalExamples = 0; // > 0: evaluate on the first N examples of each split only
    std::int64_t logEverySteps = 1;
    // The run's full training state (train/TrainState.h) is saved every N optimizer steps (0: never by
    // count) and after every evaluation, for `ladder train --resume`. 500 is HF Trainer's save_steps. Not
    // part of the spec's identity (runSpecHash()).
    std::int64_t saveStateEverySteps = 500;
    // Data-parallel ranks on this machine (docs/SCALING.md): `ladder train` and the workbench's queue start
    // this many processes (one GPU each on CUDA, cuda:0..N-1), sharing each global batch of batchSize.
    // Written to JSON only when not 1, so that the specs of single-process runs keep their hashes.
    std::int64_t processes = 1;

    double learningRateFor(const std::string& method) const;
};

// A run: everything needed to reproduce it. Stored verbatim in the results store.
struct RunSpec {
    std::string name;
    std::string backbone = "demo"; // "demo" (the built-in demo backbone) or a HuggingFace folder
    TaskSpec task;
    MethodOptions method;
    TrainingOptions training;
    std::string device = "cpu"; // "cpu", "cuda", "cuda:N"
    std::uint64_t seed = 0;
    std::string store; // results store file; empty = the default store
    nlohmann::json raw; // the JSON this spec was read from

    // Errors name the field: "run.json: field training.batch_size: expected an integer >= 1".
    static RunSpec fromJson(const nlohmann::json& json, const std::string& source = "run spec");
    // "-" reads standard input (once: later calls with "-" parse the same text).
    static RunSpec fromFile(const std::string& path);
    nlohmann::json toJson() const;
    // The run's name: `name` when set, else defaultName().
    std::string displayName() const;
    // A name a person can read, from the method and the knobs that tell runs apart, then the seed
    // (docs/WORKBENCH.md, "Run names"): "LST r8 keep 9/12 · seed 0", "LoRA r16 qkvo+ff lr 1e-3 · seed 1",
    // "full lr 1e-3 · seed 0". The learning rate is named only when it is not the method's default.
    // `numLayers` (the backbone's layers per stack; 0: unknown) gives LST's kept layers as "k/n".
    std::string defaultName(std::int64_t numLayers = 0) const;
};

} // namespace ladder
