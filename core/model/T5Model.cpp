#include "model/T5Model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "model/Generation.h"
#include "model/Recompute.h"
#include "util/Error.h"

namespace ladder {
namespace {

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
    if (act == "tanh")
        return at::tanh(x);
    throw Error("T5: unsupported activation " + act);
}

torch::nn::Linear linear(std::int64_t in, std::int64_t out)
{
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

T5Linear projection(std::int64_t in, std::int64_t out)
{
    return T5Linear(in, out);
}

double minValue(c10::ScalarType dtype)
{
    switch (dtype) {
    case at::kFloat:
        return std::numeric_limits<float>::lowest();
    case at::kDouble:
        return std::numeric_limits<double>::lowest();
    case at::kBFloat16:
        return -3.3895313892515355e38; // torch.finfo(torch.bfloat16).min
    case at::kHalf:
        return -65504.0;
    default:
        throw Error("T5: unsupported compute dtype for attention masks");
    }
}

thread_local bool t_skipInit = false;

} // namespace

SkipParameterInit::SkipParameterInit()
    : m_previous(t_skipInit)
{
    t_skipInit = true;
}

SkipParameterInit::~SkipParameterInit()
{
    t_skipInit = m_previous;
}

bool SkipParameterInit::active()
{
    return t_skipInit;
}

// ---------------------------------------------------------------------------------------------------
T5LayerNormImpl::T5LayerNormImpl(std::int64_t dim, double eps)
    : m_eps(eps)
{
    weight = register_parameter("weight", at::ones({ dim }));
}

at::Tensor T5LayerNormImpl::forward(const at::Tensor& hidden)
{
    const auto variance = hidden.to(at::kFloat).pow(2).mean(-1, true);
    auto normed = hidden * at::rsqrt(variance + m_eps);
    if (weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16)
        normed = normed.to(weight.scalar_type());
    return bias.defined() ? weight * normed + bias : weight * normed;
}

void T5LayerNormImpl::addBias()
{
    if (!bias.defined())
        bias = register_parameter("bias", at::zeros_like(weight));
}

// ---------------------------------------------------------------------------------------------------
T5LinearImpl::T5LinearImpl(std::int64_t in, std::int64_t out)
    : m_in(in)
    , m_out(out)
{
    // HF initialises T5 weights itself; checkpoints overwrite them. Kaiming-uniform as nn.Linear.
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    auto w = at::empty({ out, in });
    if (!SkipParameterInit::active())
        w.uniform_(-bound, bound);
    weight = register_parameter("weight", w);
}

at::Tensor T5LinearImpl::forward(const at::Tensor& x)
{
    at::Tensor y;
    if (m_quantized.defined()) {
        // The bias (BitFit) is added in place, as at::linear's fused addmm: no second output tensor.
        y = m_quantized.matmul(x);
        if (bias.defined())
            y.add_(bias.scalar_type() == y.scalar_type() ? bias : bias.to(y.scalar_type()));
    } else {
        y = at::linear(x, weight, bias.defined() ? bias : at::Tensor());
    }
    if (lora_A.defined() && !m_merged) {
        const auto in = (is_training() && m_loraDropout > 0.0) ? at::dropout(x, m_loraDropout, true) : x;
        y = y + at::linear(at::linear(in, lora_A), lora_B) * m_loraScale;
    }
    return y;
}

void T5LinearImpl::addBias()
{
    if (!bias.defined())
        bias = register_parameter("bias", at::zeros({ m_out }, weight.options()));
}

void T5LinearImpl::addLora(std::int64_t rank, double alpha, double dropout)
{
    if (lora_A.defined())
        throw Error("LoRA: projection already has a LoRA path");
    if (rank <= 0)
        throw Error("LoRA: rank must be positive");
    // As loralib/PEFT: A Kaiming-uniform (a = sqrt(5)), B zero, so the model starts unchanged.
    const double bound = 1.0 / std::sqrt(static_cast<double>(m_in));
    lora_A
        = register_parameter("lora_A", at::empty({ rank, m_in }, weight.options()).uniform_(-bound, bound));
    lora_B = register_parameter("lora_B", at::zeros({ m_out, rank }, weight.options()));
    m_loraScale = alpha / static_cast<double>(rank);
    m_loraDropout = dropout;
}

void T5LinearImpl::mergeLora()
{
    if (!lora_A.defined() || m_merged)
        return;
    if (m_quantized.defined())
        throw Error("LoRA merge: the base weight is stored as " + quantDtypeName(m_quantized.dtype())
            + " (frozen backbone storage); merging would requantise it. Keep the LoRA path unmerged");
    at::NoGradGuard noGrad;
    weight.add_(at::matmul(lora_B, lora_A) * m_loraScale);
    m_merged = true;
}

void T5LinearImpl::unmergeLora()
{
    if (!lora_A.defined() || !m_merged)
        return;
    at::NoGradGuard noGrad;
    weight.sub_(at::matmul(lora_B, lora_A) * m_loraScale);
    m_merged = false;
}

namespace {

// Frees a dense weight held in frozen storage: the parameter keeps its name, dtype and device, with no
// elements.
void makePlaceholder(at::Tensor& weight)
{
    at::NoGradGuard noGrad;
    weight.set_data(at::empty({ 0 }, weight.options()));
}

} // namespace

void T5LinearImpl::quantize(QuantDtype dtype, std::int64_t groupSize)
{
    if (m_quantized.defined())
        throw Error("quantize: projection is already stored as " + quantDtypeName(m_quantized.dtype()));
    if (weight.requires_grad())
        throw Error("quantize: a trainable weight cannot be held in frozen storage");
    if (m_merged)
        throw Error("quantize: unmerge LoRA first");
    m_quantized = QuantizedWeight::quantize(weight, dtype, groupSize);
    makePlaceholder(weight);
}

void T5LinearImpl::setQuantized(QuantizedWeight stored)
{
    if (stored.rows() != m_out || stored.cols() != m_in)
        throw Error("projection (" + std::to_string(m_out) + ", " + std::to_string(m_in)
            + "): stored weight is (" + std::to_string(stored.rows()) + ", " + std::to_string(stored.cols())
            + ")");
    if (weight.requires_grad())
        throw Error("quantize: a trainable weight cannot be held in frozen storage");
    if (m_merged)
        throw Error("quantize: unmerge LoRA first");
    stored.to(weight.device());
    m_quantized = std::move(stored);
    makePlaceholder(weight);
}

at::Tensor T5LinearImpl::denseWeight() const
{
    return m_quantized.defined() ? m_quantized.dequantize(weight.scalar_type()) : weight;
}

void T5LinearImpl::to(torch::Device device, torch::Dtype dtype, bool nonBlocking)
{
    torch::nn::Module::to(device, dtype, nonBlocking);
    m_quantized.to(device);
}

void T5LinearImpl::to(torch::Dtype dtype, bool nonBlocking)
{
    torch::nn::Module::to(dtype, nonBlocking);
}

void T5LinearImpl::to(torch::Device device, bool nonBlocking)
{
    torch::nn::Module::to(device, nonBlocking);
    m_quantized.to(device);
}

// ---------------------------------------------------------------------------------------------------
BottleneckAdapterImpl::BottleneckAdapterImpl(std::int64_t dim, std::int64_t hidden, std::string activation)
    : m_activation(std::move(activation))
{
    down = register_module("down", torch::nn::Linear(dim, hidden));
    up = register_module("up", torch::nn::Linear(hidden, dim));
    at::NoGradGuard noGrad;
    for (auto* l : { &down, &up }) {
        (*l)->weight.normal_(0.0, 0.01);
        (*l)->bias.zero_();
    }
}

at::Tensor BottleneckAdapterImpl::forward(const at::Tensor& x)
{
    return x + up(activation(down(x), m_activation));
}

// ---------------------------------------------------------------------------------------------------
T5AttentionImpl::T5AttentionImpl(const T5AttentionOptions& options)
    : m_options(options)
{
    const auto inner = options.numHeads * options.dKv;
    q = register_module("q", projection(options.dModel, inner));
    k = register_module("k", projection(options.dModel, inner));
    v = register_module("v", projection(options.dModel, inner));
    o = register_module("o", projection(inner, options.dModel));
    if (options.hasRelativeBias)
        relative_attention_bias = register_module(
            "relative_attention_bias", torch::nn::Embedding(options.numBuckets, options.numHeads));
}

at::Tensor T5AttentionImpl::relativePositionBucket(
    const at::Tensor& relativePosition, bool bidirectional, std::int64_t numBuckets, std::int64_t maxDistance)
{
    auto buckets = at::zeros_like(relativePosition);
    auto position = relativePosition;
    if (bidirectional) {
        numBuckets /= 2;
        buckets = buckets + (position > 0).to(at::kLong) * numBuckets;
        position = position.abs();
    } else {
        position = -at::clamp_max(position, 0);
    }
    const std::int64_t maxExact = numBuckets / 2;
    const auto isSmall = position < maxExact;
    auto large = maxExact
        + (at::log(position.to(at::kFloat) / static_cast<double>(maxExact))
            / std::log(static_cast<double>(maxDistance) / static_cast<double>(maxExact))
            * static_cast<double>(numBuckets - maxExact))
              .to(at::kLong);
    large = at::clamp_max(large, numBuckets - 1);
    return buckets + at::where(isSmall, position, large);
}

at::Tensor T5AttentionImpl::computeBias(
    std::int64_t queryLength, std::int64_t keyLength, const c10::Device& device)
{
    if (!relative_attention_bias)
        throw Error("T5: computeBias called on a layer without relative_attention_bias");
    const auto opts = at::TensorOptions().dtype(at::kLong).device(device);
    const auto context = at::arange(keyLength - queryLength, keyLength, opts).unsqueeze(1);
    const auto memory = at::arange(keyLength, opts).unsqueeze(0);
    const auto buckets = relativePositionBucket(
        memory - context, !m_options.isDecoder, m_options.numBuckets, m_options.maxDistance);
    return relative_attention_bias(buckets).permute({ 2, 0, 1 }).unsqueeze(0); // (1, heads, q, k)
}

at::Tensor T5AttentionImpl::forward(const at::Tensor& hidden, const at::Tensor& keyValueStates,
    const at::Tensor& positionBias, AttentionCache* cache)
{
    const auto batch = hidden.size(0);
    const auto heads = m_options.numHeads;
    const auto dKv = m_options.dKv;
    auto shape = [&](const at::Tensor& x) { return x.view({ batch, -1, heads, dKv }).transpose(1, 2); };

    const auto query = shape(q(hidden));
    at::Tensor key, value;
    const bool cross = keyValueStates.defined();
    if (cross) {
        if (cache && cache->key.defined()) {
            key = cache->key;
            value = cache->value;
        } else {
            key = shape(k(keyValueStates));
            value = shape(v(keyValueStates));
            if (cache) {
                cache->key = key;
                cache->value = value;
            }
        }
    } else {
        key = shape(k(hidden));
        value = shape(v(hidden));
        if (cache) {
            if (cache->key.defined()) {
                key = at::cat({ cache->key, key }, 2);
                value = at::cat({ cache->value, value }, 2);
            }
            cache->key = key;
            cache->value = value;
        }
    }

    at::Tensor mixed;
    if (m_recomputeAttention && !cache) {
        // side_attention sdpa (model/Recompute.h): fused forward, the weights recomputed in backward.
        mixed = recomputedAttention(query, key, value, positionBias, m_options.dropout, is_training());
    } else {
        auto scores = at::matmul(query, key.transpose(2, 3)); // no 1/sqrt(d_kv) in T5
        if (positionBias.defined())
            scores = scores + positionBias;
        auto weights = at::softmax(scores.to(at::kFloat), -1).to(scores.scalar_type());
        weights = applyDropout(weights, m_options.dropout, is_training());
        mixed = at::matmul(weights, value);
    }
    const auto context = mixed.transpose(1, 2).contiguous().view({ batch, -1, heads * dKv });
    return o(context);
}

// ---------------------------------------------------------------------------------------------------
T5LayerAttentionImpl::T5LayerAttentionImpl(
    const T5Config& config, bool isDecoder, bool hasRelativeBias, bool isCross)
    : m_dropout(config.dropoutRate)
{
    attention = register_module(isCross ? "EncDecAttention" : "SelfAttention",
        T5Attention(T5AttentionOptions(config, isDecoder, hasRelativeBias)));
    layer_norm = register_module("layer_norm", T5LayerNorm(config.dModel, config.layerNormEpsilon));
}

at::Tensor T5LayerAttentionImpl::forward(const at::Tensor& hidden, const at::Tensor& keyValueStates,
    const at::Tensor& positionBias, AttentionCache* cache)
{
    auto out = attention(layer_norm(hidden), keyValueStates, positionBias, cache);
    if (adapter)
        out = adapter(out);
    return hidden + applyDropout(out, m_dropout, is_training());
}

void T5LayerAttentionImpl::addAdapter(std::int64_t hidden, const std::string& activation)
{
    if (!adapter)
        adapter
            = register_module("adapter", BottleneckAdapter(layer_norm->weight.size(0), hidden, activation));
}

// ---------------------------------------------------------------------------------------------------
T5DenseImpl::T5DenseImpl(const T5Config& config)
    : m_act(config.denseActFn())
    , m_gated(config.isGatedAct())
    , m_dropout(config.dropoutRate)
{
    if (m_gated) {
        wi_0 = register_module("wi_0", projection(config.dModel, config.dFf));
        wi_1 = register_module("wi_1", projection(config.dModel, config.dFf));
    } else {
        wi = register_module("wi", projection(config.dModel, config.dFf));
    }
    wo = register_module("wo", projection(config.dFf, config.dModel));
}

std::vector<T5Linear> T5DenseImpl::projections() const
{
    if (m_gated)
        return { wi_0, wi_1, wo };
    return { wi, wo };
}

at::Tensor T5DenseImpl::forward(const at::Tensor& hidden)
{
    at::Tensor h = m_gated ? activation(wi_0(hidden), m_act) * wi_1(hidden) : activation(wi(hidden), m_act);
    h = applyDropout(h, m_dropout, is_training());
    return wo(h);
}

T5LayerFFImpl::T5LayerFFImpl(const T5Config& config)
    : m_dropout(config.dropoutRate)
{
    DenseReluDense = register_module("DenseReluDense", T5Dense(config));
    layer_norm = register_module("layer_norm", T5LayerNorm(config.dModel, config.layerNormEpsilon));
}

at::Tensor T5LayerFFImpl::forward(const at::Tensor& hidden)
{
    auto out = DenseReluDense(layer_norm(hidden));
    if (adapter)
        out = adapter(out);
    return hidden + applyDropout(out, m_dropout, is_training());
}

void T5LayerFFImpl::addAdapter(std::int64_t hidden, const std::string& activation)
{
    if (!adapter)
        adapter
            = register_module("adapter", BottleneckAdapter(layer_norm->weight.size(0), hidden, activation));
}

// ---------------------------------------------------------------------------------------------------
T5BlockImpl::T5BlockImpl(const T5Config& config, bool isDecoder, bool hasRelativeBias)
{
    layer = register_module("layer", torch::nn::ModuleList());
    selfAttention = T5LayerAttention(config, isDecoder, hasRelativeBias, false);
    layer->push_back(selfAttention);
    if (isDecoder) {
        crossAttention = T5LayerAttention(config, isDecoder, false, true);
        layer->push_back(crossAttention);
    }
    feedForward = T5LayerFF(config);
    layer->push_back(feedForward);
}

at::Tensor T5BlockImpl::forward(const at::Tensor& hidden, const at::Tensor& selfBias,
    const at::Tensor& encoderHidden, const at::Tensor& crossBias, BlockCache* cache)
{
    auto h = selfAttention(hidden, at::Tensor(), selfBias, cache ? &cache->self : nullptr);
    if (crossAttention)
        h = crossAttention(h, encoderHidden, crossBias, cache ? &cache->cross : nullptr);
    return feedForward(h);
}

// ---------------------------------------------------------------------------------------------------
T5StackImpl::T5StackImpl(const T5Config& config, bool isDecoder, torch::nn::Embedding sharedEmbedding)
    : m_embed(std::move(sharedEmbedding))
    , m_isDecoder(isDecoder)
    , m_dropout(config.dropoutRate)
{
    block = register_module("block", torch::nn::ModuleList());
    const auto layers = isDecoder ? config.numDecoderLayers : config.numLayers;
    for (std::int64_t i = 0; i < layers; ++i) {
        blocks.push_back(T5Block(config, isDecoder, i == 0));
        block->push_back(blocks.back());
    }
    final_layer_norm
        = register_module("final_layer_norm", T5LayerNorm(config.dModel, config.layerNormEpsilon));
}

at::Tensor T5StackImpl::extendedMask(const at::Tensor& mask01, c10::ScalarType dtype)
{
    return (1.0 - mask01.to(dtype)) * minValue(dtype);
}

at::Tensor textOnlyPositionBias(
    T5AttentionImpl& owner, std::int64_t textLength, std::int64_t length, const c10::Device& device)
{
    if (textLength < 0 || textLength >= length)
        return owner.computeBias(length, length, device);
    const auto visual = length - textLength;
    return at::constant_pad_nd(owner.computeBias(textLength, textLength, device), { 0, visual, 0, visual });
}

StackOutput T5StackImpl::forward(const at::Tensor& inputsEmbeds, const at::Tensor& attentionMask,
    const at::Tensor& encoderHidden, const at::Tensor& encoderMask, DecoderCache* cache,
    const std::vector<std::int64_t>* keepBlockOutputs, std::int64_t textLength)
{
    if (textLength >= 0 && (m_isDecoder || cache))
        throw Error("T5 stack: text and visual positions are an encoder's input");
    const auto batch = inputsEmbeds.size(0);
    const auto length = inputsEmbeds.size(1);
    const auto dtype = inputsEmbeds.scalar_type();
    const auto device = inputsEmbeds.device();
    const std::int64_t past = cache ? cache->pastLength : 0;
    const std::int64_t keyLength = past + length;
    if (cache && cache->blocks.size() != blocks.size())
        cache->blocks.resize(blocks.size());

    // Self-attention mask: padding (encoder) or causal x padding (decoder), over past + current keys.
    at::Tensor mask01 = attentionMask.defined()
        ? attentionMask
        : at::ones({ batch, keyLength }, at::TensorOptions().dtype(at::kLong).device(device));
    at::Tensor selfMask;
    if (m_isDecoder) {
        const auto opts = at::TensorOptions().dtype(at::kLong).device(device);
        const auto queryPos = at::arange(past, keyLength, opts).unsqueeze(1);
        const auto keyPos = at::arange(keyLength, opts).unsqueeze(0);
        const auto causal = (keyPos <= queryPos).unsqueeze(0).unsqueeze(0); // (1, 1, q, k)
        selfMask = extendedMask(causal.to(dtype) * mask01.unsqueeze(1).unsqueeze(1).to(dtype), dtype);
    } else {
        selfMask = extendedMask(mask01.unsqueeze(1).unsqueeze(1), dtype);
    }
    // The first block owns the relative position bias; it is computed once and shared by every block.
    const auto selfBias
        = (textLength >= 0 ? textOnlyPositionBias(
               *blocks.front()->selfAttention->attention, textLength, length, device)
                           : blocks.front()->selfAttention->attention->computeBias(length, keyLength, device))
        + selfMask;

    at::Tensor crossBias;
    if (m_isDecoder) {
        if (!encoderHidden.defined())
            throw Error("T5 decoder: encoder hidden states are required");
        const auto encMask01 = encoderMask.defined()
            ? encoderMask
            : at::ones({ batch, encoderHidden.size(1) }, at::TensorOptions().dtype(at::kLong).device(device));
        crossBias = extendedMask(encMask01.unsqueeze(1).unsqueeze(1), dtype);
    }

    StackOutput out;
    out.embeddings = applyDropout(inputsEmbeds, m_dropout, is_training());
    at::Tensor hidden = out.embeddings;
    out.blockOutputs.reserve(blocks.size());
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        hidden = blocks[i]->forward(
            hidden, selfBias, encoderHidden, crossBias, cache ? &cache->blocks[i] : nullptr);
        const bool keep = !keepBlockOutputs
            || std::find(keepBlockOutputs->begin(), keepBlockOutputs->end(), static_cast<std::int64_t>(i))
                != keepBlockOutputs->end();
        const auto keptDtype = KeptBlockOutputDtype::current();
        if (keep && keptDtype && hidden.scalar_type() != *keptDtype)
            out.blockOutputs.push_back(hidden.to(*keptDtype));
        else
            out.blockOutputs.push_back(keep ? hidden : at::Tensor());
    }
    out.lastHiddenState = applyDropout(final_layer_norm(hidden), m_dropout, is_training());
    if (cache)
        cache->pastLength = keyLength;
    return out;
}

// ---------------------------------------------------------------------------------------------------
T5ForConditionalGenerationImpl::T5ForConditionalGenerationImpl(const T5Config& config)
    : m_config(config)
{
    m_config.validate();
    shared = register_module("shared", torch::nn::Embedding(config.vocabSize, config.dModel));
    encoder = register_module("encoder", T5Stack(config, false, shared));
    decoder = register_module("decoder", T5Stack(config, true, shared));
    if (!config.tieWordEmbeddings)
        lm_head = register_module("lm_head", linear(config.dModel, config.vocabSize));
}

StackOutput T5ForConditionalGenerationImpl::encode(
    const at::Tensor& inputIds, const at::Tensor& attentionMask)
{
    return encoder->forward(embed(inputIds), attentionMask);
}

StackOutput T5ForConditionalGenerationImpl::decode(const at::Tensor& decoderInputIds,
    const at::Tensor& encoderHidden, const at::Tensor& encoderMask, DecoderCache* cache)
{
    return decoder->forward(embed(decoderInputIds), at::Tensor(), encoderHidden, encoderMask, cache);
}

const QuantizedWeight& T5ForConditionalGenerationImpl::lmHeadQuantized() const
{
    return m_config.tieWordEmbeddings ? m_sharedQuantized : m_lmHeadQuantized;
}

at::Tensor T5ForConditionalGenerationImpl::lmHeadWeight() const
{
    if (lmHeadQuantized().defined())
        throw Error(std::string("T5: the LM head (") + (m_config.tieWordEmbeddings ? "shared" : "lm_head")
            + ".weight) is stored as " + quantDtypeName(lmHeadQuantized().dtype())
            + " (frozen backbone storage) and has no dense weight; use lmLogits() or lmHeadQuantized()");
    return m_config.tieWordEmbeddings ? shared->weight : lm_head->weight;
}

at::Tensor T5ForConditionalGenerationImpl::lmLogits(const at::Tensor& decoderHidden)
{
    const auto hidden = m_config.tieWordEmbeddings
        ? decoderHidden * std::pow(static_cast<double>(m_config.dModel), -0.5)
        : decoderHidden;
    const auto& stored = lmHeadQuantized();
    if (stored.defined()) {
        auto logits = stored.matmul(hidden);
        if (lm_head_bias.defined())
            logits.add_(lm_head_bias.scalar_type() == logits.scalar_type()
                    ? lm_head_bias
                    : lm_head_bias.to(logits.scalar_type()));
        return logits;
    }
    return at::linear(hidden, lmHeadWeight(), lm_head_bias.defined() ? lm_head_bias : at::Tensor());
}

void T5ForConditionalGenerationImpl::addLmHeadBias()
{
    if (!lm_head_bias.defined())
        lm_head_bias
            = register_parameter("lm_head_bias", at::zeros({ m_config.vocabSize }, shared->weight.options()));
}

at::Tensor T5ForConditionalGenerationImpl::shiftRight(const at::Tensor& labels) const
{
    auto shifted = at::full_like(labels, m_config.decoderStartTokenId);
    if (labels.size(1) > 1)
        shifted.narrow(1, 1, labels.size(1) - 1).copy_(labels.narrow(1, 0, labels.size(1) - 1));
    return shifted.masked_fill(shifted == -100, m_config.padTokenId);
}

Seq2SeqOutput T5ForConditionalGenerationImpl::forward(const at::Tensor& inputIds,
    const at::Tensor& attentionMask, const at::Tensor& labels, const at::Tensor& decoderInputIds)
{
    if (!labels.defined() && !decoderInputIds.defined())
        throw Error("T5 forward: labels or decoder input ids are required");
    Seq2SeqOutput out;
    out.encoder = encode(inputIds, attentionMask);
    const auto decIn = decoderInputIds.defined() ? decoderInputIds : shiftRight(labels);
    out.decoder = decode(decIn, out.encoder.lastHiddenState, attentionMask);
    out.logits = lmLogits(out.decoder.lastHiddenState);
    if (labels.defined())
        out.loss = crossEntropy(out.logits, labels);
    return out;
}

TargetOutput T5ForConditionalGenerationImpl::forwardTargets(
    const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& labels)
{
    auto out = forward(inputIds, attentionMask, labels);
    return { out.logits, out.loss };
}

DecoderCache T5ForConditionalGenerationImpl::makeCache() const
{
    DecoderCache cache;
    cache.blocks.resize(static_cast<std::size_t>(m_config.numDecoderLayers));
    return cache;
}

BackboneShape T5ForConditionalGenerationImpl::shape() const
{
    return m_config.shape();
}

at::Tensor T5ForConditionalGenerationImpl::embed(const at::Tensor& ids)
{
    if (m_sharedQuantized.defined())
        return m_sharedQuantized.embedding(ids, shared->weight.scalar_type());
    return shared(ids);
}

StackOutput T5ForConditionalGenerationImpl::runEncoder(const at::Tensor& embeddings,
    const at::Tensor& attentionMask, const std::vector<std::int64_t>* keepBlockOutputs)
{
    return encoder->forward(embeddings, attentionMask, {}, {}, nullptr, keepBlockOutputs);
}

StackOutput T5ForConditionalGenerationImpl::runDecoder(const at::Tensor& embeddings,
    const at::Tensor& encoderHidden, const at::Tensor& encoderMask, DecoderCache* cache,
    const std::vector<std::int64_t>* keepBlockOutputs, const at::Tensor& selfAttentionMask)
{
    if (selfAttentionMask.defined())
        throw Error("T5 decoder: a self-attention padding mask is not supported (the decoder input is never "
                    "left-padded); pass an undefined tensor");
    return decoder->forward(embeddings, at::Tensor(), encoderHidden, encoderMask, cache, keepBlockOutputs);
}

std::unique_ptr<Seq2SeqStepper> T5ForConditionalGenerationImpl::makeStepper()
{
    // Modules derive from enable_shared_from_this; the stepper shares this model as a holder would.
    return std::make_unique<T5Stepper>(T5ForConditionalGeneration(
        std::static_pointer_cast<T5ForConditionalGenerationImpl>(shared_from_this())));
}

std::string T5ForConditionalGenerationImpl::configJson() const
{
    return m_config.toJson().dump();
}

std::vector<std::pair<std::string, at::Tensor>> T5ForConditionalGenerationImpl::namedWeights() const
{
    std::map<std::string, const QuantizedWeight*> stored;
    for (const auto& [name, q] : quantizedWeights())
        stored[name] = q;
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : named_parameters(true)) {
        const auto it = stored.find(item.key());
        if (it == stored.end()) {
            out.emplace_back(item.key(), item.value());
            continue;
        }
        for (const auto& [part, tensor] : it->second->parts())
            out.emplace_back(item.key() + "." + part, tensor);
    }
    return out;
}

std::string T5ForConditionalGenerationImpl::weightStorage() const
{
    return m_weightStorage;
}

void T5ForConditionalGenerationImpl::quantizeShared(QuantDtype dtype, std::int64_t groupSize)
{
    if (m_sharedQuantized.defined())
        throw Error(
            "quantize: shared.weight is already stored as " + quantDtypeName(m_sharedQuantized.dtype()));
    if (shared->weight.requires_grad())
        throw Error(
            "quantize: shared.weight is trainable; only a frozen embedding can be held in frozen storage");
    m_sharedQuantized = QuantizedWeight::quantize(shared->weight, dtype, groupSize);
    makePlaceholder(shared->weight);
}

void T5ForConditionalGenerationImpl::quantizeLmHead(QuantDtype dtype, std::int64_t groupSize)
{
    if (!lm_head)
        throw Error("quantize: the LM head is tied to shared.weight");
    if (m_lmHeadQuantized.defined())
        throw Error(
            "quantize: lm_head.weight is already stored as " + quantDtypeName(m_lmHeadQuantized.dtype()));
    if (lm_head->weight.requires_grad())
        throw Error(
            "quantize: lm_head.weight is trainable; only a frozen head can be held in frozen storage");
    m_lmHeadQuantized = QuantizedWeight::quantize(lm_head->weight, dtype, groupSize);
    makePlaceholder(lm_head->weight);
}

void T5ForConditionalGenerationImpl::setSharedQuantized(QuantizedWeight stored)
{
    if (stored.rows() != m_config.vocabSize || stored.cols() != m_config.dModel)
        throw Error("shared.weight: stored weight is (" + std::to_string(stored.rows()) + ", "
            + std::to_string(stored.cols()) + "), expected (vocab_size, d_model)");
    if (shared->weight.requires_grad())
        throw Error(
            "quantize: shared.weight is trainable; only a frozen embedding can be held in frozen storage");
    stored.to(shared->weight.device());
    m_sharedQuantized = std::move(stored);
    makePlaceholder(shared->weight);
}

void T5ForConditionalGenerationImpl::setLmHeadQuantized(QuantizedWeight stored)
{
    if (!lm_head)
        throw Error("lm_head.weight: the LM head is tied to shared.weight");
    if (stored.rows() != m_config.vocabSize || stored.cols() != m_config.dModel)
        throw Error("lm_head.weight: stored weight is (" + std::to_string(stored.rows()) + ", "
            + std::to_string(stored.cols()) + "), expected (vocab_size, d_model)");
    if (lm_head->weight.requires_grad())
        throw Error(
            "quantize: lm_head.weight is trainable; only a frozen head can be held in frozen storage");
    stored.to(lm_head->weight.device());
    m_lmHeadQuantized = std::move(stored);
    makePlaceholder(lm_head->weight);
}

std::vector<std::pair<std::string, const QuantizedWeight*>>
T5ForConditionalGenerationImpl::quantizedWeights() const
{
    std::map<const void*, const QuantizedWeight*> byParameter;
    if (m_sharedQuantized.defined())
        byParameter[shared->weight.unsafeGetTensorImpl()] = &m_sharedQuantized;
    if (lm_head && m_lmHeadQuantized.defined())
        byParameter[lm_head->weight.unsafeGetTensorImpl()] = &m_lmHeadQuantized;
    for (const auto& item : named_modules("", false))
        if (const auto* linear = dynamic_cast<const T5LinearImpl*>(item.value().get()))
            if (linear->quantized())
                byParameter[linear->weight.unsafeGetTensorImpl()] = &linear->quantizedWeight();
    std::vector<std::pair<std::string, const QuantizedWeight*>> out;
    if (byParameter.empty())
        return out;
    for (const auto& item : named_parameters(true)) {
        const auto it = byParameter.find(item.value().unsafeGetTensorImpl());
        if (it != byParameter.end())
            out.emplace_back(item.key(), it->second);
    }
    return out;
}

void T5ForConditionalGenerationImpl::to(torch::Device device, torch::Dtype dtype, bool nonBlocking)
{
    torch::nn::Module::to(device, dtype, nonBlocking);
    m_sharedQuantized.to(device);
    m_lmHeadQuantized.to(device);
}

void T5ForConditionalGenerationImpl::to(torch::Dtype dtype, bool nonBlocking)
{
    torch::nn::Module::to(dtype, nonBlocking);
}

void T5ForConditionalGenerationImpl::to(torch::Device device, bool nonBlocking)
{
    torch::nn::Module::to(device, nonBlocking);
    m_sharedQuantized.to(device);
    m_lmHeadQuantized.to(device);
}

std::int64_t quantizedParameterCount(const torch::nn::Module& module)
{
    std::int64_t n = 0;
    auto count = [&n](const torch::nn::Module* m) {
        if (const auto* linear = dynamic_cast<const T5LinearImpl*>(m)) {
            if (linear->quantized())
                n += linear->quantizedWeight().numel();
        } else if (const auto* model = dynamic_cast<const T5ForConditionalGenerationImpl*>(m)) {
            if (model->sharedQuantized().defined())
                n += model->sharedQuantized().numel();
            if (model->lm_head && model->lmHeadQuantized().defined())
                n += model->lmHeadQuantized().numel();
        }
    };
    count(&module);
    for (const auto& child : module.modules(false))
        count(child.get());
    return n;
}

} // namespace ladder
