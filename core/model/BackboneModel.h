#pragma once

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include "model/Backbone.h"

namespace ladder {

// Logits over the target positions of a batch and the loss on them.
struct TargetOutput {
    at::Tensor logits; // (batch, target length, vocab)
    at::Tensor loss; // scalar mean over labels != -100; undefined without labels
};

// A backbone as a module: what the methods (peft/Method.h), the trainer and export hold. Each architecture's
// top-level module derives from it (T5ForConditionalGenerationImpl, LlamaForCausalLMImpl), so a method holds
// any of them; what is one architecture's own (BitFit's biases, LoRA's targets, LST's side network) casts
// to the concrete type (asT5(), asLlama() in their headers).
class BackboneModelImpl : public torch::nn::Module, public Backbone {
public:
    // Teacher forcing in the sequence-to-sequence contract every task is served in (data/Seq2SeqBatch.h): a
    // source (batch, S) with its 0/1 mask and labels (batch, T, -100 = ignored) -> logits over the T target
    // positions and the loss (Backbone::crossEntropy). T5: the encoder over the source, the decoder over
    // shiftRight(labels). A decoder-only model: the source, then the labels, as one causal sequence
    // (model/CausalJoin.h): position j of the targets is predicted from the source and targets before it.
    virtual TargetOutput forwardTargets(
        const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& labels)
        = 0;
};

using BackboneModel = std::shared_ptr<BackboneModelImpl>;

} // namespace ladder
