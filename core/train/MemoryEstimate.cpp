#include "train/MemoryEstimate.h"

#include "train/MemoryEstimateReplay.h"
#include "util/Error.h"

// The analytic estimate: the parameters (MemoryEstimateParams.cpp), the forward replay
// (MemoryEstimateOps.cpp), then here the backward, the optimizer step and the terms of the peak.

namespace ladder {
namespace estimate_detail {

MemoryEstimate Estimator::run()
{
    if (!isKnownMethod(m_in.method.method))
        throw Error("memory estimate: field method: unknown method '" + m_in.method.method + "'");
    if (m_in.llama) {
        m_in.llama->validate();
        m_in.method.validate(m_in.llama->shape());
    } else {
        m_in.config.validate();
        m_in.method.validate(m_in.config);
    }
    if (m_in.batch < 1)
        throw Error(
            "memory estimate: field batch: expected a positive integer, got " + std::to_string(m_in.batch));
    if (m_in.srcLen < 1)
        throw Error("memory estimate: field src_len: expected a positive integer, got "
            + std::to_string(m_in.srcLen));
    if (m_in.tgtLen < 1)
        throw Error("memory estimate: field tgt_len: expected a positive integer, got "
            + std::to_string(m_in.tgtLen));
    if (m_in.gradientAccumulation < 1)
        throw Error("memory estimate: field gradient_accumulation: expected a positive integer, got "
            + std::to_string(m_in.gradientAccumulation));
    const bool adamw = m_in.optimizer == "adamw";
    if (!adamw && m_in.optimizer != "sgd")
        throw Error("memory estimate: field optimizer: expected adamw or sgd, got '" + m_in.optimizer + "'");

    if (m_cuda)
        m_trace.setAllocationGranularity(512); // PyTorch's CUDA caching allocator: kMinBlockSize
    if (m_amp)
        m_trace.setInPlaceAccumulation(true);
    if (m_in.llama) {
        buildLlama();
        applyLlamaMethod();
    } else {
        buildBackbone();
        applyMethod();
    }
    applyBackboneStorage();

    MemoryEstimate r;
    for (const auto& p : m_trace.params()) {
        const auto bytes = static_cast<std::uint64_t>(p.bytes());
        r.totalParams += p.numel;
        if (p.trainable) {
            r.trainableParams += p.numel;
            r.trainableWeights += bytes;
        } else {
            r.frozenWeights += bytes;
        }
    }
    r.gradients = static_cast<std::uint64_t>(r.trainableParams) * static_cast<std::uint64_t>(m_e);
    r.optimizerState = adamw ? 2 * r.trainableWeights : 0;
    // Live from the start: each weight and each AdamW moment is its own allocation (rounded on CUDA).
    std::int64_t staticBytes = 0;
    for (const auto& p : m_trace.params())
        staticBytes += p.storedBytes >= 0
            ? p.storedAllocation
            : m_trace.allocationBytes(p.numel * p.elemBytes) * (p.trainable && adamw ? 3 : 1);
    if (m_cuda) {
        // Two cuBLAS handles (the forward's thread and autograd's CUDA device thread), each with PyTorch's
        // workspace, allocated at their first product and kept: the caller's figure for its device, else
        // PyTorch's default for Hopper (sm_90: 4096 KiB x 8), the GPU LadderBench's kit measures on.
        constexpr std::uint64_t kHopperDefaultWorkspace = 4096ull * 8 * 1024;
        const auto perHandle = m_in.cudaWorkspaceBytes ? m_in.cudaWorkspaceBytes : kHopperDefaultWorkspace;
        r.cudaWorkspaces = 2 * perHandle;
        staticBytes += static_cast<std::int64_t>(r.cudaWorkspaces);
    }
    if (m_in.dataParallel) {
        // dist/GradientSync's buckets: the trainable tensors in reverse order, cut at 1 MiB for the first
        // bucket and 25 MiB after it; each bucket one allocation of its elements and a count per tensor.
        constexpr std::int64_t kFirstCap = 1 << 20, kCap = 25 << 20;
        std::vector<std::int64_t> buckets;
        std::int64_t bytes = 0, cap = kFirstCap;
        const auto& params = m_trace.params();
        for (auto it = params.rbegin(); it != params.rend(); ++it) {
            if (!it->trainable)
                continue;
            const auto size = it->numel * 4;
            if (buckets.empty() || (bytes > 0 && bytes + size > cap)) {
                if (!buckets.empty())
                    cap = kCap;
                buckets.push_back(0);
                bytes = 0;
            }
            buckets.back() += it->numel + 1;
            bytes += size;
        }
        for (const auto elements : buckets)
            r.gradientBuckets += static_cast<std::uint64_t>(m_trace.allocationBytes(elements * 4));
        staticBytes += static_cast<std::int64_t>(r.gradientBuckets);
    }
    for (const auto& [param, bytes] : m_prepacked) {
        m_kernelPacked[param] = true;
        staticBytes += bytes;
    }
    m_trace.addStatic(staticBytes);
    if (m_in.gradientAccumulation > 1)
        m_trace.presetParamGrads(); // a later micro-batch of the group: the earlier ones' gradients are live

    const auto b = m_in.batch;
    m_ids = m_trace.data(b * m_in.srcLen * 8);
    m_mask = m_trace.data(b * m_in.srcLen * 8);
    m_labels = m_trace.data(b * m_in.tgtLen * 8);
    r.batchInputs = static_cast<std::uint64_t>((2 * b * m_in.srcLen + b * m_in.tgtLen) * 8);

    const auto loss = m_in.llama         ? forwardDecoder()
        : m_in.method.method == "ladder" ? forwardLadder()
                                         : forwardBaseline();
    m_trace.setPart("");
    m_trace.releaseAllBut({ loss }); // MethodOutput and every local of the forward are gone
    m_castCache.clear(); // the autocast region ended with the forward
    r.activations = static_cast<std::uint64_t>(m_trace.savedBytes());
    for (const auto& [part, bytes] : m_trace.savedByPart())
        r.activationsPerPart.emplace_back(part, static_cast<std::uint64_t>(bytes));
    m_trace.backward(loss);
    m_trace.optimizerStep(adamw);

    r.total = static_cast<std::uint64_t>(m_trace.peakBytes());
    r.gradientsAtPeak = static_cast<std::uint64_t>(m_trace.peakParamGrads());
    r.activationsAtPeak = static_cast<std::uint64_t>(m_trace.peakSaved());
    const auto accounted = r.weights() + r.optimizerState + r.batchInputs + r.gradientsAtPeak
        + r.activationsAtPeak + r.cudaWorkspaces + r.gradientBuckets;
    r.transient = r.total > accounted ? r.total - accounted : 0;
    r.peakWhere = m_trace.peakWhere();
    return r;
}

} // namespace estimate_detail

MemoryEstimate estimateTrainingMemory(const MemoryEstimateInput& input)
{
    if (input.method.visualDim > 0)
        throw Error(
            "method options: field visual_dim: the memory estimate does not price vision-and-language "
            "runs yet (docs/VL.md; ladder bench memory --vl measures them)");
    estimate_detail::Estimator first(input);
    auto r = first.run();
    if (first.packed().empty())
        return r;
    // A step after the first: the int4 kernel packings exist from its start (the trainer's steady state,
    // and the peak the meter reports over a bench's steps).
    estimate_detail::Estimator later(input);
    later.prepack(first.packed());
    return later.run();
}

} // namespace ladder
