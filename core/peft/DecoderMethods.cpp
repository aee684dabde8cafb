#include "peft/DecoderMethods.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "model/CausalJoin.h"
#include "model/Generation.h"
#include "peft/Baselines.h"
#include "peft/DecoderLadder.h"
#include "peft/InPlaceMethod.h"
#include "util/Error.h"

namespace ladder {
namespace {

void setRequiresGrad(torch::nn::Module& module, bool on)
{
    for (auto& p : module.parameters(true))
        p.set_requires_grad(on);
}

// HF PEFT's target names for LlamaForCausalLM, shortened as MethodOptions' targets are.
std::string shortTarget(const std::string& projectionName)
{
    const auto dot = projectionName.rfind('.');
    auto last = dot == std::string::npos ? projectionName : projectionName.substr(dot + 1);
    if (last.size() > 5 && last.compare(last.size() - 5, 5, "_proj") == 0)
        last.resize(last.size() - 5);
    return last;
}

// The layer index of "model.layers.N. ..." (-1 for lm_head and anything outside the layers).
std::int64_t layerOf(const std::string& name)
{
    static const std::string prefix = "model.layers.";
    if (name.rfind(prefix, 0) != 0)
        return -1;
    return std::stoll(name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size()));
}

// Every projection of the unfrozen layers (the LM head is no layer's and is left alone).
std::vector<std::pair<std::string, T5Linear>> trainableProjections(
    LlamaForCausalLM& llama, std::int64_t freeze)
{
    std::vector<std::pair<std::string, T5Linear>> out;
    for (auto& [name, proj] : llama->namedProjections()) {
        const auto layer = layerOf(name);
        if (layer >= freeze)
            out.emplace_back(name, proj);
    }
    return out;
}

void addBitFit(LlamaForCausalLM& llama, std::int64_t freeze)
{
    for (auto& [_, proj] : trainableProjections(llama, freeze)) {
        proj->addBias(); // keeps a pretrained bias (Qwen2's q/k/v), adds a zero one elsewhere
        proj->bias.set_requires_grad(true);
    }
}

// Inserts `prompt` (P, d) before each row's first real column of a left-padded sequence: the row becomes
// [padding, prompt, tokens], so positions (counted from the first real column) and the causal order are
// those of the prompt followed by the row, whatever the padding.
std::pair<at::Tensor, at::Tensor> insertPrompt(
    const at::Tensor& prompt, const at::Tensor& embeds, const at::Tensor& leftPaddedMask)
{
    const auto batch = embeds.size(0), length = embeds.size(1), p = prompt.size(0);
    const auto longs = at::TensorOptions().dtype(at::kLong).device(embeds.device());
    const auto mask = leftPaddedMask.to(embeds.device()).to(at::kLong);
    const auto leading = (mask.cumsum(1) == 0).sum(1, false, at::kLong).unsqueeze(1); // (batch, 1)
    const auto column = at::arange(length + p, longs).unsqueeze(0); // (1, L + P)
    // The table: [prompt | embeds]; column c reads the table at c - leading (prompt) or c (a token or padding
    // column: embeds[c - P] sits at table index c).
    const auto inPrompt = (column >= leading).logical_and(column < leading + p);
    const auto index = at::where(inPrompt, column - leading, at::where(column < leading, column + p, column));
    const auto table = at::cat({ prompt.unsqueeze(0).expand({ batch, -1, -1 }), embeds }, 1);
    const auto out = table.gather(1, index.unsqueeze(2).expand({ batch, length + p, embeds.size(2) }));
    const auto shiftedMask = at::cat({ at::zeros({ batch, p }, longs), mask }, 1); // mask of column c - P
    const auto outMask = at::where(column < leading, at::zeros_like(shiftedMask),
        at::where(inPrompt, at::ones_like(shiftedMask), shiftedMask));
    return { out, outMask };
}

// Generation with the prompt: CausalStepper with the prompt inserted before each row's prompt tokens.
class PromptCausalStepper : public CausalStepper {
public:
    PromptCausalStepper(LlamaForCausalLM model, at::Tensor prompt, std::int64_t padId)
        : CausalStepper(model.ptr(), padId)
        , m_prompt(std::move(prompt))
    {
    }

protected:
    std::pair<at::Tensor, at::Tensor> headEmbeddings(const at::Tensor& ids, const at::Tensor& mask) override
    {
        // Also with no token before the start token: the prompt alone.
        return insertPrompt(m_prompt, model()->embed(ids), mask);
    }

private:
    at::Tensor m_prompt;
};

// Prompt tuning on a decoder: N trainable vectors before the causal sequence, initialised from the
// embeddings of random vocabulary entries among the first 5,000 ids (as T5's, peft/Baselines.cpp).
class DecoderPromptMethod : public Method {
public:
    DecoderPromptMethod(LlamaForCausalLM llama, const MethodOptions& options)
        : Method(llama.ptr(), options)
        , m_llama(std::move(llama))
    {
        setRequiresGrad(*m_llama, false);
        m_prompt = initialPromptVectors(*m_llama, options.prompts);
    }

    MethodOutput forward(const Seq2SeqBatch& batch) override
    {
        const auto join = CausalJoin::make(batch.inputIds, batch.attentionMask, batch.labels, padId());
        const auto [embeds, mask] = insertPrompt(m_prompt, m_llama->embed(join.inputIds), join.attentionMask);
        static const std::vector<std::int64_t> none;
        const auto out = m_llama->runDecoder(embeds, {}, {}, nullptr, &none, mask);
        const auto joined
            = m_llama->lmLogits(out.lastHiddenState).narrow(1, m_prompt.size(0), join.inputIds.size(1));
        MethodOutput result;
        result.logits = join.targetLogits(joined);
        result.loss = Backbone::crossEntropy(result.logits, batch.labels);
        return result;
    }

    std::unique_ptr<Seq2SeqStepper> makeStepper() override
    {
        return std::make_unique<PromptCausalStepper>(m_llama, m_prompt, padId());
    }

    void train(bool on) override { m_llama->train(on); }

    void to(c10::Device device, c10::ScalarType dtype) override
    {
        m_llama->to(device, dtype);
        c10::NoGradGuard noGrad;
        m_prompt = m_prompt.to(device, dtype).detach().requires_grad_(true);
    }

    std::vector<std::pair<std::string, at::Tensor>> namedTrainableParameters() const override
    {
        return { { "prompt", m_prompt } };
    }

    std::int64_t totalParameterCount() const override
    {
        return Method::totalParameterCount() + m_prompt.numel();
    }

private:
    std::int64_t padId() const { return m_llama->config().generationPadId(); }

    LlamaForCausalLM m_llama;
    at::Tensor m_prompt;
};

} // namespace

LlamaForCausalLM llamaOf(const BackboneModel& backbone)
{
    auto llama = std::dynamic_pointer_cast<LlamaForCausalLMImpl>(backbone);
    if (!llama)
        throw Error("method options: the methods know T5 and the Llama family (llama, mistral, qwen2); this "
                    "backbone is "
            + backbone->shape().architecture);
    return LlamaForCausalLM(llama);
}

std::unique_ptr<Method> createDecoderMethod(BackboneModel backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks)
{
    auto llama = llamaOf(backbone);
    options.validate(llama->shape());
    if (options.method == "ladder")
        return createDecoderLadderMethod(llama, options, data, hooks);
    if (options.method == "prompt") {
        if (options.freeze > 0)
            throw Error(
                "method options: field freeze: prompt tuning trains the input of every layer, it cannot "
                "freeze layers");
        return std::make_unique<DecoderPromptMethod>(llama, options);
    }

    // Count the backbone before anything is added (the paper's denominator).
    auto method = std::make_unique<InPlaceMethod>(llama.ptr(), options);
    const auto freeze = options.freeze;
    if (options.method == "full") {
        setRequiresGrad(*llama, true);
        if (freeze > 0) {
            // As T5's: gradients must not reach the frozen layers, so the embedding (and a tied head)
            // freezes.
            llama->model->embed_tokens->weight.set_requires_grad(false);
            for (std::int64_t i = 0; i < std::min<std::int64_t>(freeze, llama->config().numHiddenLayers); ++i)
                setRequiresGrad(*llama->model->layerList[static_cast<std::size_t>(i)], false);
        }
        return method;
    }

    setRequiresGrad(*llama, false);
    if (options.method == "bitfit") {
        addBitFit(llama, freeze);
    } else if (options.method == "adapter") {
        for (std::size_t i = static_cast<std::size_t>(freeze); i < llama->model->layerList.size(); ++i) {
            auto& layer = llama->model->layerList[i];
            layer->addAdapters(options.hidden, options.activation);
            setRequiresGrad(*layer->input_layernorm, true);
            setRequiresGrad(*layer->post_attention_layernorm, true);
        }
        setRequiresGrad(*llama->model->norm, true);
    } else if (options.isLora()) {
        for (auto& [name, proj] : trainableProjections(llama, freeze))
            if (std::find(options.targets.begin(), options.targets.end(), shortTarget(name))
                != options.targets.end())
                proj->addLora(options.rank, options.alpha, options.dropout);
        if (options.bitfit)
            addBitFit(llama, freeze);
    } else {
        throw Error("unknown method '" + options.method + "'");
    }
    return method;
}

} // namespace ladder
