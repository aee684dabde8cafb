#include "peft/DecoderLadder.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/parameterdict.h>

#include "model/CausalJoin.h"
#include "model/Generation.h"
#include "model/T5Checkpoint.h"
#include "peft/DecoderLadderInit.h"
#include "util/Error.h"

namespace ladder {
namespace {

// The ladder's linear maps (downsamples, upsample): N(0, 0.01), bias 0, as T5's (peft/LadderSideNetwork.cpp).
torch::nn::Linear ladderLinear(std::int64_t in, std::int64_t out)
{
    torch::nn::Linear linear(torch::nn::LinearOptions(in, out));
    c10::NoGradGuard noGrad;
    linear->weight.normal_(0.0, 0.01);
    linear->bias.zero_();
    return linear;
}

std::string joined(const std::vector<std::int64_t>& v)
{
    std::string s;
    for (auto x : v)
        s += (s.empty() ? "" : ",") + std::to_string(x);
    return s;
}

} // namespace

// ---------------------------------------------------------------------------------------------------
LlamaConfig DecoderSideOptions::sideConfig() const
{
    LlamaConfig c = backbone;
    c.hiddenSize = backbone.hiddenSize / r;
    c.intermediateSize = backbone.intermediateSize / r;
    c.headDim = backbone.headDim / r;
    c.numHiddenLayers = static_cast<std::int64_t>(keep.size());
    return c;
}

std::vector<std::int64_t> DecoderSideOptions::ropePairs() const
{
    std::vector<std::int64_t> pairs;
    for (std::int64_t j = 0; j < backbone.headDim / (2 * r); ++j)
        pairs.push_back(r * j);
    return pairs;
}

void DecoderSideOptions::validate() const
{
    if (r < 1)
        throw Error("ladder: field r: expected a positive integer");
    if (backbone.hiddenSize % r || backbone.intermediateSize % r || backbone.headDim % (2 * r))
        throw Error("ladder: field r: " + std::to_string(r) + " must divide hidden_size "
            + std::to_string(backbone.hiddenSize) + " and intermediate_size "
            + std::to_string(backbone.intermediateSize) + ", and leave an even head_dim (head_dim "
            + std::to_string(backbone.headDim) + " / r must be even: rotary embeddings rotate pairs)");
    if (keep.empty())
        throw Error("ladder: field keep: no side layer kept");
    for (std::size_t i = 0; i < keep.size(); ++i) {
        if (keep[i] < 0 || keep[i] >= backbone.numHiddenLayers)
            throw Error("ladder: field keep: layer " + std::to_string(keep[i])
                + " does not exist (the backbone has " + std::to_string(backbone.numHiddenLayers)
                + " layers, indices from 0)");
        if (i > 0 && keep[i] <= keep[i - 1])
            throw Error("ladder: field keep: expected sorted unique layers, got " + joined(keep));
    }
    if (!(gateTemperature > 0.0))
        throw Error("ladder: field gate_temperature: expected a positive number");
}

DecoderSideOptions decoderSideOptions(const LlamaConfig& config, const MethodOptions& options)
{
    // What T5's LST has and the decoder's does not (yet): each a clear error rather than a silent no-op.
    const auto unsupported = [](const std::string& field, const std::string& why) {
        throw Error(
            "method options: field " + field + ": " + why + " (LST on a decoder-only backbone, docs/LST.md)");
    };
    if (options.ablation != "none")
        unsupported(
            "ablation", "the ablations are T5's (paper section 4.4); a decoder's side network has none");
    if (options.mergeBackbone)
        unsupported("merge_backbone", "not implemented for decoders");
    if (options.sideCheckpoint)
        unsupported("side_checkpoint", "not implemented for decoders");
    if (options.sideAttention != "math")
        unsupported("side_attention", "only math for decoders");
    if (options.sideHeads > 0)
        unsupported("side_heads", "a decoder's side keeps the backbone's heads and key/value heads");
    DecoderSideOptions o;
    o.backbone = config;
    o.r = options.r;
    std::vector<std::int64_t> keep = options.keep;
    if (keep.empty())
        for (std::int64_t i = 0; i < config.numHiddenLayers; ++i)
            keep.push_back(i);
    std::sort(keep.begin(), keep.end());
    keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
    o.keep = keep;
    o.gateTemperature = options.gateTemperature;
    if (options.ladderDtype == "bf16")
        o.ladderDtype = at::kBFloat16;
    o.validate();
    return o;
}

// ---------------------------------------------------------------------------------------------------
DecoderSideStackImpl::DecoderSideStackImpl(const DecoderSideOptions& options)
    : m_options(options)
    , m_sideConfig(options.sideConfig())
{
    m_options.validate();
    const auto d = options.backbone.hiddenSize;
    const auto ds = m_sideConfig.hiddenSize;
    auto downsampleDict = register_module("downsample", torch::nn::ModuleDict());
    downsampleEmbed = ladderLinear(d, ds);
    downsampleDict->update({ { "embed", downsampleEmbed.ptr() } });
    auto gateDict = register_module("gate", torch::nn::ParameterDict());
    auto blockDict = register_module("block", torch::nn::ModuleDict());
    for (auto i : options.keep) {
        const auto key = std::to_string(i);
        downsamples.emplace(i, ladderLinear(d, ds));
        downsampleDict->update({ { key, downsamples.at(i).ptr() } });
        gates.emplace(i, gateDict->insert(key, at::zeros({ 1 }).set_requires_grad(true)));
        blocks.emplace(i, LlamaDecoderLayer(m_sideConfig));
        blockDict->update({ { key, blocks.at(i).ptr() } });
    }
    norm = register_module("norm", LlamaRMSNorm(ds, m_sideConfig.rmsNormEps));
    const auto all = LlamaModelImpl::inverseFrequencies(options.backbone);
    const auto pairs = options.ropePairs();
    m_invFreq = all.index_select(0, at::tensor(pairs, at::TensorOptions().dtype(at::kLong)));
}

at::Tensor DecoderSideStackImpl::gateValue(std::int64_t layer) const
{
    return at::sigmoid(gates.at(layer) / m_options.gateTemperature);
}

at::Tensor DecoderSideStackImpl::forward(const at::Tensor& embeddings, const std::vector<at::Tensor>& ladders,
    const at::Tensor& mask, DecoderCache* cache)
{
    const auto batch = embeddings.size(0), length = embeddings.size(1);
    const std::int64_t past = cache ? cache->pastLength : 0;
    const auto attention = llamaAttentionInputs(mask, batch, past, length, embeddings.device(),
        downsampleEmbed->weight.scalar_type(), m_invFreq, m_sideConfig.slidingWindow);
    if (cache && cache->blocks.size() < static_cast<std::size_t>(m_options.backbone.numHiddenLayers))
        cache->blocks.resize(static_cast<std::size_t>(m_options.backbone.numHiddenLayers));
    auto side = downsampleEmbed(embeddings.to(downsampleEmbed->weight.scalar_type()));
    for (auto i : m_options.keep) {
        const auto& ladder = ladders.at(static_cast<std::size_t>(i));
        if (!ladder.defined())
            throw Error("ladder: the backbone did not keep layer " + std::to_string(i) + "'s output");
        auto& down = downsamples.at(i);
        const auto mu = gateValue(i);
        // side_in = mu_i * side + (1 - mu_i) * Down_i(backbone layer i output)
        side = mu * side + (1.0 - mu) * down(ladder.to(down->weight.scalar_type()));
        side = blocks.at(i)->forward(side, attention.rope, attention.allowed,
            cache ? &cache->blocks[static_cast<std::size_t>(i)].self : nullptr);
    }
    if (cache)
        cache->pastLength = past + length;
    return norm(side);
}

DecoderSideNetworkImpl::DecoderSideNetworkImpl(const DecoderSideOptions& options)
    : m_options(options)
{
    side_decoder = register_module("side_decoder", DecoderSideStack(options));
    side_final_upsample = register_module("side_final_upsample",
        ladderLinear(options.backbone.hiddenSize / options.r, options.backbone.hiddenSize));
}

// ---------------------------------------------------------------------------------------------------
at::Tensor DecoderLadderModel::hidden(const at::Tensor& ids, const at::Tensor& mask,
    DecoderCache* backboneCache, DecoderCache* sideCache, const std::vector<at::Tensor>* cached,
    std::vector<at::Tensor>* record)
{
    at::Tensor embeddings;
    {
        c10::NoGradGuard noGrad;
        // The embeddings feed Down_emb; a lookup in the frozen table, so the cache recomputes them.
        embeddings = m_backbone->embed(ids);
    }
    return hiddenFromEmbeddings(embeddings, mask, backboneCache, sideCache, cached, record);
}

at::Tensor DecoderLadderModel::hiddenFromEmbeddings(const at::Tensor& embeddings, const at::Tensor& mask,
    DecoderCache* backboneCache, DecoderCache* sideCache, const std::vector<at::Tensor>* cached,
    std::vector<at::Tensor>* record)
{
    const auto& o = m_side->options();
    StackOutput backbone; // alive until the side has run, as it always was (the memory estimate replays it)
    std::vector<at::Tensor> ladders;
    {
        c10::NoGradGuard noGrad;
        const KeptBlockOutputDtype keptDtype(o.ladderDtype);
        if (cached) {
            if (backboneCache || sideCache)
                throw Error("ladder: cached backbone outputs are for teacher-forced training, not decoding");
            ladders = *cached;
            // ladder_dtype: cached ladders are held in it too, as the backbone's kept outputs are.
            if (o.ladderDtype)
                for (auto& l : ladders)
                    if (l.defined() && l.scalar_type() != *o.ladderDtype)
                        l = l.to(*o.ladderDtype);
        } else {
            backbone = m_backbone->runDecoder(embeddings, {}, {}, backboneCache, &o.keep, mask);
            ladders = backbone.blockOutputs;
        }
    }
    if (record)
        *record = ladders;
    const auto side = m_side->side_decoder(embeddings, ladders, mask, sideCache);
    return m_side->head(side);
}

namespace {

// Generation: the backbone and the side decoder step by step, each with its cache; as CausalStepper
// (model/Generation.h) otherwise: the prompt left-padded, all but its last column cached, the last column
// the start token.
class DecoderLadderStepper : public CausalStepper {
public:
    DecoderLadderStepper(DecoderLadderModel model, std::int64_t padId)
        : CausalStepper(model.backbone().ptr(), padId)
        , m_model(std::move(model))
    {
    }

protected:
    at::Tensor hidden(const at::Tensor& embeddings, const at::Tensor& mask) override
    {
        return m_model.hiddenFromEmbeddings(embeddings, mask, &cache(), &m_sideCache);
    }
    void resetCaches() override
    {
        CausalStepper::resetCaches();
        m_sideCache = DecoderCache();
    }
    void reorderCaches(const at::Tensor& rowIndices) override
    {
        CausalStepper::reorderCaches(rowIndices);
        m_sideCache.reorder(rowIndices);
    }

private:
    DecoderLadderModel m_model;
    DecoderCache m_sideCache;
};

} // namespace

DecoderLadderMethod::DecoderLadderMethod(LlamaForCausalLM backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks)
    : Method(backbone.ptr(), options)
    , m_model(backbone, DecoderSideNetwork(decoderSideOptions(backbone->config(), options)))
{
    for (auto& p : m_backbone->parameters(true))
        p.set_requires_grad(false);
    auto side = m_model.side();
    initialiseDecoderSide(side, backbone, options.init, data, options.fisherSamples, hooks);
    const auto& reference = backbone->model->embed_tokens->weight;
    side->to(reference.device(), reference.scalar_type());
    train(false);
}

MethodOutput DecoderLadderMethod::forward(const Seq2SeqBatch& batch)
{
    return forwardLadders(batch, nullptr, nullptr);
}

MethodOutput DecoderLadderMethod::forwardLadders(
    const Seq2SeqBatch& batch, const std::vector<at::Tensor>* cached, std::vector<at::Tensor>* record)
{
    if (!batch.labels.defined())
        throw Error("ladder forward: labels are required");
    auto llama = m_model.backbone();
    const auto join = CausalJoin::make(
        batch.inputIds, batch.attentionMask, batch.labels, llama->config().generationPadId());
    // The LM head only where the targets are (the vocabulary is the widest matrix).
    const auto hidden = join.targetLogits(
        m_model.hidden(join.inputIds, join.attentionMask, nullptr, nullptr, cached, record));
    MethodOutput out;
    out.logits = llama->lmLogits(hidden);
    out.loss = Backbone::crossEntropy(out.logits, batch.labels);
    return out;
}

std::unique_ptr<Seq2SeqStepper> DecoderLadderMethod::makeStepper()
{
    return std::make_unique<DecoderLadderStepper>(m_model, m_model.backbone()->config().generationPadId());
}

void DecoderLadderMethod::train(bool on)
{
    m_model.side()->train(on);
    m_backbone->train(on && m_options.backboneTrainMode);
}

void DecoderLadderMethod::to(c10::Device device, c10::ScalarType dtype)
{
    m_backbone->to(device, dtype);
    m_model.side()->to(device, dtype);
}

std::vector<std::pair<std::string, at::Tensor>> DecoderLadderMethod::namedTrainableParameters() const
{
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : m_model.side()->named_parameters(true))
        out.emplace_back(item.key(), item.value());
    return out;
}

std::int64_t DecoderLadderMethod::totalParameterCount() const
{
    return Method::totalParameterCount() + countParameters(*m_model.side());
}

std::unique_ptr<Method> createDecoderLadderMethod(LlamaForCausalLM backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks)
{
    return std::make_unique<DecoderLadderMethod>(std::move(backbone), options, data, hooks);
}

} // namespace ladder
