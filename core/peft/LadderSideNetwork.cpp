#include "peft/LadderSideNetwork.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/parameterdict.h>

#include "model/Recompute.h"
#include "util/Error.h"

namespace ladder {
namespace {

const std::vector<std::string> kAblations { "none", "side-tuning", "no-ladders", "adapter-blocks",
    "cross-attention" };

at::Tensor applyDropout(const at::Tensor& x, double p, bool training)
{
    return (training && p > 0.0) ? at::dropout(x, p, true) : x;
}

at::Tensor activation(const at::Tensor& x, const std::string& act)
{
    if (act == "relu")
        return at::relu(x);
    if (act == "gelu_new" || act == "gelu_pytorch_tanh")
        return at::gelu(x, "tanh");
    if (act == "gelu")
        return at::gelu(x);
    if (act == "silu")
        return at::silu(x);
    throw Error("ladder: unsupported activation " + act);
}

// Linear maps of the ladder (downsamples, upsample, adapter projections): N(0, 0.01), bias 0, as the
// reference initialises every nn.Linear it adds.
torch::nn::Linear ladderLinear(std::int64_t in, std::int64_t out)
{
    torch::nn::Linear l(torch::nn::LinearOptions(in, out).bias(true));
    at::NoGradGuard noGrad;
    l->weight.normal_(0.0, 0.01);
    l->bias.zero_();
    return l;
}

// HF's T5 initialisation (Mesh TensorFlow scheme) computed with the BACKBONE's dimensions `c`, as the
// reference does: its _init_weights reads the model's config, not the side configuration, so a side weight
// is drawn with the spread of the backbone weight it mirrors (docs/LST.md, "Checked against the reference").
void initAttention(T5AttentionImpl& a, const T5Config& c)
{
    at::NoGradGuard noGrad;
    const auto dModel = static_cast<double>(c.dModel);
    a.q->weight.normal_(0.0, std::pow(dModel * static_cast<double>(c.dKv), -0.5));
    a.k->weight.normal_(0.0, std::pow(dModel, -0.5));
    a.v->weight.normal_(0.0, std::pow(dModel, -0.5));
    a.o->weight.normal_(0.0, std::pow(static_cast<double>(c.innerDim()), -0.5));
    if (a.relative_attention_bias)
        a.relative_attention_bias->weight.normal_(0.0, std::pow(dModel, -0.5));
}

void initBlock(T5BlockImpl& block, const T5Config& c)
{
    initAttention(*block.selfAttention->attention, c);
    if (block.crossAttention)
        initAttention(*block.crossAttention->attention, c);
    at::NoGradGuard noGrad;
    for (auto& proj : block.feedForward->DenseReluDense->projections()) {
        const bool isOut = proj.get() == block.feedForward->DenseReluDense->wo.get();
        proj->weight.normal_(0.0, std::pow(static_cast<double>(isOut ? c.dFf : c.dModel), -0.5));
    }
}

template <typename Holder>
void addToDict(
    const std::shared_ptr<torch::nn::ModuleDictImpl>& dict, const std::string& key, const Holder& module)
{
    using Entry = std::pair<std::string, std::shared_ptr<torch::nn::Module>>;
    dict->update(std::vector<Entry> { { key, module.ptr() } });
}

std::string joinIndices(const std::vector<std::int64_t>& v)
{
    std::string s;
    for (auto i : v)
        s += (s.empty() ? "" : ",") + std::to_string(i);
    return "[" + s + "]";
}

void checkKeep(const std::vector<std::int64_t>& keep, std::int64_t depth, const char* stack)
{
    if (keep.empty())
        throw Error(std::string("ladder: field keep: no side layer is kept in the ") + stack);
    for (std::size_t j = 0; j < keep.size(); ++j) {
        if (keep[j] < 0 || keep[j] >= depth)
            throw Error(std::string("ladder: field keep: layer ") + std::to_string(keep[j])
                + " does not exist in the " + stack + " (" + std::to_string(depth)
                + " layers, indices from 0)");
        if (j > 0 && keep[j] <= keep[j - 1])
            throw Error(
                "ladder: field keep: layer indices must be sorted and unique, got " + joinIndices(keep));
    }
}

} // namespace

// ---------------------------------------------------------------------------------------------------
T5Config LadderSideOptions::sideConfig() const
{
    validate();
    T5Config side = backbone;
    side.dModel = backbone.dModel / r;
    side.dFf = backbone.dFf / r;
    side.dKv = backbone.dKv / r;
    if (sideHeads > 0) {
        side.numHeads = sideHeads;
        side.dKv = backbone.innerDim() / r / sideHeads;
    }
    return side;
}

void LadderSideOptions::validate() const
{
    if (r < 1)
        throw Error("ladder: field r: expected a positive reduction factor, got " + std::to_string(r));
    if (backbone.dModel % r || backbone.dFf % r || backbone.dKv % r)
        throw Error("ladder: field r: " + std::to_string(r) + " must divide d_model "
            + std::to_string(backbone.dModel) + ", d_ff " + std::to_string(backbone.dFf) + " and d_kv "
            + std::to_string(backbone.dKv) + " (the side network has d_model/r, d_ff/r, d_kv/r)");
    if (!(gateTemperature > 0.0))
        throw Error("ladder: field gate_temperature: expected a positive number");
    if (std::find(kAblations.begin(), kAblations.end(), ablation) == kAblations.end())
        throw Error("ladder: field ablation: unknown '" + ablation
            + "' (expected none, side-tuning, no-ladders, adapter-blocks or cross-attention)");
    if (sideHeads < 0 || (sideHeads > 0 && (backbone.innerDim() / r) % sideHeads))
        throw Error("ladder: field side_heads: " + std::to_string(sideHeads)
            + " must divide the side network's inner width heads x d_kv / r = "
            + std::to_string(backbone.innerDim() / r));
    if (sideAttention != "math" && sideAttention != "sdpa")
        throw Error("ladder: field side_attention: expected math or sdpa, got '" + sideAttention + "'");
    checkKeep(encoderKeep, backbone.numLayers, "encoder");
    checkKeep(decoderKeep, backbone.numDecoderLayers, "decoder");
}

bool LadderSideOptions::usesLadders() const
{
    return ablation == "none" || ablation == "adapter-blocks" || ablation == "cross-attention";
}

bool LadderSideOptions::usesGates() const
{
    return ablation == "none" || ablation == "adapter-blocks";
}

bool LadderSideOptions::usesMerge() const
{
    return mergeBackbone || ablation == "side-tuning";
}

bool LadderSideOptions::hasSideEncoder() const
{
    return ablation != "adapter-blocks";
}

bool LadderSideOptions::needsBackbone() const
{
    return usesLadders() || usesMerge();
}

// ---------------------------------------------------------------------------------------------------
LadderAdapterBlockImpl::LadderAdapterBlockImpl(const T5Config& sideConfig, std::int64_t hidden)
    : m_activation(sideConfig.denseActFn())
    , m_dropout(sideConfig.dropoutRate)
{
    layer_norm = register_module("layer_norm", T5LayerNorm(sideConfig.dModel, sideConfig.layerNormEpsilon));
    down = register_module("down", ladderLinear(sideConfig.dModel, hidden));
    up = register_module("up", ladderLinear(hidden, sideConfig.dModel));
}

at::Tensor LadderAdapterBlockImpl::forward(const at::Tensor& hidden)
{
    const auto h = up(activation(down(layer_norm(hidden)), m_activation));
    return hidden + applyDropout(h, m_dropout, is_training());
}

// ---------------------------------------------------------------------------------------------------
void LadderSideCache::reorder(const at::Tensor& rowIndices)
{
    blocks.reorder(rowIndices);
    for (auto& [_, keys] : ladderKeys)
        if (keys.defined())
            keys = keys.index_select(0, rowIndices);
}

// ---------------------------------------------------------------------------------------------------
LadderSideStackImpl::LadderSideStackImpl(const LadderSideOptions& options, bool isDecoder)
    : m_options(options)
    , m_sideConfig(options.sideConfig())
    , m_isDecoder(isDecoder)
    , m_keep(isDecoder ? options.decoderKeep : options.encoderKeep)
{
    const auto d = options.backbone.dModel;
    const auto ds = m_sideConfig.dModel;

    auto downsampleDict = register_module("downsample", torch::nn::ModuleDict());
    downsampleEmbed = ladderLinear(d, ds);
    addToDict(downsampleDict, "embed", downsampleEmbed);
    if (options.usesLadders()) {
        for (auto i : m_keep) {
            const auto down = downsamples.emplace(i, ladderLinear(d, ds)).first->second;
            addToDict(downsampleDict, std::to_string(i), down);
        }
    }

    if (options.usesGates()) {
        auto gateDict = register_module("gate", torch::nn::ParameterDict());
        for (auto i : m_keep)
            gates.emplace(i, gateDict->insert(std::to_string(i), at::zeros({ 1 }).set_requires_grad(true)));
    }

    auto blockDict = register_module("block", torch::nn::ModuleDict());
    for (auto i : m_keep) {
        if (options.ablation == "adapter-blocks") {
            const auto block
                = adapterBlocks
                      .emplace(i, LadderAdapterBlock(m_sideConfig, std::max<std::int64_t>(1, ds / 2)))
                      .first->second;
            addToDict(blockDict, std::to_string(i), block);
        } else {
            // The first kept layer owns the side relative position bias.
            auto block
                = blocks.emplace(i, T5Block(m_sideConfig, isDecoder, i == m_keep.front())).first->second;
            initBlock(*block, options.backbone);
            addToDict(blockDict, std::to_string(i), block);
        }
    }

    if (options.ablation == "cross-attention") {
        auto attentionDict = register_module("ladder_attention", torch::nn::ModuleDict());
        for (auto i : m_keep) {
            // Registered inside as "EncDecAttention" and "layer_norm".
            T5LayerAttention attention(m_sideConfig, isDecoder, false, true);
            ladderAttention.emplace(i, attention);
            initAttention(*attention->attention, options.backbone);
            addToDict(attentionDict, std::to_string(i), attention);
        }
    }

    final_layer_norm = register_module("final_layer_norm", T5LayerNorm(ds, m_sideConfig.layerNormEpsilon));

    if (options.sideAttention == "sdpa") {
        for (auto& [_, block] : blocks) {
            block->selfAttention->attention->setRecomputedAttention(true);
            if (block->crossAttention)
                block->crossAttention->attention->setRecomputedAttention(true);
        }
        for (auto& [_, attention] : ladderAttention)
            attention->attention->setRecomputedAttention(true);
    }
}

at::Tensor LadderSideStackImpl::gateValue(std::int64_t layer) const
{
    const auto it = gates.find(layer);
    if (it == gates.end())
        throw Error("ladder: side layer " + std::to_string(layer) + " has no gate");
    return at::sigmoid(it->second / m_options.gateTemperature);
}

at::Tensor LadderSideStackImpl::ladderInput(std::int64_t layer, const std::vector<at::Tensor>& ladders) const
{
    const auto index = static_cast<std::size_t>(layer);
    if (index >= ladders.size() || !ladders[index].defined())
        throw Error("ladder: the backbone output of layer " + std::to_string(layer) + " was not provided");
    return ladders[index];
}

at::Tensor LadderSideStackImpl::downsampleLadder(std::int64_t layer, const at::Tensor& ladder)
{
    auto& down = downsamples.at(layer);
    const bool lowPrecision = ladder.scalar_type() != down->weight.scalar_type()
        && !at::autocast::is_autocast_enabled(ladder.device().type());
    if (!lowPrecision || !at::GradMode::is_enabled())
        return lowPrecision ? down(ladder.to(down->weight.scalar_type())) : down(ladder);
    // ladder_dtype bf16: at::linear would keep the fp32 copy of the ladder for the weight's gradient.
    const RecomputeFn fn = [down](const std::vector<at::Tensor>& in) mutable {
        return down(in[0].to(down->weight.scalar_type()));
    };
    return checkpointed(fn, { ladder });
}

at::Tensor LadderSideStackImpl::sideLayer(std::int64_t i, const at::Tensor& sideIn, const at::Tensor& ladder,
    const at::Tensor& selfBias, const at::Tensor& sideEncoderHidden, const at::Tensor& crossBias,
    LadderSideCache* cache)
{
    at::Tensor side = sideIn;
    BlockCache* blockCache = cache ? &cache->blocks.blocks[static_cast<std::size_t>(i)] : nullptr;
    if (m_options.usesGates()) {
        // side_in = mu_i * side + (1 - mu_i) * Down_i(backbone block i output)
        const auto mu = gateValue(i);
        auto down = downsampleLadder(i, ladder);
        if (down.size(1) < side.size(1)) // visual positions after the text (docs/VL.md): no backbone there
            down = at::constant_pad_nd(down, { 0, 0, 0, side.size(1) - down.size(1) });
        side = mu * side + (1.0 - mu) * down;
    }
    if (!adapterBlocks.empty())
        return adapterBlocks.at(i)(side);
    auto& block = *blocks.at(i);
    side = block.selfAttention(side, at::Tensor(), selfBias, blockCache ? &blockCache->self : nullptr);
    if (!ladderAttention.empty()) {
        // Cross-attention to the downsampled backbone block output (keys/values), with the same
        // relative bias and mask as self-attention: position t sees backbone positions the mask allows.
        at::Tensor keys = downsampleLadder(i, ladder);
        if (cache) {
            auto& history = cache->ladderKeys[i];
            if (history.defined())
                keys = at::cat({ history, keys }, 1);
            history = keys;
        }
        side = ladderAttention.at(i)(side, keys, selfBias, nullptr);
    }
    if (block.crossAttention) {
        if (!sideEncoderHidden.defined())
            throw Error("ladder: the side decoder needs the side encoder output");
        side = block.crossAttention(
            side, sideEncoderHidden, crossBias, blockCache ? &blockCache->cross : nullptr);
    }
    return block.feedForward(side);
}

at::Tensor LadderSideStackImpl::forward(const at::Tensor& embeddings, const std::vector<at::Tensor>& ladders,
    const at::Tensor& attentionMask, const at::Tensor& sideEncoderHidden, const at::Tensor& encoderMask,
    LadderSideCache* cache, std::int64_t textLength)
{
    if (textLength >= 0 && (m_isDecoder || cache))
        throw Error("ladder: text and visual positions are the side encoder's input");
    const auto batch = embeddings.size(0);
    const auto length = embeddings.size(1);
    const auto dtype = embeddings.scalar_type();
    const auto device = embeddings.device();
    const auto longOpts = at::TensorOptions().dtype(at::kLong).device(device);
    const std::int64_t past = cache ? cache->blocks.pastLength : 0;
    const std::int64_t keyLength = past + length;
    if (cache && static_cast<std::int64_t>(cache->blocks.blocks.size()) <= m_keep.back())
        cache->blocks.blocks.resize(static_cast<std::size_t>(m_keep.back() + 1));

    // Self-attention mask as the backbone's: padding (encoder) or causal x padding (decoder).
    const at::Tensor mask01
        = attentionMask.defined() ? attentionMask : at::ones({ batch, keyLength }, longOpts);
    at::Tensor selfMask;
    if (m_isDecoder) {
        const auto queryPos = at::arange(past, keyLength, longOpts).unsqueeze(1);
        const auto keyPos = at::arange(keyLength, longOpts).unsqueeze(0);
        const auto causal = (keyPos <= queryPos).unsqueeze(0).unsqueeze(0);
        selfMask
            = T5StackImpl::extendedMask(causal.to(dtype) * mask01.unsqueeze(1).unsqueeze(1).to(dtype), dtype);
    } else {
        selfMask = T5StackImpl::extendedMask(mask01.unsqueeze(1).unsqueeze(1), dtype);
    }
    // The first kept layer owns the relative position bias; computed once, shared by every side block.
    at::Tensor selfBias = selfMask;
    if (!blocks.empty()) {
        auto& owner = *blocks.at(m_keep.front())->selfAttention->attention;
        selfBias = (textLength >= 0 ? textOnlyPositionBias(owner, textLength, length, device)
                                    : owner.computeBias(length, keyLength, device))
            + selfMask;
    }

    at::Tensor crossBias;
    if (m_isDecoder && sideEncoderHidden.defined()) {
        const auto encMask01
            = encoderMask.defined() ? encoderMask : at::ones({ batch, sideEncoderHidden.size(1) }, longOpts);
        crossBias = T5StackImpl::extendedMask(encMask01.unsqueeze(1).unsqueeze(1), dtype);
    }

    // Initial side state: the downsampled (dropped-out) token embeddings.
    at::Tensor side = downsampleEmbed(applyDropout(embeddings, m_sideConfig.dropoutRate, is_training()));

    const bool recompute = m_options.sideCheckpoint && !cache && at::GradMode::is_enabled();
    for (auto i : m_keep) {
        const at::Tensor ladder = m_options.usesLadders() ? ladderInput(i, ladders) : at::Tensor();
        if (!recompute) {
            side = sideLayer(i, side, ladder, selfBias, sideEncoderHidden, crossBias, cache);
            continue;
        }
        // side_checkpoint: only the layer's inputs are kept; model/Recompute.h runs it again in backward.
        const RecomputeFn unit = [this, i](const std::vector<at::Tensor>& in) {
            return sideLayer(i, in[0], in[1], in[2], in[3], in[4], nullptr);
        };
        side = checkpointed(unit, { side, ladder, selfBias, sideEncoderHidden, crossBias });
    }
    if (cache)
        cache->blocks.pastLength = keyLength;
    return applyDropout(final_layer_norm(side), m_sideConfig.dropoutRate, is_training());
}

// ---------------------------------------------------------------------------------------------------
LadderSideNetworkImpl::LadderSideNetworkImpl(const LadderSideOptions& options)
    : m_options(options)
{
    m_options.validate();
    if (m_options.hasSideEncoder())
        side_encoder = register_module("side_encoder", LadderSideStack(m_options, false));
    side_decoder = register_module("side_decoder", LadderSideStack(m_options, true));
    side_final_upsample = register_module("side_final_upsample",
        ladderLinear(m_options.backbone.dModel / m_options.r, m_options.backbone.dModel));
    if (m_options.usesMerge())
        side_merge_gate = register_parameter("side_merge_gate", at::zeros({ 1 }));
}

at::Tensor LadderSideNetworkImpl::mergeGateValue() const
{
    if (!side_merge_gate.defined())
        throw Error("ladder: this side network has no merge gate");
    return at::sigmoid(side_merge_gate / m_options.gateTemperature);
}

at::Tensor LadderSideNetworkImpl::head(const at::Tensor& sideDecoderOutput, const at::Tensor& backboneFinal)
{
    auto out = side_final_upsample(sideDecoderOutput);
    if (side_merge_gate.defined()) {
        if (!backboneFinal.defined())
            throw Error("ladder: the merge gate needs the backbone decoder's final output");
        const auto g = mergeGateValue();
        out = g * out + (1.0 - g) * backboneFinal;
    }
    return out;
}

LadderSideCache LadderSideNetworkImpl::makeCache() const
{
    LadderSideCache cache;
    cache.blocks.blocks.resize(static_cast<std::size_t>(m_options.backbone.numDecoderLayers));
    return cache;
}

} // namespace ladder
