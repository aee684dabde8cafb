#pragma once

// Private to the memory estimator (MemoryEstimate.cpp, MemoryEstimateParams.cpp, MemoryEstimateOps.cpp):
// the replay's parameter records and the Estimator that replays one training step.
// The estimator replays LadderBench's training step symbolically (AutogradTrace): the same modules, the
// same ATen calls in the same order, each with the tensors its autograd node saves for backward (the rules
// of PyTorch's derivatives.yaml: mm saves an input only when the other operand needs a gradient, softmax,
// relu and tanh save their result, gelu and silu their input, CPU dropout a mask in the activation dtype,
// CUDA dropout a 1-byte mask, reshape of a transposed head view copies). With dtype bf16 it replays
// mixed precision as the trainer runs it: fp32 weights, bf16 autocast around the forward (linear and
// matmul cast their fp32 operands to bf16 copies; a trainable weight's copy is cached for the forward, a
// frozen one's is made at each use; every other op follows PyTorch's type promotion). docs/PERFORMANCE.md
// explains the terms.
// MemoryEstimateParams.cpp builds the parameters (the backbone, then what each method adds or unfreezes),
// MemoryEstimateOps.cpp replays the forward op by op, MemoryEstimate.cpp runs the step and sums the terms.

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/T5Config.h"
#include "model/llama/LlamaConfig.h"
#include "peft/Ladder.h"
#include "train/AutogradTrace.h"
#include "train/MemoryEstimate.h"

namespace ladder::estimate_detail {

using Grad = AutogradTrace::Grad;

struct LinearP {
    TraceTensor w, b, loraA, loraB;
    std::int64_t in = 0, out = 0, rank = 0;
    // A torch::nn::Linear (libtorch's F::linear: matmul, then `output += bias`), not at::linear: autocast
    // does not cast the bias of that add.
    bool module = false;
};
struct NormP {
    TraceTensor w, b;
    std::int64_t dim = 0;
};
struct AdapterP {
    bool present = false;
    LinearP down, up;
    std::string activation;
};
struct AttentionP {
    LinearP q, k, v, o;
    TraceTensor relBias;
};
struct LayerAttentionP {
    AttentionP attn;
    NormP norm;
    AdapterP adapter;
};
struct FeedForwardP {
    LinearP wi, wi0, wi1, wo;
    NormP norm;
    AdapterP adapter;
};
struct BlockP {
    LayerAttentionP self, cross;
    bool decoder = false;
    FeedForwardP ff;
};
struct StackP {
    std::vector<BlockP> blocks;
    NormP finalNorm;
};
// One side stack of LST, keyed by backbone layer index.
struct SideStackP {
    bool present = false;
    LinearP downEmbed;
    std::map<std::int64_t, LinearP> down;
    std::map<std::int64_t, TraceTensor> gate;
    std::map<std::int64_t, BlockP> blocks;
    std::map<std::int64_t, NormP> adapterNorm;
    std::map<std::int64_t, LinearP> adapterDown, adapterUp;
    std::map<std::int64_t, LayerAttentionP> ladderAttention;
    NormP finalNorm;
    std::vector<std::int64_t> keep;
    bool decoder = false;
};

// A layer of a decoder-only backbone (model/llama/LlamaModel.h, HF names) or of LST's side decoder.
struct LlamaLayerP {
    LinearP q, k, v, o, gate, up, down;
    NormP inputNorm, postNorm;
    AdapterP attnAdapter, mlpAdapter;
};
// Dimensions of a causal stack (the backbone's, or LST's side decoder's).
struct LlamaDims {
    std::int64_t d = 0, heads = 0, kvHeads = 0, headDim = 0, inter = 0;
};
// What llamaAttentionInputs gives every layer: the rotary tables (float32) and the allowed mask (bool).
struct LlamaInputsT {
    TraceTensor cos, sin, allowed;
};

// A frozen matrix held in backbone_dtype storage (model/QuantizedWeight.h).
struct QuantP {
    std::string dtype; // "bf16", "int8", "int4"
    std::int64_t rows = 0, cols = 0, group = 0;
    std::int64_t groups() const { return dtype == "int4" ? cols / group : 0; }
};

// Dimensions of one stack (backbone or side).
struct Dims {
    std::int64_t d, dKv, heads, dFf, buckets;
    std::string act;
    bool gated;
    double dropout;
    bool recomputeAttention = false; // LST's side_attention sdpa (model/Recompute.h)
};

inline Dims dimsOf(const T5Config& c)
{
    return { c.dModel, c.dKv, c.numHeads, c.dFf, c.relativeAttentionNumBuckets, c.denseActFn(),
        c.isGatedAct(), c.dropoutRate };
}

class Estimator {
public:
    Estimator(const MemoryEstimateInput& in)
        : m_in(in)
        , m_amp(in.dtype == "bf16")
    {
        if (in.dtype != "fp32" && in.dtype != "bf16")
            throw Error("memory estimate: field dtype: expected fp32 or bf16 (mixed precision), got '"
                + in.dtype + "'");
        const auto& dev = in.device;
        if (dev == "cpu")
            m_cuda = false;
        else if (dev.rfind("cuda", 0) == 0)
            m_cuda = true;
        else
            throw Error("memory estimate: field device: expected cpu or cuda[:N], got '" + dev + "'");
    }

    MemoryEstimate run();
    // The int4 kernel packings (model/QuantizedWeight.h) are made at a matrix's first kernel product and
    // kept: run() replays the first step, where they appear as it goes. Every later step starts with them:
    // packed() after one run() gives them, prepack() before another run() makes them static from its start.
    const std::map<int, std::int64_t>& packed() const { return m_kernelPackedBytes; }
    void prepack(const std::map<int, std::int64_t>& packed) { m_prepacked = packed; }

private:
    // ---- parameters ------------------------------------------------------------------------------
    TraceTensor param(std::int64_t numel, bool trainable, const std::string& name)
    {
        return m_trace.parameter(numel, m_e, trainable, name);
    }
    LinearP linearP(std::int64_t in, std::int64_t out, bool trainable, bool bias, const std::string& name)
    {
        LinearP p;
        p.in = in;
        p.out = out;
        p.w = param(in * out, trainable, name + ".weight");
        if (bias)
            p.b = param(out, trainable, name + ".bias");
        return p;
    }
    NormP normP(std::int64_t dim, bool trainable, const std::string& name)
    {
        NormP p;
        p.dim = dim;
        p.w = param(dim, trainable, name + ".weight");
        return p;
    }
    AttentionP attentionP(const Dims& dm, bool relBias, bool trainable, const std::string& name);
    BlockP blockP(const Dims& dm, bool decoder, bool relBias, bool trainable, const std::string& name);
    StackP stackP(const Dims& dm, bool decoder, std::int64_t layers, bool trainable, const std::string& name);
    SideStackP sideStackP(const LadderSideOptions& o, bool decoder, const std::string& name);
    void buildBackbone();
    void applyMethod();
    // backbone_dtype: every frozen backbone matrix (projections, shared embedding, untied LM head) stored.
    void applyBackboneStorage();

    // ---- operations ------------------------------------------------------------------------------
    TraceTensor compute(std::int64_t numel, std::int64_t elem, const std::vector<TraceTensor>& inputs,
        const std::vector<TraceTensor>& saved = {}, Grad grad = Grad::New, std::int64_t scratch = 0,
        bool saveOutput = false)
    {
        return m_trace.compute(numel, elem, inputs, saved, grad, scratch, saveOutput);
    }
    // Saved only when `needed` requires grad.
    static TraceTensor ifGrad(const TraceTensor& needed, const TraceTensor& saved)
    {
        return needed.defined() && needed.requiresGrad ? saved : TraceTensor {};
    }
    // Autocast's cast of an fp32 operand of linear/matmul to bf16: a new tensor (ToCopyBackward saves
    // nothing); x itself without autocast or when it is bf16 already. The caller releases what it got.
    TraceTensor lowp(const TraceTensor& x)
    {
        if (!m_amp || x.elemBytes != 4)
            return x;
        return compute(x.numel(), 2, { x });
    }
    // The same for a weight: a trainable one's copy is cached (autocast caches casts of leaves that require
    // grad until its region ends), a frozen one's is made at each use.
    TraceTensor lowpParam(const TraceTensor& w)
    {
        if (!m_amp || !w.defined())
            return w;
        // (autocast caches the cast of a leaf that requires grad with or without grad mode: a checkpointed
        // unit's no-grad forward fills the cache too)
        if (!w.requiresGrad)
            return compute(w.numel(), 2, { w });
        auto it = m_castCache.find(w.param);
        if (it == m_castCache.end())
            it = m_castCache.emplace(w.param, compute(w.numel(), 2, { w })).first;
        return it->second;
    }
    void releaseCast(const TraceTensor& cast, const TraceTensor& original)
    {
        if (!cast.defined() || cast.value == original.value)
            return;
        if (original.param >= 0 && m_castCache.count(original.param)
            && m_castCache.at(original.param).value == cast.value)
            return; // held by the cache until the forward ends
        m_trace.release(cast);
    }
    // Element bytes of an op's result: autocast's bf16 for linear/matmul, else type promotion.
    std::int64_t productElem() const { return m_amp ? 2 : 4; }
    static std::int64_t promoted(const TraceTensor& a, const TraceTensor& b)
    {
        return std::max(a.defined() ? a.elemBytes : 0, b.defined() ? b.elemBytes : 0);
    }
    // at::linear(x, w, b): under autocast on the bf16 copies; the product saves the input for the weight's
    // gradient and the weight for the input's (static without autocast, a bf16 copy with it).
    TraceTensor product(
        const TraceTensor& x, const TraceTensor& w, const TraceTensor& b, std::int64_t in, std::int64_t out);
    TraceTensor linear(const TraceTensor& x, const LinearP& p);
    // x W^T (+ b) with W in backbone_dtype storage: QuantizedWeight::matmul's allocations (its header).
    TraceTensor quantizedProduct(
        const TraceTensor& x, const TraceTensor& w, const TraceTensor& b, const QuantP& q);
    // The frozen shared embedding's lookup of n ids (QuantizedWeight::embedding when it is stored).
    TraceTensor embedLookup(std::int64_t n, const TraceTensor& ids);
    TraceTensor dropout(const TraceTensor& x, double p, bool training);
    TraceTensor activation(const TraceTensor& x, const std::string& act);
    TraceTensor norm(const TraceTensor& x, const NormP& p);
    TraceTensor adapter(const TraceTensor& x, const AdapterP& p);
    TraceTensor add(const TraceTensor& a, const TraceTensor& b)
    {
        return compute(std::max(a.numel(), b.numel()), promoted(a, b), { a, b }, {}, Grad::Same);
    }
    TraceTensor attention(const TraceTensor& x, const TraceTensor& kv, std::int64_t batch, std::int64_t q,
        std::int64_t k, const TraceTensor& bias, const AttentionP& p, const Dims& dm, bool training);
    TraceTensor layerAttention(const TraceTensor& x, const TraceTensor& kv, std::int64_t batch,
        std::int64_t q, std::int64_t k, const TraceTensor& bias, const LayerAttentionP& p, const Dims& dm,
        bool training);
    TraceTensor residual(
        const TraceTensor& x, TraceTensor out, const AdapterP& adapter, const Dims& dm, bool training);
    TraceTensor feedForward(const TraceTensor& x, const FeedForwardP& p, const Dims& dm, bool training);
    TraceTensor block(const TraceTensor& x, std::int64_t batch, std::int64_t len, const TraceTensor& selfBias,
        const TraceTensor& encoder, std::int64_t encLen, const TraceTensor& crossBias, const BlockP& p,
        const Dims& dm, bool training);
    // The extended self-attention mask plus the relative position bias, (batch, heads, len, len).
    TraceTensor positionBias(
        std::int64_t batch, std::int64_t len, const TraceTensor& relBias, std::int64_t heads, bool decoder);
    // Backbone stack; returns the final (normed, dropped-out) output; `keep` block outputs go to ladders.
    TraceTensor stack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len, const StackP& p,
        bool decoder, const TraceTensor& encoder, std::int64_t encLen, bool training,
        const std::vector<std::int64_t>* keep, std::map<std::int64_t, TraceTensor>* ladders,
        const std::string& name);
    // A checkpointed unit (AutogradTrace::checkpoint) whose replay in backward has its own autocast cache:
    // model/Recompute.h ends the recomputation's autocast region (clearing the cache) before its backward.
    TraceTensor checkpointUnit(const std::vector<TraceTensor>& inputs, const AutogradTrace::Replay& fn);
    // Down_i(ladder); a bf16 ladder without autocast goes through a checkpointed cast + linear.
    TraceTensor downsampleLadder(const TraceTensor& ladder, const LinearP& p);
    // One kept side layer i of LadderSideStackImpl::sideLayer; returns the new side state.
    TraceTensor sideLayer(std::int64_t i, const SideStackP& p, const TraceTensor& side,
        const TraceTensor& ladder, const TraceTensor& selfBias, const TraceTensor& sideEncoder,
        const TraceTensor& crossBias, std::int64_t batch, std::int64_t len, std::int64_t encLen);
    // The attention core softmax(q k^T + bias) @ v on the head views; returns the (batch, heads, q, d_kv)
    // product (its own storage).
    TraceTensor attentionCore(const TraceTensor& query, const TraceTensor& key, const TraceTensor& value,
        const TraceTensor& bias, std::int64_t batch, std::int64_t q, std::int64_t k, const Dims& dm,
        bool training);
    TraceTensor sideStack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len,
        const SideStackP& p, const std::map<std::int64_t, TraceTensor>& ladders,
        const TraceTensor& sideEncoder, std::int64_t encLen, const std::string& name);
    TraceTensor lossOf(const TraceTensor& hidden, std::int64_t rows);
    TraceTensor forwardBaseline();
    TraceTensor forwardLadder();

    // ---- decoder-only backbones (MemoryEstimateLlama.cpp): LlamaModel.cpp, DecoderMethods.cpp and
    // DecoderLadder.cpp op by op ----------------------------------------------------------------------
    LlamaLayerP llamaLayerP(const LlamaConfig& c, bool trainable, const std::string& name);
    void buildLlama();
    void applyLlamaMethod();
    // CausalJoin::make: the joined ids and mask (batch, srcLen + tgtLen - 1), int64.
    std::pair<TraceTensor, TraceTensor> causalJoin();
    LlamaInputsT llamaInputs(std::int64_t batch, std::int64_t len, std::int64_t headDim);
    TraceTensor rotary(const TraceTensor& x, const LlamaInputsT& in);
    TraceTensor llamaAttention(const TraceTensor& x, const LlamaLayerP& p, const LlamaDims& dm,
        const LlamaInputsT& in, std::int64_t batch, std::int64_t len);
    TraceTensor llamaLayer(const TraceTensor& x, const LlamaLayerP& p, const LlamaDims& dm,
        const LlamaInputsT& in, std::int64_t batch, std::int64_t len);
    // LlamaModelImpl::forward: the final norm's output; `keep` as StackOutput keeps (nullptr: every layer).
    TraceTensor llamaStack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len,
        const std::vector<std::int64_t>* keep, std::map<std::int64_t, TraceTensor>* ladders,
        const std::string& name);
    TraceTensor llamaSideStack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len,
        const std::map<std::int64_t, TraceTensor>& ladders);
    // Backbone::crossEntropy on the target logits (batch, tgtLen, vocab); `viewable`: its reshape to rows
    // is a view (else a copy of the narrowed slice).
    TraceTensor causalLoss(const TraceTensor& target, bool viewable);
    TraceTensor forwardDecoder();
    TraceTensor forwardDecoderInPlace();
    TraceTensor forwardDecoderPrompt();
    TraceTensor forwardDecoderLadder();

    MemoryEstimateInput m_in;
    bool m_amp = false; // bf16 mixed precision (autocast)
    std::int64_t m_e = 4; // parameters, embeddings, masks: fp32 (the master weights under mixed precision)
    std::map<int, TraceTensor> m_castCache; // parameter index -> its cached bf16 copy
    bool m_cuda = false;
    std::map<int, QuantP> m_quant; // parameter index -> its storage (backbone_dtype)
    std::map<int, bool> m_kernelPacked; // int4 matrices whose ATen kernel packing exists (kept)
    std::map<int, std::int64_t> m_kernelPackedBytes; // the packings this replay made, bytes by parameter
    std::map<int, std::int64_t> m_prepacked; // packings made by an earlier step: static from the start
    bool m_ladderBf16 = false; // LST ladder_dtype bf16: kept backbone outputs are converted as they are kept
    AutogradTrace m_trace;
    Dims m_dims {};
    TraceTensor m_shared, m_lmHead, m_lmHeadBias, m_prompt;
    StackP m_encoder, m_decoder;
    std::int64_t m_promptLen = 0;
    // LST
    LadderSideOptions m_side;
    Dims m_sideDims {};
    SideStackP m_sideEncoder, m_sideDecoder;
    LinearP m_upsample;
    TraceTensor m_mergeGate;
    TraceTensor m_ids, m_mask, m_labels;
    std::int64_t m_embedDim = 0; // the embedding's width (T5's d_model, Llama's hidden_size)
    // Decoder-only backbones
    LlamaDims m_ld {}, m_sideLd {};
    std::vector<LlamaLayerP> m_llamaLayers;
    NormP m_llamaNorm;
    LinearP m_sideDownEmbed;
    std::map<std::int64_t, LinearP> m_sideDown;
    std::map<std::int64_t, TraceTensor> m_sideGate;
    std::map<std::int64_t, LlamaLayerP> m_sideLayers;
    NormP m_sideNorm;
    std::vector<std::int64_t> m_sideKeep;
};

} // namespace ladder::estimate_detail
