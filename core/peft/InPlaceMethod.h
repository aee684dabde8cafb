#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peft/Method.h"

namespace ladder {

// The method object shared by every in-place baseline (full, BitFit, Adapters, LoRA, QLoRA) of every
// architecture: the method has edited the backbone's modules and left requires_grad on what trains, so
// the forward, generation and moving are the backbone's own.
class InPlaceMethod : public Method {
public:
    InPlaceMethod(BackboneModel backbone, const MethodOptions& options)
        : Method(std::move(backbone), options)
    {
    }

    MethodOutput forward(const Seq2SeqBatch& batch) override
    {
        auto out = m_backbone->forwardTargets(batch.inputIds, batch.attentionMask, batch.labels);
        return { out.loss, out.logits };
    }

    std::unique_ptr<Seq2SeqStepper> makeStepper() override { return m_backbone->makeStepper(); }

    void train(bool on) override { m_backbone->train(on); }

    void to(c10::Device device, c10::ScalarType dtype) override { m_backbone->to(device, dtype); }

    std::vector<std::pair<std::string, at::Tensor>> namedTrainableParameters() const override
    {
        std::vector<std::pair<std::string, at::Tensor>> out;
        for (const auto& item : m_backbone->named_parameters(true))
            if (item.value().requires_grad())
                out.emplace_back(item.key(), item.value());
        return out;
    }
};

} // namespace ladder
