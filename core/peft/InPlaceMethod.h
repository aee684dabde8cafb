#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peft/Method.h"

namespace ladder {

// The method object shared by every in-place baseline (full, BitFit, Adapters, LoRA, QLoRA) of every
// architecture: the method has edited the backbone's modules and left requires_grad on what trains, so
// the forward, generation and moving are the backbone's own. On a vision-and-language run (docs/VL.md) the
// T5 encoder reads the text and then the visual embeddings (peft/VisualT5.h), as VL-T5 feeds them.
class InPlaceMethod : public Method {
public:
    InPlaceMethod(BackboneModel backbone, const MethodOptions& options)
        : Method(std::move(backbone), options)
    {
    }

    MethodOutput forward(const Seq2SeqBatch& batch) override;
    std::unique_ptr<Seq2SeqStepper> makeStepper() override;

    void train(bool on) override
    {
        m_backbone->train(on);
        trainVisual(on);
    }

    void to(c10::Device device, c10::ScalarType dtype) override
    {
        m_backbone->to(device, dtype);
        moveVisual(device, dtype);
    }

    std::vector<std::pair<std::string, at::Tensor>> namedTrainableParameters() const override
    {
        std::vector<std::pair<std::string, at::Tensor>> out;
        for (const auto& item : m_backbone->named_parameters(true))
            if (item.value().requires_grad())
                out.emplace_back(item.key(), item.value());
        appendVisualParameters(out);
        return out;
    }

private:
    // The VL encoder: text embeddings, then the visual ones (a VL run only).
    std::pair<at::Tensor, at::Tensor> encodeVisual(
        const at::Tensor& inputIds, const at::Tensor& attentionMask, const VisualInput& visual);
};

} // namespace ladder
