#include "train/MemoryEstimate.h"

#include <algorithm>
#include <map>

#include "peft/Baselines.h"
#include "peft/Ladder.h"
#include "train/AutogradTrace.h"
#include "util/Error.h"

// The estimator replays LadderBench's training step symbolically (AutogradTrace): the same modules, the
// same ATen calls in the same order, each with the tensors its autograd node saves for backward (the rules
// of PyTorch's derivatives.yaml: mm saves an input only when the other operand needs a gradient, softmax,
// relu and tanh save their result, gelu and silu their input, CPU dropout a mask in the activation dtype,
// CUDA dropout a 1-byte mask, reshape of a transposed head view copies). With dtype bf16 it replays
// mixed precision as the trainer runs it: fp32 weights, bf16 autocast around the forward (linear and
// matmul cast their fp32 operands to bf16 copies; a trainable weight's copy is cached for the forward, a
// frozen one's is made at each use; every other op follows PyTorch's type promotion). docs/PERFORMANCE.md
// explains the terms.

namespace ladder {
namespace {

using Grad = AutogradTrace::Grad;

struct LinearP {
    TraceTensor w, b, loraA, loraB;
    std::int64_t in = 0, out = 0, rank = 0;
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

// Dimensions of one stack (backbone or side).
struct Dims {
    std::int64_t d, dKv, heads, dFf, buckets;
    std::string act;
    bool gated;
    double dropout;
};

Dims dimsOf(const T5Config& c)
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
        if (!w.requiresGrad || !m_trace.gradMode())
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
    TraceTensor sideStack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len,
        const SideStackP& p, const std::map<std::int64_t, TraceTensor>& ladders,
        const TraceTensor& sideEncoder, std::int64_t encLen, const std::string& name);
    TraceTensor lossOf(const TraceTensor& hidden, std::int64_t rows);
    TraceTensor forwardBaseline();
    TraceTensor forwardLadder();

    MemoryEstimateInput m_in;
    bool m_amp = false; // bf16 mixed precision (autocast)
    std::int64_t m_e = 4; // parameters, embeddings, masks: fp32 (the master weights under mixed precision)
    std::map<int, TraceTensor> m_castCache; // parameter index -> its cached bf16 copy
    bool m_cuda = false;
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
};

// ---------------------------------------------------------------------------------------------------
AttentionP Estimator::attentionP(const Dims& dm, bool relBias, bool trainable, const std::string& name)
{
    AttentionP p;
    const auto inner = dm.heads * dm.dKv;
    p.q = linearP(dm.d, inner, trainable, false, name + ".q");
    p.k = linearP(dm.d, inner, trainable, false, name + ".k");
    p.v = linearP(dm.d, inner, trainable, false, name + ".v");
    p.o = linearP(inner, dm.d, trainable, false, name + ".o");
    if (relBias)
        p.relBias = param(dm.buckets * dm.heads, trainable, name + ".relative_attention_bias.weight");
    return p;
}

BlockP Estimator::blockP(const Dims& dm, bool decoder, bool relBias, bool trainable, const std::string& name)
{
    BlockP b;
    b.decoder = decoder;
    b.self.attn = attentionP(dm, relBias, trainable, name + ".layer.0.SelfAttention");
    b.self.norm = normP(dm.d, trainable, name + ".layer.0.layer_norm");
    if (decoder) {
        b.cross.attn = attentionP(dm, false, trainable, name + ".layer.1.EncDecAttention");
        b.cross.norm = normP(dm.d, trainable, name + ".layer.1.layer_norm");
    }
    const auto ff = name + (decoder ? ".layer.2" : ".layer.1");
    if (dm.gated) {
        b.ff.wi0 = linearP(dm.d, dm.dFf, trainable, false, ff + ".DenseReluDense.wi_0");
        b.ff.wi1 = linearP(dm.d, dm.dFf, trainable, false, ff + ".DenseReluDense.wi_1");
    } else {
        b.ff.wi = linearP(dm.d, dm.dFf, trainable, false, ff + ".DenseReluDense.wi");
    }
    b.ff.wo = linearP(dm.dFf, dm.d, trainable, false, ff + ".DenseReluDense.wo");
    b.ff.norm = normP(dm.d, trainable, ff + ".layer_norm");
    return b;
}

StackP Estimator::stackP(
    const Dims& dm, bool decoder, std::int64_t layers, bool trainable, const std::string& name)
{
    StackP s;
    const bool full = m_in.method.method == "full";
    for (std::int64_t i = 0; i < layers; ++i) {
        // Full fine-tuning with freeze: the first layers (encoder first) stay frozen.
        const bool frozen = full && isFrozenLayer(m_in.config, decoder, i, m_in.method.freeze);
        s.blocks.push_back(
            blockP(dm, decoder, i == 0, trainable && !frozen, name + ".block." + std::to_string(i)));
    }
    s.finalNorm = normP(dm.d, trainable, name + ".final_layer_norm");
    return s;
}

void Estimator::buildBackbone()
{
    const auto& c = m_in.config;
    m_dims = dimsOf(c);
    const bool full = m_in.method.method == "full";
    m_shared = param(c.vocabSize * c.dModel, full && m_in.method.freeze == 0, "shared.weight");
    m_encoder = stackP(m_dims, false, c.numLayers, full, "encoder");
    m_decoder = stackP(m_dims, true, c.numDecoderLayers, full, "decoder");
    if (!c.tieWordEmbeddings)
        m_lmHead = param(c.vocabSize * c.dModel, full, "lm_head.weight");
}

// The parameters a method adds or unfreezes (mirrors Baselines.cpp and LadderSideNetwork.cpp).
void Estimator::applyMethod()
{
    const auto& o = m_in.method;
    const auto& c = m_in.config;
    const auto freeze = o.freeze;
    auto setTrainable = [&](TraceTensor& t, bool on) {
        if (t.defined())
            m_trace.setTrainable(t, on);
    };
    auto eachBlock = [&](auto fn) {
        for (bool decoder : { false, true }) {
            auto& s = decoder ? m_decoder : m_encoder;
            for (std::size_t i = 0; i < s.blocks.size(); ++i)
                if (!isFrozenLayer(c, decoder, static_cast<std::int64_t>(i), freeze))
                    fn(s.blocks[i],
                        (decoder ? std::string("decoder") : std::string("encoder")) + ".block."
                            + std::to_string(i));
        }
    };
    auto bitfit = [&]() {
        auto biasOn = [&](LinearP& l, const std::string& n) { l.b = param(l.out, true, n + ".bias"); };
        auto normBias = [&](NormP& p, const std::string& n) { p.b = param(p.dim, true, n + ".bias"); };
        eachBlock([&](BlockP& b, const std::string& n) {
            normBias(b.self.norm, n + ".self_norm");
            for (auto* l : { &b.self.attn.q, &b.self.attn.k, &b.self.attn.v, &b.self.attn.o })
                biasOn(*l, n);
            if (b.decoder) {
                normBias(b.cross.norm, n + ".cross_norm");
                for (auto* l : { &b.cross.attn.q, &b.cross.attn.k, &b.cross.attn.v, &b.cross.attn.o })
                    biasOn(*l, n);
            }
            normBias(b.ff.norm, n + ".ff_norm");
            for (auto* l : { &b.ff.wi, &b.ff.wi0, &b.ff.wi1, &b.ff.wo })
                if (l->w.defined())
                    biasOn(*l, n);
        });
        normBias(m_encoder.finalNorm, "encoder.final_layer_norm");
        normBias(m_decoder.finalNorm, "decoder.final_layer_norm");
        m_lmHeadBias = param(c.vocabSize, true, "lm_head_bias");
    };

    if (o.method == "full") {
        // Trainable from the start (buildBackbone); frozen layers were built frozen.
    } else if (o.method == "bitfit") {
        bitfit();
    } else if (o.method == "adapter") {
        eachBlock([&](BlockP& b, const std::string& n) {
            for (auto* a : { &b.self.adapter, &b.ff.adapter }) {
                a->present = true;
                a->activation = o.activation;
                a->down = linearP(c.dModel, o.hidden, true, true, n + ".adapter.down");
                a->up = linearP(o.hidden, c.dModel, true, true, n + ".adapter.up");
            }
            setTrainable(b.self.norm.w, true);
            if (b.decoder)
                setTrainable(b.cross.norm.w, true);
            setTrainable(b.ff.norm.w, true);
        });
        setTrainable(m_encoder.finalNorm.w, true);
        setTrainable(m_decoder.finalNorm.w, true);
    } else if (o.method == "lora") {
        auto wants = [&](const std::string& t) {
            return std::find(o.targets.begin(), o.targets.end(), t) != o.targets.end();
        };
        auto lora = [&](LinearP& l, const std::string& n) {
            l.rank = o.rank;
            l.loraA = param(o.rank * l.in, true, n + ".lora_A");
            l.loraB = param(l.out * o.rank, true, n + ".lora_B");
        };
        eachBlock([&](BlockP& b, const std::string& n) {
            for (auto* a : { &b.self.attn, &b.cross.attn }) {
                if (!a->q.w.defined())
                    continue;
                if (wants("q"))
                    lora(a->q, n + ".q");
                if (wants("k"))
                    lora(a->k, n + ".k");
                if (wants("v"))
                    lora(a->v, n + ".v");
                if (wants("o"))
                    lora(a->o, n + ".o");
            }
            for (auto* l : { &b.ff.wi, &b.ff.wi0, &b.ff.wi1 })
                if (l->w.defined() && wants("wi"))
                    lora(*l, n + ".wi");
            if (wants("wo"))
                lora(b.ff.wo, n + ".wo");
        });
        if (o.bitfit)
            bitfit();
    } else if (o.method == "prompt") {
        if (freeze > 0)
            throw Error(
                "method options: field freeze: prompt tuning trains the input of every layer, it cannot "
                "freeze layers");
        m_prompt = param(o.prompts * c.dModel, true, "prompt");
        m_promptLen = o.prompts;
    } else if (o.method == "ladder") {
        m_side = ladderSideOptions(c, o);
        const auto sc = m_side.sideConfig();
        m_sideDims = dimsOf(sc);
        if (m_side.hasSideEncoder())
            m_sideEncoder = sideStackP(m_side, false, "side_encoder");
        m_sideDecoder = sideStackP(m_side, true, "side_decoder");
        m_upsample = linearP(sc.dModel, c.dModel, true, true, "side_final_upsample");
        if (m_side.usesMerge())
            m_mergeGate = param(1, true, "side_merge_gate");
    } else {
        throw Error("memory estimate: field method: unknown method '" + o.method + "'");
    }
}

SideStackP Estimator::sideStackP(const LadderSideOptions& o, bool decoder, const std::string& name)
{
    SideStackP s;
    s.present = true;
    s.decoder = decoder;
    s.keep = decoder ? o.decoderKeep : o.encoderKeep;
    const auto d = o.backbone.dModel;
    const auto ds = m_sideDims.d;
    s.downEmbed = linearP(d, ds, true, true, name + ".downsample.embed");
    for (auto i : s.keep) {
        const auto n = std::to_string(i);
        if (o.usesLadders())
            s.down[i] = linearP(d, ds, true, true, name + ".downsample." + n);
        if (o.usesGates())
            s.gate[i] = param(1, true, name + ".gate." + n);
        if (o.ablation == "adapter-blocks") {
            const auto hidden = std::max<std::int64_t>(1, ds / 2);
            s.adapterNorm[i] = normP(ds, true, name + ".block." + n + ".layer_norm");
            s.adapterDown[i] = linearP(ds, hidden, true, true, name + ".block." + n + ".down");
            s.adapterUp[i] = linearP(hidden, ds, true, true, name + ".block." + n + ".up");
        } else {
            s.blocks[i] = blockP(m_sideDims, decoder, i == s.keep.front(), true, name + ".block." + n);
        }
        if (o.ablation == "cross-attention") {
            LayerAttentionP a;
            a.attn
                = attentionP(m_sideDims, false, true, name + ".ladder_attention." + n + ".EncDecAttention");
            a.norm = normP(ds, true, name + ".ladder_attention." + n + ".layer_norm");
            s.ladderAttention[i] = a;
        }
    }
    s.finalNorm = normP(ds, true, name + ".final_layer_norm");
    return s;
}

// ---------------------------------------------------------------------------------------------------
TraceTensor Estimator::product(
    const TraceTensor& x, const TraceTensor& w, const TraceTensor& b, std::int64_t in, std::int64_t out)
{
    // at::linear -> mm/addmm on the flattened input.
    const auto rows = x.numel() / in;
    const auto xc = lowp(x);
    const auto wc = lowpParam(w);
    const auto bc = lowpParam(b);
    const auto y = compute(rows * out, productElem(), { xc, wc, bc }, { ifGrad(wc, xc), ifGrad(xc, wc) });
    releaseCast(xc, x);
    releaseCast(wc, w);
    releaseCast(bc, b);
    return y;
}

TraceTensor Estimator::linear(const TraceTensor& x, const LinearP& p)
{
    auto y = product(x, p.w, p.b, p.in, p.out);
    if (!p.loraA.defined())
        return y;
    const auto rows = x.numel() / p.in;
    const double loraDropout = m_in.method.dropout;
    const auto in = dropout(x, loraDropout, true);
    const auto a = product(in, p.loraA, {}, p.in, p.rank);
    const auto b = product(a, p.loraB, {}, p.rank, p.out);
    const auto scaled = compute(rows * p.out, b.elemBytes, { b }); // * alpha / rank
    const auto sum = add(y, scaled);
    for (const auto& t : { y, in, a, b, scaled })
        if (t.value != x.value)
            m_trace.release(t);
    return sum;
}

TraceTensor Estimator::dropout(const TraceTensor& x, double p, bool training)
{
    if (!training || p <= 0.0)
        return x;
    if (m_cuda) {
        // native_dropout: a bool mask beside the output.
        const auto mask = compute(x.numel(), 1, {});
        const auto y = compute(x.numel(), x.elemBytes, { x }, { mask });
        m_trace.release(mask);
        return y;
    }
    // CPU: noise = empty_like(x).bernoulli_(1 - p).div_(1 - p); x * noise saves the noise.
    const auto noise = compute(x.numel(), x.elemBytes, {});
    const auto y = compute(x.numel(), x.elemBytes, { x }, { noise });
    m_trace.release(noise);
    return y;
}

TraceTensor Estimator::activation(const TraceTensor& x, const std::string& act)
{
    if (act == "relu" || act == "tanh") // threshold_backward / tanh_backward use the result
        return compute(x.numel(), x.elemBytes, { x }, {}, Grad::New, 0, true);
    if (act == "gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "silu")
        return compute(x.numel(), x.elemBytes, { x }, { x });
    throw Error("memory estimate: unsupported activation '" + act + "'");
}

TraceTensor Estimator::norm(const TraceTensor& x, const NormP& p)
{
    // variance = x.to(float).pow(2).mean(-1); normed = x * rsqrt(variance + eps) (fp32 by promotion);
    // weight (fp32) * normed (+ bias)
    const auto n = x.numel();
    const auto rows = n / p.dim;
    const auto x32 = x.elemBytes == 4 ? x : compute(n, 4, { x });
    const auto sq = compute(n, 4, { x32 }, { x32 }, Grad::New, 2 * n * 4);
    const auto mean = compute(rows, 4, { sq });
    m_trace.release(sq);
    const auto plus = compute(rows, 4, { mean }, {}, Grad::Same);
    m_trace.release(mean);
    const auto r = compute(rows, 4, { plus }, {}, Grad::New, 0, true);
    m_trace.release(plus);
    const auto normed = compute(n, 4, { x, r }, { ifGrad(r, x), ifGrad(x, r) }, Grad::New, n * 4);
    m_trace.release(r);
    if (x32.value != x.value)
        m_trace.release(x32);
    const bool wGrad = p.w.requiresGrad;
    auto y = compute(n, 4, { p.w, normed }, { ifGrad(p.w, normed) }, Grad::New, wGrad ? n * 4 : 0);
    m_trace.release(normed);
    if (p.b.defined()) {
        const auto yb = compute(n, 4, { y, p.b }, {}, Grad::Same);
        m_trace.release(y);
        y = yb;
    }
    return y;
}

TraceTensor Estimator::adapter(const TraceTensor& x, const AdapterP& p)
{
    const auto down = linear(x, p.down);
    const auto act = activation(down, p.activation);
    m_trace.release(down);
    const auto up = linear(act, p.up);
    m_trace.release(act);
    const auto out = add(x, up);
    m_trace.release(up);
    return out;
}

TraceTensor Estimator::attention(const TraceTensor& x, const TraceTensor& kv, std::int64_t batch,
    std::int64_t q, std::int64_t k, const TraceTensor& bias, const AttentionP& p, const Dims& dm,
    bool training)
{
    const auto inner = dm.heads * dm.dKv;
    const auto& src = kv.defined() ? kv : x;
    std::vector<TraceTensor> temps;
    auto keepTemp = [&](const TraceTensor& t) {
        temps.push_back(t);
        return t;
    };
    const auto query = keepTemp(m_trace.view(keepTemp(linear(x, p.q))));
    const auto key = keepTemp(m_trace.view(keepTemp(linear(src, p.k))));
    const auto value = keepTemp(m_trace.view(keepTemp(linear(src, p.v))));
    // matmul reshapes a transposed head view into (batch * heads, len, d_kv): a copy unless len == 1.
    // (Under autocast q, k and v are bf16 already, so matmul casts nothing for the scores.)
    const auto qc
        = q > 1 ? keepTemp(compute(batch * q * inner, query.elemBytes, { query }, {}, Grad::Same)) : query;
    const auto kc
        = k > 1 ? keepTemp(compute(batch * k * inner, key.elemBytes, { key }, {}, Grad::Same)) : key;
    const auto maps = batch * dm.heads * q * k;
    auto scores = keepTemp(compute(maps, productElem(), { qc, kc }, { ifGrad(kc, qc), ifGrad(qc, kc) }));
    m_trace.release(qc);
    m_trace.release(kc);
    if (bias.defined()) // the bias is fp32: the sum is fp32 by promotion
        scores = keepTemp(compute(maps, promoted(scores, bias), { scores, bias }, {}, Grad::Same,
            bias.requiresGrad && bias.numel() < maps ? maps * promoted(scores, bias) : 0));
    // softmax(scores.float()).type_as(scores): softmax keeps its (fp32) result
    const auto s32 = scores.elemBytes == 4 ? scores : keepTemp(compute(maps, 4, { scores }));
    auto weights = keepTemp(compute(maps, 4, { s32 }, {}, Grad::New, 0, true));
    if (scores.elemBytes != 4)
        weights = keepTemp(compute(maps, scores.elemBytes, { weights }));
    weights = keepTemp(dropout(weights, dm.dropout, training));
    const auto vc
        = k > 1 ? keepTemp(compute(batch * k * inner, value.elemBytes, { value }, {}, Grad::Same)) : value;
    const auto wc = lowp(weights); // autocast's bf16 copy of the fp32 probabilities
    const auto context
        = compute(batch * q * inner, productElem(), { wc, vc }, { ifGrad(vc, wc), ifGrad(wc, vc) });
    releaseCast(wc, weights);
    m_trace.release(vc);
    const auto t = m_trace.view(context);
    const auto contiguous = compute(batch * q * inner, context.elemBytes, { t }, {}, Grad::Same);
    m_trace.release(context);
    m_trace.release(t);
    const auto flat = m_trace.view(contiguous);
    m_trace.release(contiguous);
    const auto out = linear(flat, p.o);
    m_trace.release(flat);
    for (const auto& tmp : temps)
        m_trace.release(tmp);
    return out;
}

TraceTensor Estimator::layerAttention(const TraceTensor& x, const TraceTensor& kv, std::int64_t batch,
    std::int64_t q, std::int64_t k, const TraceTensor& bias, const LayerAttentionP& p, const Dims& dm,
    bool training)
{
    const auto normed = norm(x, p.norm);
    auto out = attention(normed, kv, batch, q, k, bias, p.attn, dm, training);
    m_trace.release(normed);
    if (p.adapter.present) {
        const auto a = adapter(out, p.adapter);
        m_trace.release(out);
        out = a;
    }
    const auto dropped = dropout(out, dm.dropout, training);
    const auto res = add(x, dropped);
    m_trace.release(out);
    m_trace.release(dropped);
    return res;
}

TraceTensor Estimator::feedForward(const TraceTensor& x, const FeedForwardP& p, const Dims& dm, bool training)
{
    const auto normed = norm(x, p.norm);
    TraceTensor h;
    if (dm.gated) {
        const auto a0 = linear(normed, p.wi0);
        const auto g = activation(a0, dm.act);
        m_trace.release(a0);
        const auto a1 = linear(normed, p.wi1);
        h = compute(g.numel(), promoted(g, a1), { g, a1 }, { ifGrad(g, a1), ifGrad(a1, g) });
        m_trace.release(g);
        m_trace.release(a1);
    } else {
        const auto a = linear(normed, p.wi);
        h = activation(a, dm.act);
        m_trace.release(a);
    }
    m_trace.release(normed);
    const auto hd = dropout(h, dm.dropout, training);
    auto out = linear(hd, p.wo);
    m_trace.release(h);
    m_trace.release(hd);
    if (p.adapter.present) {
        const auto a = adapter(out, p.adapter);
        m_trace.release(out);
        out = a;
    }
    const auto dropped = dropout(out, dm.dropout, training);
    const auto res = add(x, dropped);
    m_trace.release(out);
    m_trace.release(dropped);
    return res;
}

TraceTensor Estimator::block(const TraceTensor& x, std::int64_t batch, std::int64_t len,
    const TraceTensor& selfBias, const TraceTensor& encoder, std::int64_t encLen,
    const TraceTensor& crossBias, const BlockP& p, const Dims& dm, bool training)
{
    auto h = layerAttention(x, {}, batch, len, len, selfBias, p.self, dm, training);
    if (p.decoder) {
        const auto c = layerAttention(h, encoder, batch, len, encLen, crossBias, p.cross, dm, training);
        m_trace.release(h);
        h = c;
    }
    const auto out = feedForward(h, p.ff, dm, training);
    m_trace.release(h);
    return out;
}

TraceTensor Estimator::positionBias(
    std::int64_t batch, std::int64_t len, const TraceTensor& relBias, std::int64_t heads, bool decoder)
{
    // Mask (batch, 1, 1 or len, len) in the activation dtype, bucket ids (len, len) int64, the bias
    // embedding (len, len, heads), their broadcast sum (batch, heads, len, len).
    const auto mask = compute(batch * (decoder ? len : 1) * len, m_e, {});
    const auto buckets = compute(len * len, 8, {});
    const auto emb = compute(len * len * heads, m_e, { relBias }, { buckets });
    m_trace.release(buckets);
    const auto bias = compute(batch * heads * len * len, m_e, { emb, mask }, {}, Grad::Same,
        relBias.requiresGrad ? batch * heads * len * len * m_e : 0);
    m_trace.release(emb);
    m_trace.release(mask);
    return bias;
}

TraceTensor Estimator::stack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len, const StackP& p,
    bool decoder, const TraceTensor& encoder, std::int64_t encLen, bool training,
    const std::vector<std::int64_t>* keep, std::map<std::int64_t, TraceTensor>* ladders,
    const std::string& name)
{
    m_trace.setPart(name + " embeddings");
    const auto selfBias = positionBias(batch, len, p.blocks.front().self.attn.relBias, m_dims.heads, decoder);
    TraceTensor crossBias;
    if (decoder)
        crossBias = compute(batch * encLen, m_e, {});
    // StackOutput holds the (dropped-out) embeddings and the kept block outputs; the local `hidden`
    // releases the others as soon as the next block has run.
    auto hidden = dropout(embeds, m_dims.dropout, training);
    bool hiddenHeld = true;
    for (std::size_t i = 0; i < p.blocks.size(); ++i) {
        m_trace.setPart(name + " block " + std::to_string(i));
        auto next
            = block(hidden, batch, len, selfBias, encoder, encLen, crossBias, p.blocks[i], m_dims, training);
        const bool kept
            = !keep || std::find(keep->begin(), keep->end(), static_cast<std::int64_t>(i)) != keep->end();
        if (kept && ladders)
            (*ladders)[static_cast<std::int64_t>(i)] = next;
        if (!hiddenHeld)
            m_trace.release(hidden);
        hidden = next;
        hiddenHeld = kept;
    }
    m_trace.setPart(name + " final norm");
    const auto normed = norm(hidden, p.finalNorm);
    if (!hiddenHeld)
        m_trace.release(hidden);
    const auto out = dropout(normed, m_dims.dropout, training);
    if (out.value != normed.value)
        m_trace.release(normed);
    m_trace.release(selfBias);
    m_trace.release(crossBias);
    return out;
}

TraceTensor Estimator::sideStack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len,
    const SideStackP& p, const std::map<std::int64_t, TraceTensor>& ladders, const TraceTensor& sideEncoder,
    std::int64_t encLen, const std::string& name)
{
    const auto& dm = m_sideDims;
    m_trace.setPart(name + " embeddings");
    TraceTensor selfBias;
    if (!p.blocks.empty())
        selfBias
            = positionBias(batch, len, p.blocks.at(p.keep.front()).self.attn.relBias, dm.heads, p.decoder);
    else
        selfBias = compute(batch * (p.decoder ? len : 1) * len, m_e, {});
    TraceTensor crossBias;
    if (p.decoder && sideEncoder.defined())
        crossBias = compute(batch * encLen, m_e, {});
    const auto x = dropout(embeds, dm.dropout, true);
    auto side = linear(x, p.downEmbed);
    if (x.value != embeds.value)
        m_trace.release(x);
    auto replace = [&](const TraceTensor& next) {
        m_trace.release(side);
        side = next;
    };
    for (auto i : p.keep) {
        m_trace.setPart(name + " block " + std::to_string(i));
        if (m_side.usesGates()) {
            // side = mu * side + (1 - mu) * Down_i(ladder), mu = sigmoid(alpha / T)
            // (mu is a one-element fp32 tensor: under autocast both products are fp32 by promotion)
            const auto mu = compute(1, m_e, { p.gate.at(i) }, {}, Grad::New, 0, true);
            const auto d = linear(ladders.at(i), p.down.at(i));
            const auto n = side.numel();
            const auto ea = promoted(mu, side);
            const auto a
                = compute(n, ea, { mu, side }, { ifGrad(side, mu), ifGrad(mu, side) }, Grad::New, n * ea);
            const auto oneMinus = compute(1, m_e, { mu });
            const auto eb = promoted(oneMinus, d);
            const auto b = compute(
                n, eb, { oneMinus, d }, { ifGrad(d, oneMinus), ifGrad(oneMinus, d) }, Grad::New, n * eb);
            const auto sum = add(a, b);
            for (const auto& t : { mu, d, a, oneMinus, b })
                m_trace.release(t);
            replace(sum);
        }
        if (p.adapterNorm.count(i)) {
            const auto n = norm(side, p.adapterNorm.at(i));
            const auto dn = linear(n, p.adapterDown.at(i));
            const auto act = activation(dn, dm.act);
            const auto up = linear(act, p.adapterUp.at(i));
            const auto dr = dropout(up, dm.dropout, true);
            const auto res = add(side, dr);
            for (const auto& t : { n, dn, act, up, dr })
                m_trace.release(t);
            replace(res);
            continue;
        }
        const auto& blk = p.blocks.at(i);
        replace(layerAttention(side, {}, batch, len, len, selfBias, blk.self, dm, true));
        if (p.ladderAttention.count(i)) {
            const auto keys = linear(ladders.at(i), p.down.at(i));
            replace(layerAttention(side, keys, batch, len, len, selfBias, p.ladderAttention.at(i), dm, true));
            m_trace.release(keys);
        }
        if (p.decoder && sideEncoder.defined())
            replace(layerAttention(side, sideEncoder, batch, len, encLen, crossBias, blk.cross, dm, true));
        replace(feedForward(side, blk.ff, dm, true));
    }
    m_trace.setPart(name + " final norm");
    const auto normed = norm(side, p.finalNorm);
    m_trace.release(side);
    const auto out = dropout(normed, dm.dropout, true);
    if (out.value != normed.value)
        m_trace.release(normed);
    m_trace.release(selfBias);
    m_trace.release(crossBias);
    return out;
}

TraceTensor Estimator::lossOf(const TraceTensor& hidden, std::int64_t rows)
{
    m_trace.setPart("lm head and loss");
    const auto& c = m_in.config;
    const bool tied = c.tieWordEmbeddings;
    const auto scaled
        = tied ? compute(hidden.numel(), hidden.elemBytes, { hidden }) : hidden; // * d_model^-0.5
    const auto& w = tied ? m_shared : m_lmHead;
    const auto logits = product(scaled, w, m_lmHeadBias, c.dModel, c.vocabSize);
    if (scaled.value != hidden.value)
        m_trace.release(scaled);
    // cross_entropy on logits.float(): log_softmax (keeps its float result) and nll_loss (keeps its input
    // and the labels).
    const auto l32 = logits.elemBytes == 4 ? logits : compute(logits.numel(), 4, { logits });
    const auto logProbs = compute(logits.numel(), 4, { l32 }, {}, Grad::New, 0, true);
    const auto loss = compute(1, 4, { logProbs }, { logProbs, m_labels });
    m_trace.release(logProbs);
    if (l32.value != logits.value)
        m_trace.release(l32);
    return loss; // logits stay alive in MethodOutput until the forward returns
}

TraceTensor Estimator::forwardBaseline()
{
    const auto& c = m_in.config;
    const auto b = m_in.batch;
    const auto ls = m_in.srcLen;
    const auto lt = m_in.tgtLen;
    m_trace.setPart("encoder embeddings");
    auto embeds = compute(b * ls * c.dModel, m_e, { m_shared }, { m_ids });
    std::int64_t encLen = ls;
    if (m_prompt.defined()) {
        // cat(prompt expanded over the batch, embeddings) and the extended 0/1 mask.
        const auto cat = compute(b * (m_promptLen + ls) * c.dModel, m_e, { m_prompt, embeds });
        m_trace.release(embeds);
        embeds = cat;
        encLen = m_promptLen + ls;
        compute(b * encLen, 8, {});
    }
    const auto encoder = stack(embeds, b, encLen, m_encoder, false, {}, 0, true, nullptr, nullptr, "encoder");
    m_trace.setPart("decoder embeddings");
    const auto decoderIds = compute(b * lt, 8, {}); // shiftRight(labels)
    const auto decEmbeds = compute(b * lt * c.dModel, m_e, { m_shared }, { decoderIds });
    const auto decoder
        = stack(decEmbeds, b, lt, m_decoder, true, encoder, encLen, true, nullptr, nullptr, "decoder");
    return lossOf(decoder, b * lt);
}

TraceTensor Estimator::forwardLadder()
{
    const auto& c = m_in.config;
    const auto b = m_in.batch;
    const auto ls = m_in.srcLen;
    const auto lt = m_in.tgtLen;
    const bool backboneTrain = m_in.method.backboneTrainMode;
    static const std::vector<std::int64_t> none;

    // Encoder: the backbone under NoGradGuard keeps only its ladder outputs.
    m_trace.setPart("backbone encoder");
    m_trace.setGradMode(false);
    const auto embeds = compute(b * ls * c.dModel, m_e, { m_shared }, { m_ids });
    std::map<std::int64_t, TraceTensor> encLadders, decLadders;
    TraceTensor backboneHidden;
    if (m_side.needsBackbone()) {
        const bool ladder = m_side.usesLadders() && m_side.hasSideEncoder();
        backboneHidden = stack(embeds, b, ls, m_encoder, false, {}, 0, backboneTrain,
            ladder ? &m_side.encoderKeep : &none, &encLadders, "backbone encoder");
    }
    m_trace.setGradMode(true);
    TraceTensor sideHidden;
    if (m_sideEncoder.present)
        sideHidden = sideStack(embeds, b, ls, m_sideEncoder, encLadders, {}, 0, "side encoder");
    for (const auto& [i, t] : encLadders)
        m_trace.release(t);
    m_trace.release(embeds);

    // Decoder.
    m_trace.setPart("backbone decoder");
    m_trace.setGradMode(false);
    const auto decoderIds = compute(b * lt, 8, {});
    const auto decEmbeds = compute(b * lt * c.dModel, m_e, { m_shared }, { decoderIds });
    TraceTensor backboneFinal;
    if (m_side.needsBackbone()) {
        const auto out = stack(decEmbeds, b, lt, m_decoder, true, backboneHidden, ls, backboneTrain,
            m_side.usesLadders() ? &m_side.decoderKeep : &none, &decLadders, "backbone decoder");
        if (m_side.usesMerge())
            backboneFinal = out;
        else
            m_trace.release(out);
    }
    m_trace.setGradMode(true);
    const auto sideOut
        = sideStack(decEmbeds, b, lt, m_sideDecoder, decLadders, sideHidden, ls, "side decoder");
    for (const auto& [i, t] : decLadders)
        m_trace.release(t);

    m_trace.setPart("side head");
    auto out = linear(sideOut, m_upsample);
    if (m_mergeGate.defined()) {
        const auto n = out.numel();
        const auto g = compute(1, m_e, { m_mergeGate }, {}, Grad::New, 0, true);
        const auto ea = promoted(g, out);
        const auto a = compute(n, ea, { g, out }, { ifGrad(out, g), ifGrad(g, out) }, Grad::New, n * ea);
        const auto oneMinus = compute(1, m_e, { g });
        const auto eb = promoted(oneMinus, backboneFinal);
        const auto bb = compute(n, eb, { oneMinus, backboneFinal },
            { ifGrad(backboneFinal, oneMinus), ifGrad(oneMinus, backboneFinal) }, Grad::New, n * eb);
        out = add(a, bb);
    }
    return lossOf(out, b * lt);
}

MemoryEstimate Estimator::run()
{
    const auto& c = m_in.config;
    c.validate();
    if (!isKnownMethod(m_in.method.method))
        throw Error("memory estimate: field method: unknown method '" + m_in.method.method + "'");
    m_in.method.validate(c);
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
    buildBackbone();
    applyMethod();

    MemoryEstimate r;
    for (const auto& p : m_trace.params()) {
        const auto bytes = static_cast<std::uint64_t>(p.numel * p.elemBytes);
        r.totalParams += p.numel;
        if (p.trainable) {
            r.trainableParams += p.numel;
            r.trainableWeights += bytes;
        } else {
            r.frozenWeights += bytes;
        }
    }
    r.gradients = r.trainableWeights;
    r.optimizerState = adamw ? 2 * r.trainableWeights : 0;
    // Live from the start: each weight and each AdamW moment is its own allocation (rounded on CUDA).
    std::int64_t staticBytes = 0;
    for (const auto& p : m_trace.params())
        staticBytes += m_trace.allocationBytes(p.numel * p.elemBytes) * (p.trainable && adamw ? 3 : 1);
    if (m_cuda) {
        // Two cuBLAS handles (the forward's thread and autograd's CUDA device thread), each with PyTorch's
        // workspace, allocated at their first product and kept: the caller's figure for its device, else
        // PyTorch's default for Hopper (sm_90: 4096 KiB x 8), the GPU LadderBench's kit measures on.
        constexpr std::uint64_t kHopperDefaultWorkspace = 4096ull * 8 * 1024;
        const auto perHandle = m_in.cudaWorkspaceBytes ? m_in.cudaWorkspaceBytes : kHopperDefaultWorkspace;
        r.cudaWorkspaces = 2 * perHandle;
        staticBytes += static_cast<std::int64_t>(r.cudaWorkspaces);
    }
    m_trace.addStatic(staticBytes);
    if (m_in.gradientAccumulation > 1)
        m_trace.presetParamGrads(); // a later micro-batch of the group: the earlier ones' gradients are live

    const auto b = m_in.batch;
    m_ids = m_trace.data(b * m_in.srcLen * 8);
    m_mask = m_trace.data(b * m_in.srcLen * 8);
    m_labels = m_trace.data(b * m_in.tgtLen * 8);
    r.batchInputs = static_cast<std::uint64_t>((2 * b * m_in.srcLen + b * m_in.tgtLen) * 8);

    const auto loss = m_in.method.method == "ladder" ? forwardLadder() : forwardBaseline();
    m_trace.setPart("");
    m_trace.releaseAllBut({ loss }); // MethodOutput and every local of the forward are gone
    r.activations = static_cast<std::uint64_t>(m_trace.savedBytes());
    for (const auto& [part, bytes] : m_trace.savedByPart())
        r.activationsPerPart.emplace_back(part, static_cast<std::uint64_t>(bytes));
    m_trace.backward(loss);
    m_trace.optimizerStep(adamw);

    r.total = static_cast<std::uint64_t>(m_trace.peakBytes());
    r.gradientsAtPeak = static_cast<std::uint64_t>(m_trace.peakParamGrads());
    r.activationsAtPeak = static_cast<std::uint64_t>(m_trace.peakSaved());
    const auto accounted = r.weights() + r.optimizerState + r.batchInputs + r.gradientsAtPeak
        + r.activationsAtPeak + r.cudaWorkspaces;
    r.transient = r.total > accounted ? r.total - accounted : 0;
    r.peakWhere = m_trace.peakWhere();
    return r;
}

} // namespace

MemoryEstimate estimateTrainingMemory(const MemoryEstimateInput& input)
{
    return Estimator(input).run();
}

} // namespace ladder
