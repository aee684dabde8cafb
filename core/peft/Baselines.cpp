#include "peft/Baselines.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "peft/InPlaceMethod.h"
#include "peft/VisualT5.h"
#include "util/Error.h"

namespace ladder {

MethodOutput InPlaceMethod::forward(const Seq2SeqBatch& batch)
{
    if (!m_visual) {
        embedVisual(batch.visual); // a batch with images and no visual projection is an error
        auto out = m_backbone->forwardTargets(batch.inputIds, batch.attentionMask, batch.labels);
        return { out.loss, out.logits };
    }
    auto model = t5();
    const auto [hidden, mask] = encodeVisual(batch.inputIds, batch.attentionMask, batch.visual);
    const auto decoded = model->decode(model->shiftRight(batch.labels), hidden, mask);
    const auto logits = model->lmLogits(decoded.lastHiddenState);
    return { Backbone::crossEntropy(logits, batch.labels), logits };
}

std::pair<at::Tensor, at::Tensor> InPlaceMethod::encodeVisual(
    const at::Tensor& inputIds, const at::Tensor& attentionMask, const VisualInput& visual)
{
    const auto visualEmbeds = embedVisual(visual);
    return encodeTextAndVisual(*t5(), m_backbone->embed(inputIds), attentionMask, visualEmbeds, visual.mask);
}

std::unique_ptr<Seq2SeqStepper> InPlaceMethod::makeStepper()
{
    if (!m_visual)
        return m_backbone->makeStepper();
    return std::make_unique<VisualT5Stepper>(
        t5(), [this](const at::Tensor& ids, const at::Tensor& mask, const VisualInput& visual) {
            return encodeVisual(ids, mask, visual);
        });
}

bool isFrozenLayer(const T5Config& config, bool decoder, std::int64_t block, std::int64_t freeze)
{
    const auto index = decoder ? config.numLayers + block : block;
    return index < freeze;
}

at::Tensor initialPromptVectors(BackboneModelImpl& backbone, std::int64_t prompts)
{
    const auto vocab = backbone.shape().vocabSize;
    const auto ids = at::randint(std::min<std::int64_t>(3, vocab - 1), std::min<std::int64_t>(5000, vocab),
        { prompts }, at::TensorOptions().dtype(at::kLong));
    c10::NoGradGuard noGrad;
    const auto device = backbone.parameters(true).front().device(); // the input embedding's
    auto vectors = backbone.embed(ids.to(device)).clone();
    vectors.set_requires_grad(true);
    return vectors;
}

namespace {

void setRequiresGrad(torch::nn::Module& module, bool on)
{
    for (auto& p : module.parameters(true))
        p.set_requires_grad(on);
}

// Calls fn(block, decoder, index) for every block that is not frozen.
template <typename Fn>
void forEachTrainableBlock(T5ForConditionalGeneration& model, std::int64_t freeze, Fn fn)
{
    const auto& config = model->config();
    for (bool decoder : { false, true }) {
        auto& stack = decoder ? model->decoder : model->encoder;
        for (std::size_t i = 0; i < stack->blocks.size(); ++i)
            if (!isFrozenLayer(config, decoder, static_cast<std::int64_t>(i), freeze))
                fn(stack->blocks[i], decoder, static_cast<std::int64_t>(i));
    }
}

std::vector<T5Linear> attentionProjections(T5Attention& a)
{
    return { a->q, a->k, a->v, a->o };
}

// BitFit: zero biases on every projection and layer norm of the unfrozen blocks, the final norms and the
// LM head. Returns nothing; the added parameters have requires_grad = true.
void addBitFitBiases(T5ForConditionalGeneration& model, std::int64_t freeze)
{
    forEachTrainableBlock(model, freeze, [](T5Block& block, bool, std::int64_t) {
        block->selfAttention->layer_norm->addBias();
        for (auto& p : attentionProjections(block->selfAttention->attention))
            p->addBias();
        if (block->crossAttention) {
            block->crossAttention->layer_norm->addBias();
            for (auto& p : attentionProjections(block->crossAttention->attention))
                p->addBias();
        }
        block->feedForward->layer_norm->addBias();
        for (auto& p : block->feedForward->DenseReluDense->projections())
            p->addBias();
    });
    model->encoder->final_layer_norm->addBias();
    model->decoder->final_layer_norm->addBias();
    model->addLmHeadBias();
}

// Prompt tuning: N trainable vectors prepended to the encoder input (Lester et al.), initialised from
// the embeddings of random vocabulary entries among the first 5,000 ids.
class PromptMethod : public Method {
public:
    PromptMethod(T5ForConditionalGeneration backbone, const MethodOptions& options)
        : Method(backbone.ptr(), options)
        , m_t5(std::move(backbone))
    {
        setRequiresGrad(*m_backbone, false);
        m_prompt = initialPromptVectors(*m_backbone, options.prompts);
    }

    // Prompt + embedded input, and the extended mask, for encoder and cross-attention. A VL run (docs/VL.md):
    // prompt, text, then the visual embeddings; the prompt counts as text for the position bias, as in VL-T5.
    std::pair<at::Tensor, at::Tensor> encode(
        const at::Tensor& inputIds, const at::Tensor& attentionMask, const VisualInput& visual = {})
    {
        const auto batch = inputIds.size(0);
        const auto embeds
            = at::cat({ m_prompt.unsqueeze(0).expand({ batch, -1, -1 }), m_backbone->embed(inputIds) }, 1);
        const auto mask01 = attentionMask.defined() ? attentionMask : at::ones_like(inputIds);
        const auto mask = at::cat({ at::ones({ batch, m_prompt.size(0) }, mask01.options()), mask01 }, 1);
        const auto visualEmbeds = embedVisual(visual);
        if (visualEmbeds.defined())
            return encodeTextAndVisual(*m_t5, embeds, mask, visualEmbeds, visual.mask);
        return { m_t5->encoder->forward(embeds, mask).lastHiddenState, mask };
    }

    MethodOutput forward(const Seq2SeqBatch& batch) override
    {
        const auto [hidden, mask] = encode(batch.inputIds, batch.attentionMask, batch.visual);
        const auto decoded = m_t5->decode(m_t5->shiftRight(batch.labels), hidden, mask);
        const auto logits = m_backbone->lmLogits(decoded.lastHiddenState);
        return { T5ForConditionalGenerationImpl::crossEntropy(logits, batch.labels), logits };
    }

    std::unique_ptr<Seq2SeqStepper> makeStepper() override
    {
        return std::make_unique<VisualT5Stepper>(
            m_t5, [this](const at::Tensor& ids, const at::Tensor& mask, const VisualInput& visual) {
                return encode(ids, mask, visual);
            });
    }

    void train(bool on) override
    {
        m_backbone->train(on);
        trainVisual(on);
    }

    void to(c10::Device device, c10::ScalarType dtype) override
    {
        m_backbone->to(device, dtype);
        moveVisual(device, dtype);
        c10::NoGradGuard noGrad;
        m_prompt = m_prompt.to(device, dtype).detach().requires_grad_(true);
    }

    std::vector<std::pair<std::string, at::Tensor>> namedTrainableParameters() const override
    {
        std::vector<std::pair<std::string, at::Tensor>> out { { "prompt", m_prompt } };
        appendVisualParameters(out);
        return out;
    }

    std::int64_t totalParameterCount() const override
    {
        return Method::totalParameterCount() + m_prompt.numel();
    }

private:
    T5ForConditionalGeneration m_t5;
    at::Tensor m_prompt;
};

} // namespace

std::unique_ptr<Method> createBaselineMethod(
    T5ForConditionalGeneration backbone, const MethodOptions& options)
{
    const auto& config = backbone->config();
    options.validate(config);
    if (options.method == "prompt") {
        if (options.freeze > 0)
            throw Error(
                "method options: field freeze: prompt tuning trains the input of every layer, it cannot "
                "freeze layers");
        return std::make_unique<PromptMethod>(backbone, options);
    }

    // Count the backbone before anything is added (the paper's denominator).
    auto method = std::make_unique<InPlaceMethod>(backbone.ptr(), options);
    const auto freeze = options.freeze;

    if (options.method == "full") {
        setRequiresGrad(*backbone, true);
        if (freeze > 0) {
            // Gradients must not reach the frozen layers, so the input embedding (and the LM head when tied
            // to it) freezes with them.
            backbone->shared->weight.set_requires_grad(false);
            for (bool decoder : { false, true }) {
                auto& stack = decoder ? backbone->decoder : backbone->encoder;
                for (std::size_t i = 0; i < stack->blocks.size(); ++i)
                    if (isFrozenLayer(config, decoder, static_cast<std::int64_t>(i), freeze))
                        setRequiresGrad(*stack->blocks[i], false);
            }
        }
        return method;
    }

    setRequiresGrad(*backbone, false);
    if (options.method == "bitfit") {
        addBitFitBiases(backbone, freeze);
    } else if (options.method == "adapter") {
        forEachTrainableBlock(backbone, freeze, [&](T5Block& block, bool, std::int64_t) {
            block->selfAttention->addAdapter(options.hidden, options.activation);
            block->feedForward->addAdapter(options.hidden, options.activation);
            // The reference trains the backbone layer norms with adapters.
            setRequiresGrad(*block->selfAttention->layer_norm, true);
            if (block->crossAttention)
                setRequiresGrad(*block->crossAttention->layer_norm, true);
            setRequiresGrad(*block->feedForward->layer_norm, true);
        });
        setRequiresGrad(*backbone->encoder->final_layer_norm, true);
        setRequiresGrad(*backbone->decoder->final_layer_norm, true);
    } else if (options.isLora()) { // lora and qlora (LoRA over a quantised base, quantised by createMethod)
        auto wants = [&](const std::string& t) {
            return std::find(options.targets.begin(), options.targets.end(), t) != options.targets.end();
        };
        forEachTrainableBlock(backbone, freeze, [&](T5Block& block, bool, std::int64_t) {
            for (auto* layer : { &block->selfAttention, &block->crossAttention }) {
                if (!*layer)
                    continue;
                auto& a = (*layer)->attention;
                for (auto [name, proj] : std::vector<std::pair<std::string, T5Linear>> {
                         { "q", a->q }, { "k", a->k }, { "v", a->v }, { "o", a->o } })
                    if (wants(name))
                        proj->addLora(options.rank, options.alpha, options.dropout);
            }
            auto& ff = block->feedForward->DenseReluDense;
            for (auto& p : std::vector<T5Linear> { ff->wi, ff->wi_0, ff->wi_1 })
                if (p && wants("wi"))
                    p->addLora(options.rank, options.alpha, options.dropout);
            if (wants("wo"))
                ff->wo->addLora(options.rank, options.alpha, options.dropout);
        });
        if (options.bitfit)
            addBitFitBiases(backbone, freeze);
    } else {
        throw Error("unknown baseline method '" + options.method + "'");
    }
    return method;
}

} // namespace ladder
