#pragma once

#include <optional>
#include <string>

#include "model/llama/LlamaConfig.h"

namespace ladder {

// Published decoder shapes for the memory tools (`ladder bench memory`, `ladder estimate`, `ladder plan`,
// `ladder info --shape`), used with random weights:
//   llama-1b   TinyLlama 1.1B (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T's config.json): hidden
//              2048, intermediate 5632, 22 layers, 32 heads, 4 key/value heads, vocabulary 32000, rope_theta
//              10000, rms_norm_eps 1e-5, untied (1,100,048,384 parameters)
//   llama2-7b  Llama 2 7B (meta-llama/Llama-2-7b-hf): hidden 4096, intermediate 11008, 32 layers, 32 heads
//              (no grouping), vocabulary 32000, rope_theta 10000, rms_norm_eps 1e-5, untied
// Empty for another name.
std::optional<LlamaConfig> llamaShapePreset(const std::string& name);

// The decoder config that a tool's --shape NAME or --model DIR names (a preset above, or a folder whose
// config.json has model_type llama, mistral or qwen2), or empty for a T5 shape or folder (which then takes
// the T5 path with T5's errors, as before decoders existed).
std::optional<LlamaConfig> decoderConfigFor(const std::string& shape, const std::string& modelDirectory);

// "llama-1b, llama2-7b": for usage texts.
std::string llamaShapeNames();

} // namespace ladder
