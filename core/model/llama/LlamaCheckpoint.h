#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json_fwd.hpp>

#include "model/Safetensors.h"
#include "model/llama/LlamaModel.h"

namespace ladder {

struct LlamaLoadOptions {
    c10::ScalarType dtype = c10::kFloat; // compute dtype: kFloat or kBFloat16
    c10::Device device = c10::Device(c10::kCPU);
    // config.json as the caller has read it already (loadBackbone), else read here.
    std::shared_ptr<const nlohmann::json> config;
};

struct LoadedLlama {
    LlamaForCausalLM model { nullptr };
    LlamaConfig config;
    std::string directory;
    std::string weightsDescription; // "model.safetensors", "sharded safetensors (...)", "pytorch_model.bin"
    std::string storedDtype; // "F32", "BF16", "F16+F32", ...
};

// The sizes config.json states against the weights' shapes, before any model is built: the embedding
// (vocab_size, hidden_size), the first layer's q/k/v/o (num_attention_heads x head_dim,
// num_key_value_heads x head_dim), the MLP (intermediate_size), the number of layers, and lm_head. One line
// naming the field when they disagree. The tensors these sizes are read from (the embedding, or
// lm_head.weight when tied; layer 0's projections) must be present: without them a lying config would be
// allocated first.
void checkLlamaConfigMatchesWeights(const LlamaConfig& config,
    const std::map<std::string, std::vector<std::int64_t>>& shapes, const std::string& configPath,
    const std::string& weights);

// Copies `tensors` into `model` (converting dtype), strictly: a missing, unexpected or mis-shaped tensor is
// an error naming it; lm_head.weight may be absent or present (then of the embedding's shape) when the
// embeddings are tied; HF's non-persistent rotary buffers (*.rotary_emb.inv_freq) are ignored. A tensor with
// a NaN or infinite value is refused.
void loadLlamaStateDict(LlamaForCausalLM& model, const TensorMap& tensors, const std::string& source);

// config.json + weights (model.safetensors, sharded, or pytorch_model.bin; F32/F16/BF16) -> a model in eval
// mode on the chosen device and compute dtype. tie_word_embeddings true is read as transformers 5.25's
// from_pretrained reads it: a file with only lm_head.weight ties the embedding to it, and a file with both
// tensors different is loaded untied (config.tieWordEmbeddings false in the result), as HF does with a
// warning. Errors name config.json, the weights file (model.safetensors.index.json for shards) and the
// tensor.
LoadedLlama loadLlama(const std::string& directory, const LlamaLoadOptions& options = {});

} // namespace ladder
