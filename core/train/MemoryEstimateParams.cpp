// The memory estimator's parameters: the backbone's, then those each method adds or unfreezes (mirrors
// Baselines.cpp and LadderSideNetwork.cpp). See MemoryEstimateReplay.h.
#include <algorithm>

#include "peft/Baselines.h"
#include "train/MemoryEstimateReplay.h"
#include "util/Error.h"

namespace ladder::estimate_detail {

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
    m_embedDim = c.dModel;
    const bool full = m_in.method.method == "full";
    m_shared = param(c.vocabSize * c.dModel, full && m_in.method.freeze == 0, "shared.weight");
    m_encoder = stackP(m_dims, false, c.numLayers, full, "encoder");
    m_decoder = stackP(m_dims, true, c.numDecoderLayers, full, "decoder");
    if (!c.tieWordEmbeddings)
        m_lmHead = param(c.vocabSize * c.dModel, full, "lm_head.weight");
}

// backbone_dtype (model/T5Quantization.h quantizeFrozenBackbone, after the method is built): every frozen
// projection, the shared embedding and an untied LM head, in the layout of model/QuantizedWeight.h.
void Estimator::applyBackboneStorage()
{
    const auto& o = m_in.method;
    if (o.backboneDtype == "fp32")
        return;
    auto store = [&](const TraceTensor& w, std::int64_t rows, std::int64_t cols) {
        if (!w.defined() || w.requiresGrad)
            return;
        QuantP q { o.backboneDtype, rows, cols, o.quantGroupSize };
        if (q.dtype == "bf16")
            m_trace.setStoredBytes(w, { rows * cols * 2 });
        else if (q.dtype == "int8")
            m_trace.setStoredBytes(w, { rows * cols, rows * 2 });
        else
            m_trace.setStoredBytes(w, { rows * cols / 2, rows * q.groups() * 2, rows * q.groups() * 2 });
        m_quant[w.param] = q;
    };
    auto linear = [&](const LinearP& l) { store(l.w, l.out, l.in); };
    for (const auto& l : m_llamaLayers) // a decoder-only backbone (model/llama/LlamaQuantization.h)
        for (const auto* p : { &l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down })
            linear(*p);
    for (auto* s : { &m_encoder, &m_decoder })
        for (auto& b : s->blocks) {
            for (auto* a : { &b.self.attn, &b.cross.attn })
                for (auto* l : { &a->q, &a->k, &a->v, &a->o })
                    linear(*l);
            for (auto* l : { &b.ff.wi, &b.ff.wi0, &b.ff.wi1, &b.ff.wo })
                linear(*l);
        }
    const auto vocab = m_in.llama ? m_in.llama->vocabSize : m_in.config.vocabSize;
    store(m_shared, vocab, m_embedDim);
    store(m_lmHead, vocab, m_embedDim);
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
    } else if (o.isLora()) {
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
        m_sideDims.recomputeAttention = o.sideAttention == "sdpa";
        m_ladderBf16 = o.ladderDtype == "bf16";
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

} // namespace ladder::estimate_detail
