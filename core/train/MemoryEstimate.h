#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/T5Config.h"
#include "peft/MethodOptions.h"

namespace ladder {

// Analytic model of the peak training memory of one method (issue 5): no tensor is allocated, so it is
// cheap enough to recompute on every keystroke of a form. See docs/PERFORMANCE.md, "Memory estimate", for
// the terms and their derivation from what autograd saves for backward.
struct MemoryEstimateInput {
    T5Config config;      // the backbone shape; config.dropoutRate > 0 adds dropout masks in train mode
    MethodOptions method; // method and its options (validated against config)
    std::int64_t batch = 8;
    std::int64_t srcLen = 128;
    std::int64_t tgtLen = 4;
    std::string dtype = "fp32";      // weights and activations: "fp32", "bf16" or "fp16"
    std::string optimizer = "adamw"; // "adamw" (two fp32-sized moments per trainable value) or "sgd" (none)
    std::string device = "cpu";      // "cpu" or "cuda[:N]": documented only (the model counts tensor bytes)
};

// Bytes, all on one device.
struct MemoryEstimate {
    std::int64_t totalParams = 0;     // every parameter that takes memory (backbone + added modules)
    std::int64_t trainableParams = 0; // as Method::trainableParameterCount()
    std::uint64_t frozenWeights = 0;    // parameters that do not train
    std::uint64_t trainableWeights = 0; // parameters that train
    std::uint64_t gradients = 0;        // one gradient per trainable parameter
    std::uint64_t optimizerState = 0;   // AdamW exp_avg + exp_avg_sq (+ the step counters)
    std::uint64_t batchInputs = 0;      // token ids, mask and labels of the batch
    std::uint64_t activations = 0;      // tensors saved for backward at the end of the forward pass
    std::uint64_t transient = 0;        // the extra live bytes at the worst moment of the step
    std::uint64_t total = 0;            // the estimated peak: the sum of every term above
    // activations split by part of the model, in forward order: "encoder embeddings",
    // "encoder block 0", ..., "decoder block 5", "side encoder block 1", "logits and loss", ...
    std::vector<std::pair<std::string, std::uint64_t>> activationsPerPart;
    // What `transient` is: "backward of the LM head (logits gradient)", ...
    std::string transientWhere;

    std::uint64_t staticBytes() const { return frozenWeights + trainableWeights + gradients + optimizerState; }
};

// Throws ladder::Error naming the field for a bad input (unknown method, dtype or optimizer, a
// non-positive batch or length, options that do not fit the config).
MemoryEstimate estimateTrainingMemory(const MemoryEstimateInput& input);

// Bytes per element of "fp32" / "bf16" / "fp16"; throws ladder::Error naming the field dtype otherwise.
std::int64_t dtypeBytes(const std::string& dtype);

} // namespace ladder
