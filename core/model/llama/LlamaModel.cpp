#include "model/llama/LlamaModel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "model/CausalJoin.h"
#include "model/Generation.h"
#include "util/Error.h"

namespace ladder {
namespace {

at::Tensor rotateHalf(const at::Tensor& x)
{
    const auto half = x.size(-1) / 2;
    return at::cat({ -x.narrow(-1, half, half), x.narrow(-1, 0, half) }, -1);
}

// (batch, kv heads, time, head_dim) -> (batch, kv heads * groups, time, head_dim), HF's repeat_kv.
at::Tensor repeatKv(const at::Tensor& x, std::int64_t groups)
{
    if (groups == 1)
        return x;
    const auto s = x.sizes();
    return x.unsqueeze(2)
        .expand({ s[0], s[1], groups, s[2], s[3] })
        .reshape({ s[0], s[1] * groups, s[2], s[3] });
}

// torch.finfo(dtype).min: HF's masked-score value.
double lowestValue(at::ScalarType dtype)
{
    switch (dtype) {
    case at::kBFloat16:
        return -3.3895313892515355e38;
    case at::kHalf:
        return -65504.0;
    case at::kDouble:
        return std::numeric_limits<double>::lowest();
    default:
        return std::numeric_limits<float>::lowest();
    }
}

} // namespace

// ---------------------------------------------------------------------------------------------------
LlamaRMSNormImpl::LlamaRMSNormImpl(std::int64_t dim, double eps)
    : m_eps(eps)
{
    weight = register_parameter("weight", at::ones({ dim }));
}

at::Tensor LlamaRMSNormImpl::forward(const at::Tensor& hidden)
{
    const auto inputDtype = hidden.scalar_type();
    auto h = hidden.to(at::kFloat);
    const auto variance = h.pow(2).mean(-1, true);
    h = h * at::rsqrt(variance + m_eps);
    return weight * h.to(inputDtype);
}

// ---------------------------------------------------------------------------------------------------
LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c)
    : m_heads(c.numAttentionHeads)
    , m_kvHeads(c.numKeyValueHeads)
    , m_headDim(c.headDim)
{
    const auto h = c.hiddenSize, q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim;
    q_proj = register_module("q_proj", T5Linear(h, q));
    k_proj = register_module("k_proj", T5Linear(h, kv));
    v_proj = register_module("v_proj", T5Linear(h, kv));
    o_proj = register_module("o_proj", T5Linear(q, h));
    if (c.qkvBias())
        for (auto* p : { &q_proj, &k_proj, &v_proj })
            (*p)->addBias();
    if (c.oBias())
        o_proj->addBias();
}

at::Tensor LlamaAttentionImpl::forward(
    const at::Tensor& hidden, const RotaryTables& rope, const at::Tensor& allowed, AttentionCache* cache)
{
    const auto batch = hidden.size(0), length = hidden.size(1);
    auto q = q_proj(hidden).view({ batch, length, m_heads, m_headDim }).transpose(1, 2);
    auto k = k_proj(hidden).view({ batch, length, m_kvHeads, m_headDim }).transpose(1, 2);
    auto v = v_proj(hidden).view({ batch, length, m_kvHeads, m_headDim }).transpose(1, 2);
    const auto cos = rope.cos.unsqueeze(1), sin = rope.sin.unsqueeze(1);
    q = q * cos + rotateHalf(q) * sin;
    k = k * cos + rotateHalf(k) * sin;
    if (cache) {
        if (cache->key.defined()) {
            k = at::cat({ cache->key, k }, 2);
            v = at::cat({ cache->value, v }, 2);
        }
        cache->key = k;
        cache->value = v;
    }
    const auto groups = m_heads / m_kvHeads;
    const auto keys = repeatKv(k, groups), values = repeatKv(v, groups);
    // HF's eager attention: scores in the compute dtype, masked, softmax in float32, back to the dtype. A
    // masked key gets the dtype's lowest value (HF's additive mask), so a fully masked query row (a left
    // padding column) stays finite.
    auto scores = at::matmul(q, keys.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(m_headDim)));
    scores = scores.masked_fill(allowed.logical_not(), lowestValue(scores.scalar_type()));
    const auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
    const auto out
        = at::matmul(probs, values).transpose(1, 2).reshape({ batch, length, m_heads * m_headDim });
    return o_proj(out);
}

// ---------------------------------------------------------------------------------------------------
LlamaMLPImpl::LlamaMLPImpl(const LlamaConfig& c)
{
    gate_proj = register_module("gate_proj", T5Linear(c.hiddenSize, c.intermediateSize));
    up_proj = register_module("up_proj", T5Linear(c.hiddenSize, c.intermediateSize));
    down_proj = register_module("down_proj", T5Linear(c.intermediateSize, c.hiddenSize));
    if (c.mlpHasBias())
        for (auto* p : { &gate_proj, &up_proj, &down_proj })
            (*p)->addBias();
}

at::Tensor LlamaMLPImpl::forward(const at::Tensor& x)
{
    return down_proj(at::silu(gate_proj(x)) * up_proj(x));
}

// ---------------------------------------------------------------------------------------------------
LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c)
{
    self_attn = register_module("self_attn", LlamaAttention(c));
    mlp = register_module("mlp", LlamaMLP(c));
    input_layernorm = register_module("input_layernorm", LlamaRMSNorm(c.hiddenSize, c.rmsNormEps));
    post_attention_layernorm
        = register_module("post_attention_layernorm", LlamaRMSNorm(c.hiddenSize, c.rmsNormEps));
}

at::Tensor LlamaDecoderLayerImpl::forward(
    const at::Tensor& hidden, const RotaryTables& rope, const at::Tensor& allowed, AttentionCache* cache)
{
    auto h = self_attn(input_layernorm(hidden), rope, allowed, cache);
    if (attn_adapter)
        h = attn_adapter(h);
    const auto afterAttention = hidden + h;
    h = mlp(post_attention_layernorm(afterAttention));
    if (mlp_adapter)
        h = mlp_adapter(h);
    return afterAttention + h;
}

void LlamaDecoderLayerImpl::addAdapters(std::int64_t hidden, const std::string& activation)
{
    if (attn_adapter)
        throw Error("adapters: this layer already has adapters");
    const auto dim = input_layernorm->weight.size(0);
    const auto options = input_layernorm->weight.options();
    attn_adapter = register_module("attn_adapter", BottleneckAdapter(dim, hidden, activation));
    mlp_adapter = register_module("mlp_adapter", BottleneckAdapter(dim, hidden, activation));
    attn_adapter->to(options.device(), options.dtype().toScalarType());
    mlp_adapter->to(options.device(), options.dtype().toScalarType());
}

// ---------------------------------------------------------------------------------------------------
LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c)
    : m_config(c)
{
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocabSize, c.hiddenSize));
    layers = register_module("layers", torch::nn::ModuleList());
    for (std::int64_t i = 0; i < c.numHiddenLayers; ++i) {
        layerList.emplace_back(c);
        layers->push_back(layerList.back());
    }
    norm = register_module("norm", LlamaRMSNorm(c.hiddenSize, c.rmsNormEps));
    m_invFreq = inverseFrequencies(c);
}

at::Tensor LlamaModelImpl::inverseFrequencies(const LlamaConfig& c)
{
    // As modeling_rope_utils, op for op in float32 (the tables must match HF's to the last bit).
    const auto dim = c.headDim;
    const auto exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
    auto inv = 1.0 / at::pow(at::Scalar(c.rope.theta), exponents);
    if (c.rope.type == "linear")
        inv = inv / c.rope.factor;
    if (c.rope.type == "llama3") {
        const auto& r = c.rope;
        const double oldContext = static_cast<double>(r.originalMaxPositionEmbeddings);
        const double lowFreqWavelen = oldContext / r.lowFreqFactor;
        const double highFreqWavelen = oldContext / r.highFreqFactor;
        const auto wavelen = (2 * M_PI) / inv;
        auto llama = at::where(wavelen > lowFreqWavelen, inv / r.factor, inv);
        const auto smooth = (oldContext / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
        const auto smoothed = (1 - smooth) * llama / r.factor + smooth * llama;
        const auto medium
            = (wavelen < highFreqWavelen).logical_not() * (wavelen > lowFreqWavelen).logical_not();
        inv = at::where(medium, smoothed, llama);
    }
    return inv;
}

RotaryTables LlamaModelImpl::rotary(const at::Tensor& positions) const
{
    // HF: (inv_freq @ position_ids) in float32, an outer product (one rounding per entry, as here).
    const auto inv = m_invFreq.to(positions.device());
    const auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv;
    const auto emb = at::cat({ freqs, freqs }, -1);
    return { emb.cos(), emb.sin() };
}

LlamaAttentionInputs llamaAttentionInputs(const at::Tensor& mask, std::int64_t batch, std::int64_t past,
    std::int64_t length, c10::Device device, c10::ScalarType dtype, const at::Tensor& invFreq,
    std::optional<std::int64_t> slidingWindow)
{
    const std::int64_t keyLength = past + length;
    const auto longs = at::TensorOptions().dtype(at::kLong).device(device);
    at::Tensor mask01;
    if (mask.defined()) {
        if (mask.dim() != 2 || mask.size(0) != batch || mask.size(1) != keyLength)
            throw Error("decoder: the attention mask must be (batch, past + length) = ("
                + std::to_string(batch) + ", " + std::to_string(keyLength) + ")");
        mask01 = mask.to(device).to(at::kLong);
    } else {
        mask01 = at::ones({ batch, keyLength }, longs);
    }
    // Positions: column minus the row's leading padding (the header explains why).
    const auto leading = (mask01.cumsum(1) == 0).sum(1, false, at::kLong);
    const auto queryColumns = at::arange(past, keyLength, longs);
    const auto positions = (queryColumns.unsqueeze(0) - leading.unsqueeze(1)).clamp_min(0);
    const auto inv = invFreq.to(device);
    const auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv; // HF: an outer product in float32
    const auto emb = at::cat({ freqs, freqs }, -1);
    RotaryTables rope { emb.cos(), emb.sin() };
    rope.cos = rope.cos.to(dtype);
    rope.sin = rope.sin.to(dtype);

    const auto keyColumns = at::arange(keyLength, longs);
    auto allowed = keyColumns.unsqueeze(0) <= queryColumns.unsqueeze(1); // (length, keys)
    if (slidingWindow)
        allowed = allowed.logical_and(queryColumns.unsqueeze(1) - keyColumns.unsqueeze(0) < *slidingWindow);
    allowed = allowed.unsqueeze(0).unsqueeze(0).logical_and((mask01 != 0).unsqueeze(1).unsqueeze(1));

    return { rope, allowed };
}

StackOutput LlamaModelImpl::forward(const at::Tensor& embeddings, const at::Tensor& mask, DecoderCache* cache,
    const std::vector<std::int64_t>* keep)
{
    const auto batch = embeddings.size(0), length = embeddings.size(1);
    const auto device = embeddings.device();
    const auto dtype = embeddings.scalar_type();
    const std::int64_t past = cache ? cache->pastLength : 0;
    const std::int64_t keyLength = past + length;
    if (cache && cache->blocks.size() != layerList.size())
        cache->blocks.resize(layerList.size());
    auto [rope, allowed]
        = llamaAttentionInputs(mask, batch, past, length, device, dtype, m_invFreq, m_config.slidingWindow);

    StackOutput out;
    out.embeddings = embeddings;
    at::Tensor hidden = embeddings;
    out.blockOutputs.reserve(layerList.size());
    for (std::size_t i = 0; i < layerList.size(); ++i) {
        hidden = layerList[i]->forward(hidden, rope, allowed, cache ? &cache->blocks[i].self : nullptr);
        const bool kept
            = !keep || std::find(keep->begin(), keep->end(), static_cast<std::int64_t>(i)) != keep->end();
        const auto keptDtype = KeptBlockOutputDtype::current();
        if (kept && keptDtype && hidden.scalar_type() != *keptDtype)
            out.blockOutputs.push_back(hidden.to(*keptDtype));
        else
            out.blockOutputs.push_back(kept ? hidden : at::Tensor());
    }
    out.lastHiddenState = norm(hidden);
    if (cache)
        cache->pastLength = keyLength;
    return out;
}

// ---------------------------------------------------------------------------------------------------
LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& config)
    : m_config(config)
{
    m_config.validate();
    model = register_module("model", LlamaModel(config));
    if (!config.tieWordEmbeddings)
        lm_head = register_module("lm_head", T5Linear(config.hiddenSize, config.vocabSize));
}

CausalLMOutput LlamaForCausalLMImpl::forward(
    const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& labels)
{
    CausalLMOutput out;
    out.stack = model->forward(embed(inputIds), attentionMask, nullptr, nullptr);
    out.logits = lmLogits(out.stack.lastHiddenState);
    if (labels.defined()) {
        if (labels.sizes() != inputIds.sizes())
            throw Error("decoder forward: labels must have the shape of input_ids");
        const auto n = out.logits.size(1);
        out.loss = crossEntropy(
            out.logits.narrow(1, 0, n - 1), labels.to(out.logits.device()).narrow(1, 1, n - 1));
    }
    return out;
}

TargetOutput LlamaForCausalLMImpl::forwardTargets(
    const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& labels)
{
    const auto padId = m_config.generationPadId();
    const auto joined = CausalJoin::make(inputIds, attentionMask, labels, padId);
    const auto out = forward(joined.inputIds, joined.attentionMask, {});
    TargetOutput result;
    result.logits = joined.targetLogits(out.logits);
    result.loss = crossEntropy(result.logits, labels.to(result.logits.device()));
    return result;
}

std::vector<std::pair<std::string, T5Linear>> LlamaForCausalLMImpl::namedProjections() const
{
    std::vector<std::pair<std::string, T5Linear>> out;
    for (const auto& item : named_modules("", false))
        if (auto linear = std::dynamic_pointer_cast<T5LinearImpl>(item.value()))
            out.emplace_back(item.key(), T5Linear(linear));
    return out;
}

void LlamaForCausalLMImpl::addAdapters(std::int64_t hidden, const std::string& activation)
{
    for (auto& layer : model->layerList)
        layer->addAdapters(hidden, activation);
}

at::Tensor LlamaForCausalLMImpl::lmHeadWeight() const
{
    if (lm_head)
        return lm_head->denseWeight();
    const auto& weight = model->embed_tokens->weight;
    return m_embedQuantized.defined() ? m_embedQuantized.dequantize(weight.scalar_type()) : weight;
}

void LlamaForCausalLMImpl::quantizeEmbedding(QuantDtype dtype, std::int64_t groupSize)
{
    auto& weight = model->embed_tokens->weight;
    if (m_embedQuantized.defined())
        throw Error("quantize: model.embed_tokens.weight is already stored as "
            + quantDtypeName(m_embedQuantized.dtype()));
    if (weight.requires_grad())
        throw Error(
            "quantize: model.embed_tokens.weight is trainable; only a frozen embedding can be held in "
            "frozen storage");
    m_embedQuantized = QuantizedWeight::quantize(weight, dtype, groupSize);
    at::NoGradGuard noGrad;
    weight.set_data(at::empty({ 0 }, weight.options())); // the placeholder carries device and compute dtype
}

std::vector<std::pair<std::string, const QuantizedWeight*>> LlamaForCausalLMImpl::quantizedWeights() const
{
    std::vector<std::pair<std::string, const QuantizedWeight*>> out;
    if (m_embedQuantized.defined())
        out.emplace_back("model.embed_tokens.weight", &m_embedQuantized);
    for (const auto& [name, linear] : namedProjections())
        if (linear->quantized())
            out.emplace_back(name + ".weight", &linear->quantizedWeight());
    return out;
}

void LlamaForCausalLMImpl::to(torch::Device device, torch::Dtype dtype, bool nonBlocking)
{
    torch::nn::Module::to(device, dtype, nonBlocking);
    m_embedQuantized.to(device);
}

void LlamaForCausalLMImpl::to(torch::Dtype dtype, bool nonBlocking)
{
    torch::nn::Module::to(dtype, nonBlocking);
}

void LlamaForCausalLMImpl::to(torch::Device device, bool nonBlocking)
{
    torch::nn::Module::to(device, nonBlocking);
    m_embedQuantized.to(device);
}

BackboneShape LlamaForCausalLMImpl::shape() const
{
    return m_config.shape();
}

at::Tensor LlamaForCausalLMImpl::embed(const at::Tensor& ids)
{
    const auto& weight = model->embed_tokens->weight;
    if (m_embedQuantized.defined())
        return m_embedQuantized.embedding(ids.to(weight.device()), weight.scalar_type());
    return model->embed_tokens(ids.to(weight.device()));
}

StackOutput LlamaForCausalLMImpl::runEncoder(
    const at::Tensor&, const at::Tensor&, const std::vector<std::int64_t>*)
{
    throw Error(m_config.modelType + ": a decoder-only model has no encoder (shape().encoderBlocks is 0)");
}

StackOutput LlamaForCausalLMImpl::runDecoder(const at::Tensor& embeddings, const at::Tensor& encoderHidden,
    const at::Tensor& encoderMask, DecoderCache* cache, const std::vector<std::int64_t>* keepBlockOutputs,
    const at::Tensor& selfAttentionMask)
{
    if (encoderHidden.defined() || encoderMask.defined())
        throw Error(m_config.modelType
            + ": a decoder-only model has no cross-attention (pass undefined encoder "
              "hidden states and mask)");
    return model->forward(embeddings, selfAttentionMask, cache, keepBlockOutputs);
}

at::Tensor LlamaForCausalLMImpl::lmLogits(const at::Tensor& decoderHidden)
{
    // LST passes the target columns as a narrow of (batch, length, d). On such a view with a frozen head,
    // matmul cannot fold the rows into one product and broadcasts the head to (batch, d, vocab) for bmm;
    // in bf16 on the CPU oneDNN then copies it batch times, forward and backward (batch x vocab x d bf16,
    // 524 MB at TinyLlama's shape and batch 4). A contiguous copy of the few rows folds into one mm.
    const auto hidden = decoderHidden.contiguous();
    if (lm_head)
        return lm_head(hidden);
    if (m_embedQuantized.defined())
        return m_embedQuantized.matmul(hidden);
    return at::linear(hidden, model->embed_tokens->weight);
}

at::Tensor LlamaForCausalLMImpl::shiftRight(const at::Tensor&) const
{
    throw Error(m_config.modelType
        + ": a decoder-only model has no decoder start token; the source and labels "
          "are joined into one sequence (model/CausalJoin.h)");
}

DecoderCache LlamaForCausalLMImpl::makeCache() const
{
    DecoderCache cache;
    cache.blocks.resize(static_cast<std::size_t>(m_config.numHiddenLayers));
    return cache;
}

std::unique_ptr<Seq2SeqStepper> LlamaForCausalLMImpl::makeStepper()
{
    return std::make_unique<CausalStepper>(std::static_pointer_cast<BackboneModelImpl>(shared_from_this()));
}

std::string LlamaForCausalLMImpl::configJson() const
{
    return m_config.toJson().dump();
}

std::vector<std::pair<std::string, at::Tensor>> LlamaForCausalLMImpl::namedWeights() const
{
    std::map<const void*, const QuantizedWeight*> stored;
    for (const auto& [_, linear] : namedProjections())
        if (linear->quantized())
            stored[linear->weight.unsafeGetTensorImpl()] = &linear->quantizedWeight();
    if (m_embedQuantized.defined())
        stored[model->embed_tokens->weight.unsafeGetTensorImpl()] = &m_embedQuantized;
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : named_parameters(true)) {
        const auto it = stored.find(item.value().unsafeGetTensorImpl());
        if (it == stored.end()) {
            out.emplace_back(item.key(), item.value());
            continue;
        }
        for (const auto& [part, tensor] : it->second->parts())
            out.emplace_back(item.key() + "." + part, tensor);
    }
    return out;
}

LlamaForCausalLMImpl* asLlama(BackboneModelImpl& model)
{
    return dynamic_cast<LlamaForCausalLMImpl*>(&model);
}

const LlamaForCausalLMImpl* asLlama(const BackboneModelImpl& model)
{
    return dynamic_cast<const LlamaForCausalLMImpl*>(&model);
}

} // namespace ladder
