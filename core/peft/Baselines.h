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

} // namespace ladder
