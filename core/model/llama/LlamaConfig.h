#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/BackboneShape.h"

namespace ladder {

// Rotary position embeddings as HF's modeling_rope_utils computes their inverse frequencies. Supported
// rope types: "default", "linear" (inv_freq / factor) and "llama3" (Llama 3.1's smoothed per-band
// scaling). Every other type ("dynamic", "yarn", "longrope", ...) is refused with the supported list:
// "dynamic" recomputes the frequencies from the longest sequence seen so far, state that a cached
// generation and a teacher-forced forward would not share here.
struct LlamaRope {
    std::string type = "default";
    double theta = 10000.0;
    double factor = 1.0; // linear, llama3
    double lowFreqFactor = 1.0; // llama3
    double highFreqFactor = 4.0; // llama3
    std::int64_t originalMaxPositionEmbeddings = 0; // llama3
};

// The fields of a HuggingFace Llama / Mistral / Qwen2 config.json that define the network. Both layouts
// load: transformers 4 (top-level rope_theta, rope_scaling {type|rope_type, ...}, torch_dtype) and
// transformers 5 (rope_parameters {rope_type, rope_theta, ...}, dtype); they give equal configs.
struct LlamaConfig {
    std::string modelType = "llama"; // "llama", "mistral", "qwen2"
    std::int64_t vocabSize = 32000;
    std::int64_t hiddenSize = 4096;
    std::int64_t intermediateSize = 11008;
    std::int64_t numHiddenLayers = 32;
    std::int64_t numAttentionHeads = 32;
    std::int64_t numKeyValueHeads = 32; // default: num_attention_heads
    std::int64_t headDim = 128; // default: hidden_size / num_attention_heads
    std::int64_t maxPositionEmbeddings = 2048;
    double rmsNormEps = 1e-6;
    LlamaRope rope;
    bool tieWordEmbeddings = false;
    // Llama's attention_bias (q, k, v and o) and mlp_bias (gate, up, down), as written. Qwen2 has q/k/v
    // biases and no others whatever the file says, and Mistral has none (their modeling code fixes
    // bias=True/False): qkvBias(), oBias() and mlpHasBias() say what the network has.
    bool attentionBias = false;
    bool mlpBias = false;
    // Mistral: key j is visible to query i only when i - j < slidingWindow (HF's sliding-window causal
    // mask, over columns of the cache). Unset: full causal attention (Llama, Qwen2 without
    // use_sliding_window).
    std::optional<std::int64_t> slidingWindow;
    std::optional<std::int64_t> bosTokenId;
    std::vector<std::int64_t> eosTokenIds; // eos_token_id: an integer or a list
    std::optional<std::int64_t> padTokenId;
    std::string dtype = "float32"; // torch_dtype (tf4) / dtype (tf5), as written; informational

    bool qkvBias() const { return modelType == "qwen2" || (attentionBias && modelType == "llama"); }
    bool oBias() const { return attentionBias && modelType == "llama"; }
    bool mlpHasBias() const { return mlpBias && modelType == "llama"; }
    // HF's generate() pads finished rows with pad_token_id, else with the first eos id.
    std::int64_t generationPadId() const;

    // architecture = model_type, hidden, intermediate, heads, key/value heads, head_dim, vocabulary, layers
    // (decoderBlocks; encoderBlocks 0), tie_word_embeddings.
    BackboneShape shape() const;
    // Parameters of HF's *ForCausalLM of this shape from the sizes alone (tied weights count once).
    std::int64_t parameterCount() const;
    // "default θ=10000", "llama3 θ=500000 factor 8 (low 1, high 4, original 8192)".
    std::string ropeDescription() const;

    // Throws ladder::Error naming the first field that is out of range.
    void validate() const;

    // Reads config.json; errors name the file and the field ("config.json: field rope_parameters.rope_type:
    // unsupported 'yarn' (supported: default, linear, llama3)").
    static LlamaConfig fromJsonFile(const std::string& path);
    static LlamaConfig fromJson(const nlohmann::json& json, const std::string& source = "config.json");
    // The transformers 5 layout, every field that defines the network (Backbone::configJson()).
    nlohmann::json toJson() const;
    // True for model_type llama, mistral, qwen2.
    static bool supportsModelType(const std::string& modelType);
};

} // namespace ladder
