#include "peft/Method.h"

#include <set>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "model/T5Checkpoint.h"
#include "model/T5Quantization.h"
#include "model/llama/LlamaQuantization.h"
#include "peft/Baselines.h"
#include "peft/DecoderMethods.h"
#include "peft/Ladder.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {
namespace {
constexpr const char* kFormatKey = "format";
constexpr const char* kFormat = "ladderbench-trainable/1";
constexpr const char* kOptionsKey = "method_options";
} // namespace

Method::Method(BackboneModel backbone, MethodOptions options)
    : m_backbone(std::move(backbone))
    , m_options(std::move(options))
{
    m_backboneParameters = countParameters(*m_backbone);
}

T5ForConditionalGeneration Method::t5() const
{
    auto t5 = std::dynamic_pointer_cast<T5ForConditionalGenerationImpl>(m_backbone);
    if (!t5)
        throw Error("method " + m_options.method + ": this needs a T5 backbone, the backbone is "
            + m_backbone->shape().architecture);
    return T5ForConditionalGeneration(t5);
}

std::vector<at::Tensor> Method::trainableParameters() const
{
    std::vector<at::Tensor> out;
    for (auto& [_, p] : namedTrainableParameters())
        out.push_back(p);
    return out;
}

std::int64_t Method::trainableParameterCount() const
{
    std::int64_t n = 0;
    std::set<const void*> seen;
    for (const auto& [_, p] : namedTrainableParameters())
        if (seen.insert(p.unsafeGetTensorImpl()).second)
            n += p.numel();
    return n;
}

std::int64_t Method::backboneParameterCount() const
{
    return m_backboneParameters;
}

std::int64_t Method::totalParameterCount() const
{
    return countParameters(*m_backbone) + (m_visual ? countParameters(*m_visual) : 0);
}

void Method::addVisualEmbedding()
{
    if (m_visual)
        return;
    const auto t5 = this->t5(); // CLIP-T5: MethodOptions::validate refuses decoder-only backbones
    const auto& config = t5->config();
    m_visual = VisualEmbedding(m_options.visualDim, config.dModel, config.layerNormEpsilon, config.vocabSize);
    const auto& reference = t5->shared->weight;
    m_visual->to(reference.device(), reference.scalar_type());
}

at::Tensor Method::embedVisual(const VisualInput& visual)
{
    if (!m_visual) {
        if (visual.defined())
            throw Error("method " + m_options.method
                + ": the batch has images but the run is text-only (no visual_dim; docs/VL.md)");
        return {};
    }
    if (!visual.defined())
        throw Error("method " + m_options.method
            + ": a vision-and-language run needs each batch's visual features (docs/VL.md)");
    return m_visual->forward(visual, [this](const at::Tensor& ids) { return m_backbone->embed(ids); });
}

void Method::appendVisualParameters(std::vector<std::pair<std::string, at::Tensor>>& out) const
{
    if (m_visual)
        for (const auto& item : m_visual->named_parameters(true))
            out.emplace_back("visual_embedding." + item.key(), item.value());
}

void Method::trainVisual(bool on)
{
    if (m_visual)
        m_visual->train(on);
}

void Method::moveVisual(c10::Device device, c10::ScalarType dtype)
{
    if (m_visual)
        m_visual->to(device, dtype);
}

void Method::saveTrainable(const std::string& path) const
{
    TensorMap tensors;
    for (const auto& [name, p] : namedTrainableParameters())
        tensors[name] = p.detach();
    writeSafetensors(path, tensors, { { kFormatKey, kFormat }, { kOptionsKey, m_options.toJson().dump() } });
}

void Method::loadTrainable(const std::string& path)
{
    const auto tensors = readSafetensors(path);
    // Options come from the metadata; they must describe this method.
    const auto header = readSafetensorsMetadata(path);
    const auto format = header.find(kFormatKey);
    if (format == header.end() || format->second != kFormat)
        throw Error(path + ": not a LadderBench trainable-weights file (metadata format is missing)");
    const auto options = header.find(kOptionsKey);
    if (options == header.end())
        throw Error(path + ": metadata has no method_options");
    MethodOptions saved;
    saved = MethodOptions::fromJson(
        parseJson(options->second, path + ": method_options"), path + ": method_options");
    // The initialisation (init, fisher_samples) only chose the values that the loaded weights replace, so
    // it need not match: weights trained from a Fisher initialisation load into a method built with init
    // random (ladder eval, which has no training data at hand).
    const auto withoutInit = [](MethodOptions o) {
        o.init = MethodOptions().init;
        o.fisherSamples = MethodOptions().fisherSamples;
        return o.toJson();
    };
    if (withoutInit(saved) != withoutInit(m_options))
        throw Error(path + ": saved for method options " + saved.toJson().dump() + ", this run has "
            + m_options.toJson().dump());

    const auto named = namedTrainableParameters();
    std::set<std::string> expected;
    for (const auto& [name, _] : named)
        expected.insert(name);
    for (const auto& [name, _] : tensors)
        if (!expected.count(name))
            throw Error(path + ": unexpected tensor " + name);
    c10::NoGradGuard noGrad;
    for (const auto& [name, p] : named) {
        const auto it = tensors.find(name);
        if (it == tensors.end())
            throw Error(path + ": missing tensor " + name);
        if (it->second.sizes() != p.sizes())
            throw Error(path + ": tensor " + name + " has shape " + c10::str(it->second.sizes())
                + ", expected " + c10::str(p.sizes()));
        auto target = p;
        target.copy_(it->second);
    }
}

std::unique_ptr<Method> createMethod(BackboneModel backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks)
{
    options.validate(backbone->shape());
    // The place of the input embedding is the backbone's (its first parameter is the embedding in every
    // architecture; a quantised embedding keeps a placeholder of the compute dtype there).
    const auto first = backbone->parameters(true).front();
    const auto device = first.device();
    const auto dtype = first.scalar_type();
    std::unique_ptr<Method> method;
    if (auto t5 = std::dynamic_pointer_cast<T5ForConditionalGenerationImpl>(backbone)) {
        method = options.method == "ladder"
            ? createLadderMethod(T5ForConditionalGeneration(t5), options, data, hooks)
            : createBaselineMethod(T5ForConditionalGeneration(t5), options);
    } else {
        method = createDecoderMethod(std::move(backbone), options, data, hooks);
    }
    if (options.visualDim > 0)
        method->addVisualEmbedding();
    // Modules a method adds are created on the CPU in float32; bring them to the backbone's place.
    method->to(device, dtype);
    // Frozen backbone storage (issue 18): after the method is built, so that LST's pruning initialisation
    // read the fp32 weights and only what stays frozen (not LoRA's, BitFit's or the adapters' weights, nor
    // the layer norms adapters train) is stored as bf16 / int8 / int4.
    if (options.quantizedBackbone()) {
        if (options.method == "full")
            throw Error("method options: field backbone_dtype: full fine-tuning trains every weight; frozen "
                        "backbone storage is for the other methods");
        if (auto* t5 = dynamic_cast<T5ForConditionalGenerationImpl*>(method->backbone().get()))
            quantizeFrozenBackbone(*t5, options.backboneDtype, options.quantGroupSize);
        else
            quantizeFrozenBackbone(
                *llamaOf(method->backbone()), options.backboneDtype, options.quantGroupSize);
    }
    return method;
}

} // namespace ladder
