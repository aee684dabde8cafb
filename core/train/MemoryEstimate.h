#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/T5Config.h"
#include "model/llama/LlamaConfig.h"
#include "peft/MethodOptions.h"

namespace ladder {

// Analytic model of the peak training memory of one method (issue 5): no tensor is allocated, so it is
// cheap enough to recompute on every keystroke of a form. See docs/PERFORMANCE.md, "Memory estimate", for
// the terms and their derivation from what autograd saves for backward.
struct MemoryEstimateInput {
    T5Config config; // the backbone shape; config.dropoutRate > 0 adds dropout masks in train mode
    // A decoder-only backbone (Llama, Mistral, Qwen2) instead of `config`: the step is replayed as
    // model/llama/LlamaModel.cpp and peft/Decoder*.cpp run it, on the causal sequence of srcLen + tgtLen - 1
    // columns (model/CausalJoin.h). Llama has no dropout, so nothing depends on a dropout rate.
    std::optional<LlamaConfig> llama;
    MethodOptions method; // method and its options (validated against config)
    std::int64_t batch = 8;
    std::int64_t srcLen = 128;
    std::int64_t tgtLen = 4;
    // "fp32", or "bf16": mixed precision as the trainer runs it (fp32 weights, gradients and AdamW state;
    // bf16 autocast around the forward, so linear and matmul compute in bf16 on bf16 copies of their
    // operands)
    std::string dtype = "fp32";
    std::string optimizer = "adamw"; // "adamw" (two moments per trainable value) or "sgd" (no state)
    // Micro-batches per optimizer step (the trainer's gradient_accumulation): above 1, every micro-batch
    // after a group's first runs with the gradients of the ones before it live, summed into in the backward.
    std::int64_t gradientAccumulation = 1;
    std::string device = "cpu"; // "cpu" or "cuda[:N]": CPU dropout keeps a mask in the activation dtype,
                                // CUDA keeps a 1-byte mask
    // CUDA: bytes of PyTorch's workspace per cuBLAS handle on the target device (cuda::cublasWorkspaceBytes()
    // where one is present); 0 = PyTorch's default for Hopper, 32 MiB. The estimate itself never asks a
    // device, so it is safe on any thread (the workbench recomputes it on every edit of its form).
    std::uint64_t cudaWorkspaceBytes = 0;
    // A rank of a data-parallel run (docs/SCALING.md): GradientSync's buckets, one fp32 copy of the
    // trainable gradients plus a presence count per trainable tensor, live from the start.
    bool dataParallel = false;
};

// Bytes, all on one device. total = frozenWeights + trainableWeights + optimizerState + batchInputs
// + gradientsAtPeak + activationsAtPeak + cudaWorkspaces + gradientBuckets + transient (the composition of
// live memory at the peak moment). On CUDA every allocation is counted as the caching allocator counts it,
// rounded up to 512 bytes; the per-term figures above stay the exact tensor bytes and the rounding lands in
// transient.
struct MemoryEstimate {
    std::int64_t totalParams = 0; // every parameter that takes memory (backbone + added modules)
    std::int64_t trainableParams = 0; // as Method::trainableParameterCount()
    std::uint64_t frozenWeights = 0; // parameters that do not train
    std::uint64_t trainableWeights = 0; // parameters that train
    std::uint64_t gradients = 0; // one gradient per trainable parameter (all of them, after backward)
    std::uint64_t optimizerState = 0; // AdamW exp_avg + exp_avg_sq, fp32
    std::uint64_t batchInputs = 0; // token ids, mask and labels of the batch (int64)
    std::uint64_t activations = 0; // tensors saved for backward, at the end of the forward pass
    std::uint64_t gradientsAtPeak = 0; // parameter gradients already produced at the peak moment
    std::uint64_t activationsAtPeak = 0; // saved tensors not yet released at the peak moment
    std::uint64_t transient = 0; // in-flight buffers at the peak (activation gradients, scratch)
    // CUDA only: the cuBLAS workspaces PyTorch allocates through the caching allocator, one per cuBLAS
    // handle: the forward's thread and the autograd engine's CUDA device thread (the backward), so two.
    std::uint64_t cudaWorkspaces = 0;
    std::uint64_t gradientBuckets = 0; // a data-parallel rank's all-reduce buckets (dataParallel)
    std::uint64_t total = 0; // the estimated peak of live tensor bytes during a training step
    // activations split by part of the model, in forward order ("encoder embeddings", "encoder block 0",
    // ..., "decoder block 5", "side encoder block 1", "lm head and loss", ...); they sum to activations.
    std::vector<std::pair<std::string, std::uint64_t>> activationsPerPart;
    // Where the peak happens: "forward: encoder block 3", "backward: decoder block 5",
    // "optimizer step", ...
    std::string peakWhere;

    std::uint64_t weights() const { return frozenWeights + trainableWeights; }
    std::uint64_t staticBytes() const { return weights() + gradients + optimizerState; }
};

// Throws ladder::Error naming the field for a bad input (unknown method, dtype or optimizer, a
// non-positive batch or length, options that do not fit the config).
MemoryEstimate estimateTrainingMemory(const MemoryEstimateInput& input);

} // namespace ladder
