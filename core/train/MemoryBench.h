#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "model/T5Config.h"
#include "model/llama/LlamaConfig.h"
#include "peft/MethodOptions.h"
#include "train/MemoryEstimate.h"

namespace ladder {

// One training-memory measurement (docs/PERFORMANCE.md): real AdamW steps on random token ids, the
// peak of live tensor bytes over all steps (the steady state from step 2 on), and the static part.
struct MemoryBenchSpec {
    T5Config config;
    // A decoder-only backbone instead of `config` (random weights of this shape): the source and target are
    // joined into one causal sequence of sourceLength + targetLength - 1 columns (model/CausalJoin.h).
    std::optional<LlamaConfig> llama;
    std::int64_t batch = 8;
    std::int64_t sourceLength = 128;
    std::int64_t targetLength = 4;
    std::int64_t steps = 3; // at least 2: AdamW allocates its state inside the first step
    c10::Device device = c10::Device(c10::kCPU);
    std::uint64_t seed = 0;
    // "fp32", or "bf16": mixed precision (bf16 autocast on the device; fp32 weights, gradients and AdamW
    // state), as the trainer computes a bf16 run.
    std::string dtype = "fp32";
    // Timed no-grad forwards of the batch after the training steps (inference throughput); >= 1.
    std::int64_t inferenceRepeats = 3;
    // Vision-and-language (CLIP-T5, docs/VL.md): visualTokens random visual features of width visualDim per
    // example beside the text, and every method with its visual projection (MethodOptions::visualDim). The
    // analytic estimate does not price VL runs yet: the result's estimate stays empty. 0: text only.
    std::int64_t visualTokens = 0;
    std::int64_t visualDim = 0;
};

struct MemoryBenchResult {
    std::string method;
    MethodOptions options;
    std::int64_t totalParams = 0; // backbone + added modules
    std::int64_t backboneParams = 0; // the paper's denominator
    std::int64_t trainableParams = 0;
    std::uint64_t weightBytes = 0; // every parameter (frozen and trainable)
    std::uint64_t gradientBytes = 0; // one gradient per trainable parameter
    std::uint64_t optimizerBytes = 0; // AdamW: exp_avg + exp_avg_sq (+ step) per trainable parameter
    std::uint64_t staticBytes = 0; // weights + gradients + optimizer state
    std::uint64_t peakBytes = 0; // peak allocated over the steps, above the state before the model existed
    std::uint64_t peakReservedBytes = 0; // CUDA only (caching allocator)
    std::vector<std::uint64_t> stepPeaks; // peak of each step
    // Inference: the weights plus the peak of one no-grad, eval-mode forward of the same batch above the
    // live bytes before it (so the optimizer state, still alive, is not counted).
    std::uint64_t inferencePeakBytes = 0;
    // Mean wall time of one such forward (after one untimed warm-up) and the examples per second it gives.
    double inferenceSecondsPerBatch = 0.0;
    double inferenceExamplesPerSecond = 0.0;
    std::string dtype = "fp32";
    double secondsPerStep = 0.0; // mean over steps 2.. (step 1 allocates the optimizer state)
    std::string meterLabel;
    // The analytic estimate of the same step (MemoryEstimate.h), for its error against peakBytes.
    MemoryEstimate estimate;
    double estimateError() const
    {
        return peakBytes ? static_cast<double>(estimate.total) / static_cast<double>(peakBytes) - 1.0 : 0.0;
    }
    // peak - static: activations kept for backward and the transient peak of the backward pass.
    std::uint64_t activationBytes() const { return peakBytes > staticBytes ? peakBytes - staticBytes : 0; }
};

// Measures one method from a clean state (everything it builds is freed before it returns). LST with init
// fisher is built with init random (the peak does not depend on the initial side weights).
// `progress` (optional) is told "method: step k/n" lines.
MemoryBenchResult measureTrainingMemory(const MemoryBenchSpec& spec, const MethodOptions& options,
    const std::function<void(const std::string&)>& progress = {});

} // namespace ladder
