#pragma once

#include <functional>
#include <memory>
#include <utility>

#include <ATen/core/Tensor.h>

#include "model/Generation.h"
#include "model/T5Model.h"
#include "model/VisualInput.h"

namespace ladder {

// CLIP-T5's encoder input for the baselines (full, BitFit, Adapters, LoRA, prompt tuning; docs/VL.md): the
// text embeddings (with a prompt's vectors first), then the visual embeddings, through the backbone encoder
// as VL-T5 feeds them: one mask, the relative position bias among the text positions only. Returns the
// encoder output and the combined mask (what cross-attention reads).
std::pair<at::Tensor, at::Tensor> encodeTextAndVisual(T5ForConditionalGenerationImpl& t5,
    const at::Tensor& textEmbeds, const at::Tensor& textMask, const at::Tensor& visualEmbeds,
    const at::Tensor& visualMask);

// The combined 0/1 mask: text mask (all ones when undefined) then the visual mask (all ones when undefined).
at::Tensor textAndVisualMask(const at::Tensor& textMask, std::int64_t textLength,
    const at::Tensor& visualMask, std::int64_t visualLength, std::int64_t batch, const c10::Device& device);

// T5Stepper for a method whose encoder also reads images: setVisual() keeps the next begin()'s images for
// the encode function.
class VisualT5Stepper : public T5Stepper {
public:
    using VisualEncodeFn = std::function<std::pair<at::Tensor, at::Tensor>(
        const at::Tensor& inputIds, const at::Tensor& attentionMask, const VisualInput& visual)>;
    VisualT5Stepper(T5ForConditionalGeneration model, VisualEncodeFn encode)
        : VisualT5Stepper(std::move(model), std::move(encode), std::make_shared<VisualInput>())
    {
    }
    void setVisual(const VisualInput& visual) override { *m_visual = visual; }

private:
    VisualT5Stepper(
        T5ForConditionalGeneration model, VisualEncodeFn encode, std::shared_ptr<VisualInput> visual)
        : T5Stepper(std::move(model),
            [encode = std::move(encode), visual](
                const at::Tensor& ids, const at::Tensor& mask) { return encode(ids, mask, *visual); })
        , m_visual(std::move(visual))
    {
    }
    std::shared_ptr<VisualInput> m_visual;
};

} // namespace ladder
