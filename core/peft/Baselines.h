#pragma once

#include <memory>

#include "peft/Method.h"

namespace ladder {

// The baselines LST is judged against (docs/LST.md): full, bitfit, adapter, lora, prompt.
// Each modifies the backbone in place and trains the parameters left with requires_grad.
std::unique_ptr<Method> createBaselineMethod(
    T5ForConditionalGeneration backbone, const MethodOptions& options);

// Layer l of the backbone counted encoder first: l < num_layers is encoder block l, otherwise decoder
// block l - num_layers. The first `freeze` layers are frozen (paper Figure 6).
bool isFrozenLayer(const T5Config& config, bool decoder, std::int64_t block, std::int64_t freeze);

// Prompt tuning's initial vectors (Lester et al.), for any architecture: the input embeddings of `prompts`
// random vocabulary entries among ids 3..4999 (or the vocabulary's size), as a trainable leaf on the
// embedding's device. embed() gives the rows also when the embedding is held in frozen storage.
at::Tensor initialPromptVectors(BackboneModelImpl& backbone, std::int64_t prompts);

} // namespace ladder
