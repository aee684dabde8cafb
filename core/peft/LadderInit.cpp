#include "peft/LadderInit.h"

#include <map>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "util/Error.h"

namespace ladder {
namespace {

using ParameterMap = std::map<std::string, at::Tensor>;

ParameterMap namedParameters(const torch::nn::Module& module)
{
    ParameterMap out;
    for (const auto& item : module.named_parameters(true))
        out[item.key()] = item.value();
    return out;
}

// Ascending indices of the k largest scores; among equal scores the lower index wins.
at::Tensor topIndices(const at::Tensor& score, std::int64_t k)
{
    const auto order = std::get<1>(at::sort(score, /*stable=*/true, /*dim=*/0, /*descending=*/true));
    return std::get<0>(at::sort(order.narrow(0, 0, k)));
}

// Walks the backbone block by block, carrying the index set of kept model dimensions (docs/LST.md).
class Pruner {
public:
    Pruner(T5ForConditionalGeneration& backbone, std::int64_t r, const TensorMap& importance)
        : m_config(backbone->config())
        , m_params(namedParameters(*backbone))
        , m_importance(importance)
        , m_r(r)
    {
    }

    TensorMap run()
    {
        // Embedding dimensions: the 1/r with the largest L1 importance over the vocabulary.
        auto dims = topIndices(importance("shared.weight").sum(0), m_config.dModel / m_r);
        for (std::int64_t i = 0; i < m_config.numLayers; ++i) {
            const auto p = "encoder.block." + std::to_string(i) + ".";
            sliceNorm(p + "layer.0.layer_norm.weight", dims);
            dims = attention(p + "layer.0.SelfAttention.", dims);
            sliceNorm(p + "layer.1.layer_norm.weight", dims);
            dims = feedForward(p + "layer.1.DenseReluDense.", dims);
        }
        sliceNorm("encoder.final_layer_norm.weight", dims);
        // The decoder chain carries on from the encoder's last set. As in the reference (pruning_v2), the
        // cross-attention's k and v columns follow the decoder's current set like q, although they read
        // the side encoder output.
        for (std::int64_t i = 0; i < m_config.numDecoderLayers; ++i) {
            const auto p = "decoder.block." + std::to_string(i) + ".";
            sliceNorm(p + "layer.0.layer_norm.weight", dims);
            dims = attention(p + "layer.0.SelfAttention.", dims);
            sliceNorm(p + "layer.1.layer_norm.weight", dims);
            dims = attention(p + "layer.1.EncDecAttention.", dims);
            sliceNorm(p + "layer.2.layer_norm.weight", dims);
            dims = feedForward(p + "layer.2.DenseReluDense.", dims);
        }
        sliceNorm("decoder.final_layer_norm.weight", dims);
        return std::move(m_out);
    }

private:
    at::Tensor weight(const std::string& name) const
    {
        const auto it = m_params.find(name);
        if (it == m_params.end())
            throw Error("ladder pruning: the backbone has no parameter " + name);
        return it->second.detach().to(at::kCPU, at::kFloat);
    }

    // |I| in double precision (a product of three Fisher values underflows float32).
    at::Tensor importance(const std::string& name) const
    {
        const auto it = m_importance.find(name);
        if (it == m_importance.end())
            throw Error("ladder pruning: no importance for " + name);
        return it->second.detach().to(at::kCPU, at::kDouble).abs();
    }

    void sliceNorm(const std::string& name, const at::Tensor& dims)
    {
        m_out[name] = weight(name).index_select(0, dims);
    }

    // q, k, v: columns follow the input dimensions, rows chosen jointly by the L1 norm of I_q * I_k * I_v:
    // the H * d_kv / r best rows over all heads, as the reference's L1Strategy (a side head of d_kv/r rows
    // may so mix rows of neighbouring backbone heads). o: columns follow those rows, rows by o's own
    // importance; they are the new model dimensions.
    at::Tensor attention(const std::string& prefix, const at::Tensor& dims)
    {
        const std::vector<std::string> qkv { prefix + "q.weight", prefix + "k.weight", prefix + "v.weight" };
        at::Tensor product;
        for (const auto& name : qkv) {
            const auto imp = importance(name).index_select(1, dims);
            product = product.defined() ? product * imp : imp;
        }
        const auto rows = topIndices(product.sum(1), m_config.innerDim() / m_r);
        for (const auto& name : qkv)
            m_out[name] = weight(name).index_select(1, dims).index_select(0, rows);
        return rowsByImportance(prefix + "o.weight", rows, m_config.dModel / m_r);
    }

    // wi (or wi_0 and wi_1 jointly): columns follow dims, rows by importance; wo: columns follow, rows
    // by importance -> the new model dimensions.
    at::Tensor feedForward(const std::string& prefix, const at::Tensor& dims)
    {
        std::vector<std::string> inputs { prefix + "wi.weight" };
        if (m_config.isGatedAct())
            inputs = { prefix + "wi_0.weight", prefix + "wi_1.weight" };
        at::Tensor product;
        for (const auto& name : inputs) {
            const auto imp = importance(name).index_select(1, dims);
            product = product.defined() ? product * imp : imp;
        }
        const auto hidden = topIndices(product.sum(1), m_config.dFf / m_r);
        for (const auto& name : inputs)
            m_out[name] = weight(name).index_select(1, dims).index_select(0, hidden);
        return rowsByImportance(prefix + "wo.weight", hidden, m_config.dModel / m_r);
    }

    // Slices the columns of `name` with `columns`, keeps the `keep` rows of largest L1 importance (over
    // the kept columns) and returns those rows.
    at::Tensor rowsByImportance(const std::string& name, const at::Tensor& columns, std::int64_t keep)
    {
        const auto rows = topIndices(importance(name).index_select(1, columns).sum(1), keep);
        m_out[name] = weight(name).index_select(1, columns).index_select(0, rows);
        return rows;
    }

    T5Config m_config;
    ParameterMap m_params;
    const TensorMap& m_importance;
    std::int64_t m_r;
    TensorMap m_out;
};

void copyInto(at::Tensor& target, const at::Tensor& source, const std::string& targetName,
    const std::string& sourceName)
{
    if (target.sizes() != source.sizes())
        throw Error("ladder init: " + sourceName + " has shape " + c10::str(source.sizes())
            + ", side parameter " + targetName + " has " + c10::str(target.sizes()));
    at::NoGradGuard noGrad;
    target.copy_(source);
}

void initialiseStack(LadderSideStackImpl& stack, const std::string& backboneStack,
    const ParameterMap& backbone, const TensorMap& pruned)
{
    if (!stack.adapterBlocks.empty())
        throw Error("ladder: init by pruning builds transformer side blocks; "
                    "ablation adapter-blocks needs init random");
    const auto relativeBias = backboneStack + ".block.0.layer.0.SelfAttention.relative_attention_bias.weight";
    for (auto& [layer, block] : stack.blocks) {
        for (auto& item : block->named_parameters(true)) {
            const bool isBias = item.key().find("relative_attention_bias") != std::string::npos;
            const auto source = isBias ? relativeBias
                                       : backboneStack + ".block." + std::to_string(layer) + "." + item.key();
            const auto& map = isBias ? backbone : static_cast<const ParameterMap&>(pruned);
            const auto it = map.find(source);
            if (it == map.end())
                throw Error("ladder init: no pruned backbone tensor " + source);
            auto value = it->second;
            if (isBias && value.size(1) != item.value().size(1)) {
                // side_heads: side head j starts from the mean of the backbone heads j*H/N .. (j+1)*H/N - 1
                // (the q/k/v rows are the same pruned rows, split into N heads instead of H).
                const auto heads = value.size(1);
                const auto sideHeads = item.value().size(1);
                if (heads % sideHeads)
                    throw Error("ladder init: side_heads " + std::to_string(sideHeads)
                        + " must divide the backbone's " + std::to_string(heads)
                        + " heads for a pruning initialisation (or set init random)");
                value = value.reshape({ value.size(0), sideHeads, heads / sideHeads }).mean(-1);
            }
            copyInto(item.value(), value, item.key(), source);
        }
    }
    const auto finalNorm = backboneStack + ".final_layer_norm.weight";
    copyInto(stack.final_layer_norm->weight, pruned.at(finalNorm), "final_layer_norm.weight", finalNorm);
}

// Restores a backbone frozen after a temporary gradient pass, whatever happens in between.
class FrozenAfterwards {
public:
    explicit FrozenAfterwards(BackboneModel backbone)
        : m_backbone(std::move(backbone))
        , m_wasTraining(m_backbone->is_training())
    {
    }
    ~FrozenAfterwards()
    {
        for (auto& p : m_backbone->parameters(true)) {
            p.mutable_grad() = at::Tensor();
            p.set_requires_grad(false);
        }
        m_backbone->train(m_wasTraining);
    }
    FrozenAfterwards(const FrozenAfterwards&) = delete;
    FrozenAfterwards& operator=(const FrozenAfterwards&) = delete;

private:
    BackboneModel m_backbone;
    bool m_wasTraining;
};

} // namespace

TensorMap magnitudeImportance(T5ForConditionalGeneration& backbone)
{
    TensorMap out;
    for (const auto& [name, p] : namedParameters(*backbone))
        out[name] = p.detach();
    return out;
}

TensorMap fisherImportance(const BackboneModel& backbone, const BatchSource& data, std::int64_t samples,
    const InitProgress& progress, const InitCancelCheck& cancelled)
{
    if (!data)
        throw Error("ladder: field init: fisher needs training examples for the empirical Fisher, and none "
                    "were given here (give data, or set init to magnitude or random)");
    if (samples < 1)
        throw Error("ladder: field fisher_samples: expected a positive number of samples");

    const auto params = namedParameters(*backbone);
    const auto device = backbone->parameters(true).front().device(); // the input embedding's
    TensorMap fisher;
    for (const auto& [name, p] : params)
        fisher[name] = at::zeros(p.sizes(), p.options().dtype(at::kFloat));

    std::int64_t seen = 0;
    {
        FrozenAfterwards restore(backbone);
        backbone->eval(); // as the reference: the pretrained model, dropout off
        at::AutoGradMode enableGrad(true);
        for (const auto& [_, p] : params)
            p.set_requires_grad(true);

        while (seen < samples) {
            const auto batch = data();
            if (!batch)
                break;
            for (std::int64_t row = 0; row < batch->inputIds.size(0) && seen < samples; ++row) {
                if (cancelled && cancelled())
                    throw InitCancelled("cancelled during the Fisher initialisation after "
                        + std::to_string(seen) + " of " + std::to_string(samples) + " examples");
                const auto labels = batch->labels.narrow(0, row, 1).to(device);
                if ((labels != -100).sum().item<std::int64_t>() == 0)
                    continue; // no target token: no loss
                const auto ids = batch->inputIds.narrow(0, row, 1).to(device);
                const auto& fullMask = batch->attentionMask;
                const auto mask = fullMask.defined() ? fullMask.narrow(0, row, 1).to(device) : at::Tensor();
                for (const auto& [_, p] : params)
                    p.mutable_grad() = at::Tensor();
                backbone->forwardTargets(ids, mask, labels).loss.backward();
                for (const auto& [name, p] : params)
                    if (p.grad().defined())
                        fisher[name].add_(p.grad().detach().to(at::kFloat).square());
                ++seen;
                if (progress)
                    progress(seen, samples);
            }
        }
    }
    if (seen == 0)
        throw Error("ladder: field init: fisher: the training data yielded no example with a target");
    if (progress && seen < samples)
        progress(seen, seen); // the data ran out first: this is all it will use
    return fisher;
}

TensorMap pruneBackbone(T5ForConditionalGeneration& backbone, std::int64_t r, const TensorMap& importance)
{
    const auto& c = backbone->config();
    if (r < 1 || c.dModel % r || c.dFf % r || c.dKv % r)
        throw Error("ladder pruning: r = " + std::to_string(r) + " must divide d_model, d_ff and d_kv");
    return Pruner(backbone, r, importance).run();
}

void initialiseSideFromPruned(
    LadderSideNetwork& side, T5ForConditionalGeneration& backbone, const TensorMap& pruned)
{
    const auto params = namedParameters(*backbone);
    if (side->side_encoder)
        initialiseStack(*side->side_encoder, "encoder", params, pruned);
    initialiseStack(*side->side_decoder, "decoder", params, pruned);
}

void initialiseSideNetwork(LadderSideNetwork& side, T5ForConditionalGeneration& backbone,
    const std::string& init, const BatchSource& data, std::int64_t fisherSamples,
    const MethodInitHooks& hooks)
{
    if (init == "random")
        return;
    if (backbone->weightStorage() != "fp32")
        throw Error("ladder: field init: " + init
            + " pruning reads the backbone's dense weights, but they are " + "stored as "
            + backbone->weightStorage()
            + " (frozen backbone storage); build the method on the fp32 backbone (createMethod quantises it "
              "after the initialisation) or set init random");
    if (init != "magnitude" && init != "fisher")
        throw Error("ladder: field init: unknown '" + init + "' (expected random, magnitude or fisher)");
    if (side->options().ablation == "adapter-blocks")
        throw Error("ladder: init " + init
            + " prunes backbone transformer blocks into side blocks; "
              "ablation adapter-blocks needs init random");
    const auto importance = init == "fisher"
        ? fisherImportance(backbone, data, fisherSamples, hooks.progress, hooks.cancelRequested)
        : magnitudeImportance(backbone);
    initialiseSideFromPruned(side, backbone, pruneBackbone(backbone, side->options().r, importance));
}

} // namespace ladder
