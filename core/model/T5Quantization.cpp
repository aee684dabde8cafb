#include "model/T5Quantization.h"

#include <map>
#include <set>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "model/Safetensors.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {
namespace {

constexpr const char* kFormatKey = "format";
constexpr const char* kFormat = "ladderbench-quantized-backbone/1";
constexpr const char* kConfigKey = "config";
constexpr const char* kDtypeKey = "backbone_dtype";
constexpr const char* kGroupKey = "quant_group_size";

// Every T5 projection by its weight's parameter name ("encoder.block.0.layer.0.SelfAttention.q.weight").
std::map<std::string, T5LinearImpl*> projectionsByWeightName(T5ForConditionalGenerationImpl& model)
{
    std::map<std::string, T5LinearImpl*> out;
    for (const auto& item : model.named_modules("", false))
        if (auto* linear = dynamic_cast<T5LinearImpl*>(item.value().get()))
            out[item.key() + ".weight"] = linear;
    return out;
}

} // namespace

std::string weightStorageLabel(const std::string& dtype, std::int64_t groupSize)
{
    return dtype == "int4" ? "int4 g" + std::to_string(groupSize) : dtype;
}

std::int64_t quantizeFrozenBackbone(
    T5ForConditionalGenerationImpl& model, const std::string& dtype, std::int64_t groupSize)
{
    if (dtype == "fp32")
        return 0;
    const auto storage = parseQuantDtype(dtype);
    if (storage == QuantDtype::Int4 && !isSupportedInt4GroupSize(groupSize))
        throw Error("quant_group_size: expected 32, 64, 128 or 256, got " + std::to_string(groupSize));
    std::int64_t stored = 0;
    for (auto& [name, linear] : projectionsByWeightName(model)) {
        if (linear->weight.requires_grad() || linear->quantized())
            continue;
        try {
            linear->quantize(storage, groupSize);
        } catch (const std::exception& e) {
            rethrowWithContext(name, e);
        }
        ++stored;
    }
    if (!model.shared->weight.requires_grad() && !model.sharedQuantized().defined()) {
        model.quantizeShared(storage, groupSize);
        ++stored;
    }
    if (model.lm_head && !model.lm_head->weight.requires_grad() && !model.lmHeadQuantized().defined()) {
        model.quantizeLmHead(storage, groupSize);
        ++stored;
    }
    model.setWeightStorage(weightStorageLabel(dtype, groupSize));
    return stored;
}

std::int64_t releaseKernelForms(const T5ForConditionalGenerationImpl& model)
{
    std::int64_t freed = 0;
    for (const auto& [_, q] : model.quantizedWeights()) {
        freed += q->kernelFormBytes();
        q->releaseKernelForms();
    }
    return freed;
}

std::int64_t backboneWeightBytes(const T5ForConditionalGenerationImpl& model)
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
    const T5Config& config, const std::string& dtype, std::int64_t groupSize)
{
    BackboneStorageBytes out;
    auto matrix = [&](std::int64_t rows, std::int64_t cols, std::int64_t count) {
        out.matrixParameters += count * rows * cols;
        out.matrixBytes += count * QuantizedWeight::storageBytes(dtype, rows, cols, groupSize);
    };
    const auto d = config.dModel;
    const auto inner = config.innerDim();
    const auto ffIn = config.isGatedAct() ? 2 : 1;
    const auto blocks = config.numLayers + config.numDecoderLayers;
    const auto attentions = config.numLayers + 2 * config.numDecoderLayers; // decoder: self + cross
    matrix(config.vocabSize, d, config.tieWordEmbeddings ? 1 : 2); // shared (+ lm_head)
    matrix(inner, d, 3 * attentions); // q, k, v
    matrix(d, inner, attentions); // o
    matrix(config.dFf, d, ffIn * blocks); // wi or wi_0, wi_1
    matrix(d, config.dFf, blocks); // wo
    out.otherParameters = config.parameterCount() - out.matrixParameters;
    out.otherBytes = 4 * out.otherParameters;
    return out;
}

// ---------------------------------------------------------------------------------------------------
void saveQuantizedBackbone(const T5ForConditionalGenerationImpl& model, const std::string& path)
{
    const auto stored = model.quantizedWeights();
    if (stored.empty())
        throw Error(path + ": the backbone holds no weight in frozen storage (quantizeFrozenBackbone first)");
    const auto dtype = stored.front().second->dtype();
    const auto groupSize = stored.front().second->groupSize();
    for (const auto& [name, q] : stored)
        if (q->dtype() != dtype || q->groupSize() != groupSize)
            throw Error(path + ": " + name + " is stored as " + quantDtypeName(q->dtype()) + ", "
                + stored.front().first + " as " + quantDtypeName(dtype) + "; a file holds one storage");
    TensorMap tensors;
    for (const auto& [name, tensor] : model.namedWeights())
        tensors[name] = tensor.detach();
    writeSafetensors(path, tensors,
        { { kFormatKey, kFormat }, { kConfigKey, model.configJson() }, { kDtypeKey, quantDtypeName(dtype) },
            { kGroupKey, std::to_string(groupSize) } });
}

void loadQuantizedBackbone(T5ForConditionalGenerationImpl& model, const std::string& path)
{
    const auto metadata = readSafetensorsMetadata(path);
    auto meta = [&](const char* key) {
        const auto it = metadata.find(key);
        if (it == metadata.end())
            throw Error(path + ": not a LadderBench quantised backbone (metadata has no " + key + ")");
        return it->second;
    };
    if (meta(kFormatKey) != kFormat)
        throw Error(path + ": not a LadderBench quantised backbone (format " + meta(kFormatKey) + ")");
    const auto savedConfig = parseJson(meta(kConfigKey), path + ": config");
    if (savedConfig != nlohmann::json::parse(model.configJson()))
        throw Error(path + ": saved for another backbone config: " + savedConfig.dump());
    const auto dtypeName = meta(kDtypeKey);
    const auto dtype = parseQuantDtype(dtypeName);
    std::int64_t groupSize = 0;
    try {
        groupSize = std::stoll(meta(kGroupKey));
    } catch (const std::logic_error&) {
        throw Error(path + ": quant_group_size is not an integer: " + meta(kGroupKey));
    }

    auto tensors = readSafetensors(path);
    std::set<std::string> used;
    const auto projections = projectionsByWeightName(model);
    const auto& config = model.config();
    c10::NoGradGuard noGrad;
    for (auto& item : model.named_parameters(true)) {
        const auto& name = item.key();
        const auto qdata = tensors.find(name + ".qdata");
        if (qdata == tensors.end()) {
            const auto it = tensors.find(name);
            if (it == tensors.end())
                throw Error(path + ": missing tensor " + name);
            auto& target = item.value();
            if (it->second.sizes() != target.sizes())
                throw Error(path + ": tensor " + name + " has shape " + c10::str(it->second.sizes())
                    + ", expected " + c10::str(target.sizes()));
            target.copy_(it->second);
            used.insert(name);
            continue;
        }
        std::map<std::string, at::Tensor> parts;
        for (const char* part : { "qdata", "qscale", "qzero" }) {
            const auto it = tensors.find(name + "." + part);
            if (it != tensors.end()) {
                parts[part] = it->second;
                used.insert(it->first);
            }
        }
        std::int64_t rows = config.vocabSize;
        std::int64_t cols = config.dModel;
        const auto projection = projections.find(name);
        if (projection != projections.end()) {
            rows = projection->second->outFeatures();
            cols = projection->second->inFeatures();
        } else if (name != "shared.weight" && name != "lm_head.weight") {
            throw Error(path + ": " + name + " is not a matrix that frozen storage holds");
        }
        auto stored = QuantizedWeight::fromParts(
            dtype, dtype == QuantDtype::Int4 ? groupSize : 0, rows, cols, parts, path + ": " + name);
        item.value().set_requires_grad(false); // a stored matrix is frozen
        if (projection != projections.end())
            projection->second->setQuantized(std::move(stored));
        else if (name == "shared.weight")
            model.setSharedQuantized(std::move(stored));
        else
            model.setLmHeadQuantized(std::move(stored));
    }
    for (const auto& [name, _] : tensors)
        if (!used.count(name))
            throw Error(path + ": unexpected tensor " + name);
    model.setWeightStorage(weightStorageLabel(dtypeName, groupSize));
}

} // namespace ladder
