#include "model/llama/LlamaQuantization.h"

#include <set>

#include "model/T5Quantization.h"
#include "util/Error.h"

namespace ladder {

std::int64_t quantizeFrozenBackbone(
    LlamaForCausalLMImpl& model, const std::string& dtype, std::int64_t groupSize)
{
    if (dtype == "fp32")
        return 0;
    const auto storage = parseQuantDtype(dtype);
    if (storage == QuantDtype::Int4 && !isSupportedInt4GroupSize(groupSize))
        throw Error("quant_group_size: expected 32, 64, 128 or 256, got " + std::to_string(groupSize));
    std::int64_t stored = 0;
    // namedProjections: every layer's q, k, v, o, gate, up, down and an untied lm_head.
    for (auto& [name, linear] : model.namedProjections()) {
        if (linear->weight.requires_grad() || linear->quantized())
            continue;
        try {
            linear->quantize(storage, groupSize);
        } catch (const std::exception& e) {
            rethrowWithContext(name + ".weight", e);
        }
        ++stored;
    }
    if (!model.model->embed_tokens->weight.requires_grad() && !model.embeddingQuantized().defined()) {
        try {
            model.quantizeEmbedding(storage, groupSize);
        } catch (const std::exception& e) {
            rethrowWithContext("model.embed_tokens.weight", e);
        }
        ++stored;
    }
    model.setWeightStorage(weightStorageLabel(dtype, groupSize));
    return stored;
}

std::int64_t releaseKernelForms(const LlamaForCausalLMImpl& model)
{
    std::int64_t freed = 0;
    for (const auto& [_, q] : model.quantizedWeights()) {
        freed += q->kernelFormBytes();
        q->releaseKernelForms();
    }
    return freed;
}

std::int64_t backboneWeightBytes(const LlamaForCausalLMImpl& model)
{
    std::int64_t bytes = 0;
    std::set<const void*> seen;
    for (const auto& p : model.parameters(true))
        if (seen.insert(p.unsafeGetTensorImpl()).second)
            bytes += static_cast<std::int64_t>(p.nbytes());
    for (const auto& [_, q] : model.quantizedWeights())
        bytes += q->bytes();
    return bytes;
}

BackboneStorageBytes backboneStorageBytes(
    const LlamaConfig& config, const std::string& dtype, std::int64_t groupSize)
{
    BackboneStorageBytes out;
    auto matrix = [&](std::int64_t rows, std::int64_t cols, std::int64_t count) {
        out.matrixParameters += count * rows * cols;
        out.matrixBytes += count * QuantizedWeight::storageBytes(dtype, rows, cols, groupSize);
    };
    const auto h = config.hiddenSize, layers = config.numHiddenLayers;
    const auto q = config.numAttentionHeads * config.headDim, kv = config.numKeyValueHeads * config.headDim;
    matrix(config.vocabSize, h, config.tieWordEmbeddings ? 1 : 2); // embed_tokens (+ lm_head)
    matrix(q, h, layers); // q_proj
    matrix(kv, h, 2 * layers); // k_proj, v_proj
    matrix(h, q, layers); // o_proj
    matrix(config.intermediateSize, h, 2 * layers); // gate_proj, up_proj
    matrix(h, config.intermediateSize, layers); // down_proj
    out.otherParameters = config.parameterCount() - out.matrixParameters;
    out.otherBytes = 4 * out.otherParameters;
    return out;
}

} // namespace ladder
