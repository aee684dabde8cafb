#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ladder {

// One tensor of a traced computation: sizes only, no data.
struct TraceTensor {
    int value = -1; // unique id (a view is a new value over the same storage)
    int storage = -1; // -1 for parameters, whose memory is static
    int param = -1; // parameter index, or -1
    std::int64_t bytes = 0;
    std::int64_t elemBytes = 4;
    bool requiresGrad = false;
    bool defined() const { return value >= 0; }
    std::int64_t numel() const { return bytes / elemBytes; }
};

// A symbolic replay of a LibTorch training step for memory accounting (used by MemoryEstimate): the
// forward records tensors, their storages, who holds them (the calling code or a backward node that saved
// them) and the backward nodes; backward() then runs the nodes in reverse creation order, as the autograd
// engine does on one device, allocating and releasing gradients and saved tensors; optimizerStep() adds
// AdamW's work buffers. Live bytes and their peak are tracked throughout.
class AutogradTrace {
public:
    // How a backward node produces the gradient of one input.
    enum class Grad {
        New, // a fresh buffer of the input's size
        Same, // the output's gradient itself (add, views, clone): no allocation when the sizes match
        Part, // a view into the output's gradient (cat's inputs): no allocation whatever the sizes
    };

    // Parameters (weights) and batch data exist before the step.
    TraceTensor parameter(
        std::int64_t numel, std::int64_t elemBytes, bool trainable, const std::string& name);
    TraceTensor data(std::int64_t bytes);

    // Grad mode (at::NoGradGuard): with it off, nothing requires grad and no node is recorded.
    void setGradMode(bool on) { m_gradMode = on; }
    bool gradMode() const { return m_gradMode; }
    // The label under which new saved tensors and nodes are reported ("encoder block 3").
    void setPart(const std::string& part) { m_part = part; }
    const std::string& part() const { return m_part; }

    // A new tensor computed from `inputs`. The node is recorded when grad mode is on and an input
    // requires grad; it then keeps `saved` alive until backward runs it. scratch: extra bytes its backward
    // allocates briefly (reductions of broadcast gradients and the like). saveOutput: the node keeps its own
    // result (softmax, relu, tanh, rsqrt).
    TraceTensor compute(std::int64_t numel, std::int64_t elemBytes, const std::vector<TraceTensor>& inputs,
        const std::vector<TraceTensor>& saved = {}, Grad grad = Grad::New, std::int64_t scratch = 0,
        bool saveOutput = false);
    // A view of `t` (same storage, same bytes): reshape, transpose, unsqueeze.
    TraceTensor view(const TraceTensor& t);
    // A narrower view of `t` (narrow, slice) of `numel` elements: no allocation in the forward; its backward
    // (slice_backward) allocates a zero gradient of t's whole size and copies the slice's gradient into it.
    TraceTensor narrow(const TraceTensor& t, std::int64_t numel);
    // A recomputed unit (model/Recompute.h checkpointed()): with grad mode on, fn runs without grad (its
    // intermediates come and go), one node keeps the inputs' storages and, when the backward reaches it,
    // replays fn with grad on detached leaves of the inputs, runs the backward of what the replay recorded
    // from the replay's output (the node's incoming gradient), releases everything the replay made, and
    // hands the leaves' gradients to the inputs. With grad mode off it is fn(inputs). Inputs may be
    // undefined. The replay runs in backward with the phase "backward" and the node's part.
    using Replay = std::function<TraceTensor(const std::vector<TraceTensor>&)>;
    TraceTensor checkpoint(const std::vector<TraceTensor>& inputs, const Replay& fn);
    // Whether a unit's replay (its recomputation in backward) is being traced now.
    bool replaying() const { return m_replayDepth > 0; }
    // The calling code drops its reference to t (a C++ local going out of scope).
    void release(const TraceTensor& t);
    // Releases every reference the code holds, except to `keep` (the end of Method::forward).
    void releaseAllBut(const std::vector<TraceTensor>& keep);

    // Runs the backward pass from the scalar `loss`.
    void backward(const TraceTensor& loss);
    // AdamW's step over the trainable parameters: sqrt(exp_avg_sq) and its quotient coexist briefly.
    void optimizerStep(bool adamw);

    // Results.
    std::int64_t liveBytes() const { return m_live; }
    std::int64_t peakBytes() const { return m_peak; }
    const std::string& peakWhere() const { return m_peakWhere; }
    std::int64_t savedBytes() const; // saved tensors alive now
    std::vector<std::pair<std::string, std::int64_t>> savedByPart() const; // in first-seen order
    std::int64_t peakSaved() const { return m_peakSaved; }
    std::int64_t peakParamGrads() const { return m_peakParamGrads; }
    std::int64_t peakData() const { return m_peakData; }

    struct Param {
        std::string name;
        std::int64_t numel = 0;
        std::int64_t elemBytes = 4;
        bool trainable = false;
        std::int64_t storedBytes = -1; // a frozen matrix held as bf16/int8/int4 (backbone_dtype)
        std::int64_t storedAllocation = 0; // the same, each of its tensors rounded by the allocator
        std::int64_t bytes() const { return storedBytes >= 0 ? storedBytes : numel * elemBytes; }
    };
    // The bytes a frozen parameter takes in its storage (its numel stays the parameter count).
    // parts: the bytes of each tensor of the storage (data, scale, zero).
    void setStoredBytes(const TraceTensor& t, const std::vector<std::int64_t>& parts);
    // The backward of the node that made `out` allocates `before` bytes briefly before its gradients and
    // holds `during` bytes while it allocates them (a quantised matmul's dequantised chunks).
    void setBackwardTransient(const TraceTensor& out, std::int64_t before, std::int64_t during);
    // Bytes that exist for a moment now (a forward's temporaries that no TraceTensor stands for).
    void transient(std::int64_t bytes)
    {
        add(allocationBytes(bytes), m_phase.c_str());
        sub(allocationBytes(bytes));
    }
    const std::vector<Param>& params() const { return m_params; }
    // Every trainable parameter has a gradient already (gradient accumulation: an earlier micro-batch's),
    // live from now on; the backward sums into it.
    void presetParamGrads();
    // Unfreezes (or freezes) a parameter before the forward is traced.
    void setTrainable(TraceTensor& t, bool on);
    // Static bytes counted in live memory from the start (weights and optimizer state), already rounded.
    void addStatic(std::int64_t bytes);

    // The allocator's granularity: every tensor allocation is counted as its size rounded up to a multiple of
    // it (at least one granule). 1 on the CPU (the tracking allocator counts requested bytes); 512 on CUDA,
    // where PyTorch's caching allocator rounds each block up to 512 bytes and counts the block.
    void setAllocationGranularity(std::int64_t bytes) { m_granule = bytes; }
    // A parameter's later gradient contributions are summed into its .grad in place (true) or out of place,
    // old + new, with one extra buffer while both exist (false, the default: measured for fp32).
    void setInPlaceAccumulation(bool on) { m_inPlaceAccumulation = on; }
    std::int64_t allocationBytes(std::int64_t bytes) const
    {
        if (m_granule <= 1)
            return bytes;
        return std::max<std::int64_t>(m_granule, (bytes + m_granule - 1) / m_granule * m_granule);
    }

private:
    struct Storage {
        std::int64_t bytes = 0;
        int codeRefs = 0;
        int savedRefs = 0;
        bool isData = false;
        bool alive = true;
        std::string part;
    };
    struct Input {
        int value;
        int param;
        std::int64_t bytes;
        Grad grad;
    };
    struct Node {
        int outValue;
        std::int64_t outBytes;
        std::vector<Input> inputs;
        std::vector<int> saved; // storages
        std::int64_t scratch;
        std::string part;
        std::int64_t before = 0; // setBackwardTransient
        std::int64_t during = 0;
        std::shared_ptr<Replay> replay; // a checkpoint node
        std::vector<TraceTensor> replayInputs;
    };
    struct Buffer {
        std::int64_t bytes;
        int refs;
    };
    int newStorage(std::int64_t bytes, bool isData);
    // The backward over nodes [begin, end), last first, with the gradients in m_valueGrad.
    void runNodes(std::size_t begin, std::size_t end);
    void replayNode(std::size_t index, int gradBuffer);
    int newBuffer(std::int64_t requested);
    void dropBuffer(int b);
    // Sums gradient buffer g into the slot of value `value` (in place when the slot is not shared).
    void accumulate(int value, int g, std::int64_t bytes);
    std::vector<Buffer> m_buffers;
    std::vector<int> m_valueGrad;
    int m_replayDepth = 0;
    std::set<int> m_leafValues; // detached leaves of replays (AccumulateGrad semantics)
    void unref(int storage, bool saved);
    void add(std::int64_t bytes, const char* phase);
    void sub(std::int64_t bytes) { m_live -= bytes; }

    std::vector<Storage> m_storages;
    std::vector<int> m_valueStorage;
    std::vector<int> m_codeHeld; // values the code holds
    std::vector<Node> m_nodes;
    std::vector<Param> m_params;
    std::vector<char> m_paramHasGrad;
    bool m_gradMode = true;
    std::int64_t m_granule = 1;
    bool m_inPlaceAccumulation = false;
    std::string m_part;
    std::string m_phase = "forward";
    std::int64_t m_live = 0;
    std::int64_t m_peak = 0;
    std::string m_peakWhere;
    std::int64_t m_saved = 0;
    std::int64_t m_paramGrads = 0;
    std::int64_t m_data = 0;
    std::int64_t m_peakSaved = 0;
    std::int64_t m_peakParamGrads = 0;
    std::int64_t m_peakData = 0;
};

} // namespace ladder
