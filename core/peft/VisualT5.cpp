#include "peft/VisualT5.h"

#include <ATen/ATen.h>

namespace ladder {

at::Tensor textAndVisualMask(const at::Tensor& textMask, std::int64_t textLength,
    const at::Tensor& visualMask, std::int64_t visualLength, std::int64_t batch, const c10::Device& device)
{
    const auto longOpts = at::TensorOptions().dtype(at::kLong).device(device);
    const auto text = textMask.defined() ? textMask.to(longOpts) : at::ones({ batch, textLength }, longOpts);
    const auto visual
        = visualMask.defined() ? visualMask.to(longOpts) : at::ones({ batch, visualLength }, longOpts);
    return at::cat({ text, visual }, 1);
}

std::pair<at::Tensor, at::Tensor> encodeTextAndVisual(T5ForConditionalGenerationImpl& t5,
    const at::Tensor& textEmbeds, const at::Tensor& textMask, const at::Tensor& visualEmbeds,
    const at::Tensor& visualMask)
{
    const auto textLength = textEmbeds.size(1);
    const auto mask = textAndVisualMask(
        textMask, textLength, visualMask, visualEmbeds.size(1), textEmbeds.size(0), textEmbeds.device());
    const auto embeds = at::cat({ textEmbeds, visualEmbeds.to(textEmbeds.scalar_type()) }, 1);
    auto out = t5.encoder->forward(embeds, mask, {}, {}, nullptr, nullptr, textLength);
    return { out.lastHiddenState, mask };
}

} // namespace ladder
