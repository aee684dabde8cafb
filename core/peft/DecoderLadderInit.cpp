#include "peft/DecoderLadderInit.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "peft/LadderInit.h"
#include "util/Error.h"

namespace ladder {
namespace {

// Ascending indices of the k largest scores; among equal scores the lower index wins (as T5's pruning).
at::Tensor topIndices(const at::Tensor& score, std::int64_t k)
{
    const auto order = std::get<1>(at::sort(score, /*stable=*/true, /*dim=*/0, /*descending=*/true));
    return std::get<0>(at::sort(order.narrow(0, 0, k)));
}

at::Tensor longs(const std::vector<std::int64_t>& v)
{
    return at::tensor(v, at::TensorOptions().dtype(at::kLong));
}

class DecoderPruner {
public:
    DecoderPruner(LlamaForCausalLM& backbone, const DecoderSideOptions& options, const TensorMap& importance)
        : m_options(options)
        , m_importance(importance)
    {
        for (const auto& item : backbone->named_parameters(true))
            m_weights[item.key()] = item.value().detach().to(at::kCPU, at::kFloat);
    }

    TensorMap run()
    {
        const auto& c = m_options.backbone;
        const auto r = m_options.r;
        const auto dims = topIndices(imp("model.embed_tokens.weight").sum(0), c.hiddenSize / r);
        const auto hd = c.headDim, side = hd / r;
        // Query/key rows of one head: the side's rotary pairs, first halves then second halves (rotate_half
        // pairs side dim j with j + side/2 as the backbone pairs p with p + hd/2).
        std::vector<std::int64_t> ropeRows;
        for (auto p : m_options.ropePairs())
            ropeRows.push_back(p);
        for (auto p : m_options.ropePairs())
            ropeRows.push_back(p + hd / 2);
        const auto headRows = [&](std::int64_t heads, const std::vector<std::vector<std::int64_t>>& perHead) {
            std::vector<std::int64_t> rows;
            for (std::int64_t h = 0; h < heads; ++h)
                for (auto x : perHead[static_cast<std::size_t>(perHead.size() == 1 ? 0 : h)])
                    rows.push_back(h * hd + x);
            return longs(rows);
        };
        const auto qRows = headRows(c.numAttentionHeads, { ropeRows });
        const auto kRows = headRows(c.numKeyValueHeads, { ropeRows });

        for (auto i : m_options.keep) {
            const auto from = "model.layers." + std::to_string(i) + ".";
            const auto to = "side_decoder.block." + std::to_string(i) + ".";
            vector(from, to, "input_layernorm.weight", dims);
            vector(from, to, "post_attention_layernorm.weight", dims);
            matrix(from, to, "self_attn.q_proj", qRows, dims);
            matrix(from, to, "self_attn.k_proj", kRows, dims);
            // Values: per key/value head, the rows of largest importance over the kept columns.
            const auto vImp = imp(from + "self_attn.v_proj.weight").index_select(1, dims).sum(1);
            std::vector<std::vector<std::int64_t>> vPerHead;
            for (std::int64_t g = 0; g < c.numKeyValueHeads; ++g) {
                const auto chosen = topIndices(vImp.narrow(0, g * hd, hd), side);
                vPerHead.emplace_back(
                    chosen.data_ptr<std::int64_t>(), chosen.data_ptr<std::int64_t>() + side);
            }
            const auto vRows = headRows(c.numKeyValueHeads, vPerHead);
            matrix(from, to, "self_attn.v_proj", vRows, dims);
            // o_proj reads each query head's output, whose dims are its key/value group's value dims.
            const auto groups = c.numAttentionHeads / c.numKeyValueHeads;
            std::vector<std::vector<std::int64_t>> oPerHead;
            for (std::int64_t h = 0; h < c.numAttentionHeads; ++h)
                oPerHead.push_back(vPerHead[static_cast<std::size_t>(h / groups)]);
            matrix(from, to, "self_attn.o_proj", dims, headRows(c.numAttentionHeads, oPerHead));
            // The MLP: gate and up rows by their joint importance; down's columns follow.
            const auto mlpImp = imp(from + "mlp.gate_proj.weight").index_select(1, dims).sum(1)
                + imp(from + "mlp.up_proj.weight").index_select(1, dims).sum(1);
            const auto hidden = topIndices(mlpImp, c.intermediateSize / r);
            matrix(from, to, "mlp.gate_proj", hidden, dims);
            matrix(from, to, "mlp.up_proj", hidden, dims);
            matrix(from, to, "mlp.down_proj", dims, hidden);
        }
        m_out["side_decoder.norm.weight"] = m_weights.at("model.norm.weight").index_select(0, dims);
        return m_out;
    }

private:
    at::Tensor imp(const std::string& name) const
    {
        const auto it = m_importance.find(name);
        if (it == m_importance.end())
            throw Error("ladder pruning: no importance for " + name);
        return it->second.detach().to(at::kCPU, at::kFloat).abs();
    }

    void vector(
        const std::string& from, const std::string& to, const std::string& name, const at::Tensor& rows)
    {
        m_out[to + name] = m_weights.at(from + name).index_select(0, rows);
    }

    // weight[rows][:, columns], and the bias' rows when the projection has one.
    void matrix(const std::string& from, const std::string& to, const std::string& name,
        const at::Tensor& rows, const at::Tensor& columns)
    {
        m_out[to + name + ".weight"]
            = m_weights.at(from + name + ".weight").index_select(0, rows).index_select(1, columns);
        const auto bias = m_weights.find(from + name + ".bias");
        if (bias != m_weights.end())
            m_out[to + name + ".bias"] = bias->second.index_select(0, rows);
    }

    const DecoderSideOptions& m_options;
    const TensorMap& m_importance;
    TensorMap m_weights;
    TensorMap m_out;
};

} // namespace

TensorMap pruneDecoderBackbone(
    LlamaForCausalLM& backbone, const DecoderSideOptions& options, const TensorMap& importance)
{
    return DecoderPruner(backbone, options, importance).run();
}

void initialiseDecoderSide(DecoderSideNetwork& side, LlamaForCausalLM& backbone, const std::string& init,
    const BatchSource& data, std::int64_t fisherSamples, const MethodInitHooks& hooks)
{
    if (init == "random")
        return;
    if (init != "magnitude" && init != "fisher")
        throw Error("ladder: field init: unknown '" + init + "' (expected random, magnitude or fisher)");
    if (backbone->weightStorage() != "fp32")
        throw Error("ladder: field init: " + init
            + " pruning reads the backbone's dense weights, but they are stored as "
            + backbone->weightStorage() + "; set init random");
    TensorMap importance;
    if (init == "fisher") {
        importance
            = fisherImportance(backbone.ptr(), data, fisherSamples, hooks.progress, hooks.cancelRequested);
    } else {
        for (const auto& item : backbone->named_parameters(true))
            importance[item.key()] = item.value().detach();
    }
    const auto pruned = pruneDecoderBackbone(backbone, side->options(), importance);
    c10::NoGradGuard noGrad;
    std::map<std::string, at::Tensor> params;
    for (const auto& item : side->named_parameters(true))
        params[item.key()] = item.value();
    for (const auto& [name, value] : pruned) {
        const auto it = params.find(name);
        if (it == params.end())
            throw Error("ladder pruning: the side network has no parameter " + name);
        if (it->second.sizes() != value.sizes())
            throw Error("ladder pruning: " + name + " is " + c10::str(value.sizes()) + ", the side parameter "
                + c10::str(it->second.sizes()));
        it->second.copy_(value);
    }
}

} // namespace ladder
