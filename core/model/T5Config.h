#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model/BackboneShape.h"

namespace ladder {

// The fields of a HuggingFace T5 config.json that define the network (docs/ARCHITECTURE.md, "model/").
struct T5Config {
    std::int64_t vocabSize = 32128;
    std::int64_t dModel = 512;
    std::int64_t dKv = 64;
    std::int64_t dFf = 2048;
    std::int64_t numHeads = 8;
    std::int64_t numLayers = 6;
    std::int64_t numDecoderLayers = 6;
    std::int64_t relativeAttentionNumBuckets = 32;
    std::int64_t relativeAttentionMaxDistance = 128;
    double dropoutRate = 0.1;
    double layerNormEpsilon = 1e-6;
    // "relu" (T5 v1.0) or "gated-gelu" (v1.1, Flan); also "gelu", "gated-relu", "gated-silu", "silu".
    std::string feedForwardProj = "relu";
    bool tieWordEmbeddings = true;
    std::int64_t padTokenId = 0;
    std::int64_t eosTokenId = 1;
    std::int64_t decoderStartTokenId = 0;

    // Derived from feedForwardProj.
    bool isGatedAct() const;
    // "relu", "gelu_new" (HF maps gated-gelu to the tanh approximation), "gelu", "silu".
    std::string denseActFn() const;
    std::int64_t innerDim() const { return numHeads * dKv; }
    // The sizes code outside model/ reads (model/Backbone.h): architecture "t5", d_model, d_ff, heads,
    // d_kv, vocabulary, num_layers, num_decoder_layers, tie_word_embeddings.
    BackboneShape shape() const;
    // Parameters of HF's T5ForConditionalGeneration of this shape, from the sizes alone (no weights): the
    // shared embedding, each block's attention, feed-forward and layer norms, one relative-position bias per
    // stack, the final norms, and the LM head when it is not tied (tied weights count once, as HF's
    // num_parameters() does).
    std::int64_t parameterCount() const;

    // Throws ladder::Error naming the first field that is out of range.
    void validate() const;

    // Reads config.json. Missing required fields, wrong types or out-of-range values throw
    // ladder::Error naming the file and the field ("config.json: field d_model: expected a positive
    // integer").
    static T5Config fromJsonFile(const std::string& path);
    static T5Config fromJson(const nlohmann::json& json, const std::string& source = "config.json");
    nlohmann::json toJson() const;

    // The published HF configs, built without downloading anything: "t5-small", "t5-base", "t5-large",
    // "t5-3b", "t5-v1_1-small", "t5-v1_1-base", "flan-t5-small", "flan-t5-base". Throws on an unknown name.
    static T5Config preset(const std::string& name);
};

} // namespace ladder
