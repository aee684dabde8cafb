#include "model/T5Config.h"

#include <nlohmann/json.hpp>

#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace {

using nlohmann::json;

std::int64_t requirePositiveInt(const json& j, const std::string& source, const char* field)
{
    if (!j.contains(field))
        throw Error(source + ": missing field " + field + " (expected a positive integer)");
    const auto& v = j.at(field);
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0)
        throw Error(source + ": field " + field + ": expected a positive integer, got " + brief(v));
    return v.get<std::int64_t>();
}

std::int64_t optionalInt(
    const json& j, const std::string& source, const char* field, std::int64_t fallback, std::int64_t minimum)
{
    if (!j.contains(field) || j.at(field).is_null())
        return fallback;
    const auto& v = j.at(field);
    if (!v.is_number_integer() || v.get<std::int64_t>() < minimum)
        throw Error(source + ": field " + field + ": expected an integer >= " + std::to_string(minimum)
            + ", got " + brief(v));
    return v.get<std::int64_t>();
}

double optionalNumber(
    const json& j, const std::string& source, const char* field, double fallback, double lo, double hi)
{
    if (!j.contains(field) || j.at(field).is_null())
        return fallback;
    const auto& v = j.at(field);
    if (!v.is_number() || v.get<double>() < lo || v.get<double>() > hi)
        throw Error(source + ": field " + field + ": expected a number in [" + std::to_string(lo) + ", "
            + std::to_string(hi) + "], got " + brief(v));
    return v.get<double>();
}

constexpr std::int64_t kMaxVocabSize = std::int64_t(1) << 22;
constexpr std::int64_t kMaxWidth = std::int64_t(1) << 16;
constexpr std::int64_t kMaxHeads = 1024;
constexpr std::int64_t kMaxLayers = 1024;
constexpr std::int64_t kMaxBuckets = 4096;
constexpr std::int64_t kMaxDistance = std::int64_t(1) << 20;

bool knownActivation(const std::string& act)
{
    return act == "relu" || act == "gelu" || act == "gelu_new" || act == "silu" || act == "gelu_pytorch_tanh";
}

} // namespace

std::int64_t T5Config::parameterCount() const
{
    const std::int64_t d = dModel;
    const std::int64_t ffn = (isGatedAct() ? 3 : 2) * d * dFf; // wi (wi_0 and wi_1 when gated), wo
    const std::int64_t attention = 4 * d * innerDim(); // q, k, v, o
    const std::int64_t bias = relativeAttentionNumBuckets * numHeads; // the first block of each stack
    const std::int64_t encoderBlock = attention + ffn + 2 * d; // self-attention, ffn, two layer norms
    const std::int64_t decoderBlock = 2 * attention + ffn + 3 * d; // plus cross-attention and its norm
    std::int64_t n = vocabSize * d; // shared embedding
    n += numLayers * encoderBlock + bias + d; // + final layer norm
    n += numDecoderLayers * decoderBlock + bias + d;
    if (!tieWordEmbeddings)
        n += vocabSize * d; // lm_head
    return n;
}

bool T5Config::isGatedAct() const
{
    return feedForwardProj.rfind("gated-", 0) == 0;
}

std::string T5Config::denseActFn() const
{
    std::string act = isGatedAct() ? feedForwardProj.substr(6) : feedForwardProj;
    // HF: "gated-gelu" means the tanh approximation (gelu_new) for backwards compatibility.
    if (feedForwardProj == "gated-gelu")
        act = "gelu_new";
    return act;
}

void T5Config::validate() const
{
    auto positive = [](std::int64_t v, const char* field) {
        if (v <= 0)
            throw Error(
                std::string("T5 config: field ") + field + " must be positive, got " + std::to_string(v));
    };
    positive(vocabSize, "vocab_size");
    positive(dModel, "d_model");
    positive(dKv, "d_kv");
    positive(dFf, "d_ff");
    positive(numHeads, "num_heads");
    positive(numLayers, "num_layers");
    positive(numDecoderLayers, "num_decoder_layers");
    positive(relativeAttentionNumBuckets, "relative_attention_num_buckets");
    positive(relativeAttentionMaxDistance, "relative_attention_max_distance");
    // Bounds far above any published T5 (t5-11b: d_ff 65,536, 128 heads of 128; mT5: 250,112 pieces), so
    // that a lying config.json fails here, naming the field, instead of in the allocator.
    auto atMost = [](std::int64_t v, std::int64_t most, const char* field) {
        if (v > most)
            throw Error(std::string("T5 config: field ") + field + ": expected at most "
                + std::to_string(most) + ", got " + std::to_string(v));
    };
    atMost(vocabSize, kMaxVocabSize, "vocab_size");
    atMost(dModel, kMaxWidth, "d_model");
    atMost(dKv, kMaxWidth, "d_kv");
    atMost(dFf, 4 * kMaxWidth, "d_ff");
    atMost(numHeads, kMaxHeads, "num_heads");
    atMost(numHeads * dKv, kMaxWidth, "num_heads x d_kv");
    atMost(numLayers, kMaxLayers, "num_layers");
    atMost(numDecoderLayers, kMaxLayers, "num_decoder_layers");
    atMost(relativeAttentionNumBuckets, kMaxBuckets, "relative_attention_num_buckets");
    atMost(relativeAttentionMaxDistance, kMaxDistance, "relative_attention_max_distance");
    if (relativeAttentionNumBuckets < 4)
        throw Error("T5 config: field relative_attention_num_buckets must be at least 4");
    if (!knownActivation(denseActFn()))
        throw Error("T5 config: field feed_forward_proj: unsupported activation '"
            + oneLine(feedForwardProj, 60)
            + "' (expected relu, gelu, silu, or gated-gelu / gated-relu / gated-silu)");
    for (auto id : { padTokenId, eosTokenId, decoderStartTokenId })
        if (id < 0 || id >= vocabSize)
            throw Error("T5 config: special token id " + std::to_string(id) + " is outside the vocabulary of "
                + std::to_string(vocabSize));
}

T5Config T5Config::fromJson(const json& j, const std::string& source)
{
    if (!j.is_object())
        throw Error(source + ": expected a JSON object");
    if (j.contains("model_type") && j.at("model_type") != "t5" && j.at("model_type") != "mt5")
        throw Error(source + ": field model_type: expected \"t5\", got " + brief(j.at("model_type")));
    T5Config c;
    c.vocabSize = requirePositiveInt(j, source, "vocab_size");
    c.dModel = requirePositiveInt(j, source, "d_model");
    c.dKv = requirePositiveInt(j, source, "d_kv");
    c.dFf = requirePositiveInt(j, source, "d_ff");
    c.numHeads = requirePositiveInt(j, source, "num_heads");
    c.numLayers = requirePositiveInt(j, source, "num_layers");
    c.numDecoderLayers = optionalInt(j, source, "num_decoder_layers", c.numLayers, 1);
    c.relativeAttentionNumBuckets = optionalInt(j, source, "relative_attention_num_buckets", 32, 4);
    c.relativeAttentionMaxDistance = optionalInt(j, source, "relative_attention_max_distance", 128, 1);
    c.dropoutRate = optionalNumber(j, source, "dropout_rate", 0.1, 0.0, 1.0);
    c.layerNormEpsilon = optionalNumber(j, source, "layer_norm_epsilon", 1e-6, 0.0, 1.0);
    if (j.contains("feed_forward_proj")) {
        if (!j.at("feed_forward_proj").is_string())
            throw Error(
                source + ": field feed_forward_proj: expected a string such as \"relu\" or \"gated-gelu\"");
        c.feedForwardProj = j.at("feed_forward_proj").get<std::string>();
    }
    if (j.contains("tie_word_embeddings")) {
        if (!j.at("tie_word_embeddings").is_boolean())
            throw Error(source + ": field tie_word_embeddings: expected true or false");
        c.tieWordEmbeddings = j.at("tie_word_embeddings").get<bool>();
    }
    c.padTokenId = optionalInt(j, source, "pad_token_id", 0, 0);
    c.eosTokenId = optionalInt(j, source, "eos_token_id", 1, 0);
    c.decoderStartTokenId = optionalInt(j, source, "decoder_start_token_id", c.padTokenId, 0);
    try {
        c.validate();
    } catch (const Error& e) {
        throw Error(source + ": " + e.what());
    }
    return c;
}

T5Config T5Config::fromJsonFile(const std::string& path)
{
    return fromJson(readJsonFile(path, "a HuggingFace T5 config.json"), path);
}

BackboneShape T5Config::shape() const
{
    BackboneShape s;
    s.architecture = "t5";
    s.hiddenSize = dModel;
    s.feedForwardSize = dFf;
    s.heads = numHeads;
    s.headSize = dKv;
    s.vocabSize = vocabSize;
    s.encoderBlocks = numLayers;
    s.decoderBlocks = numDecoderLayers;
    s.tiedEmbeddings = tieWordEmbeddings;
    return s;
}

json T5Config::toJson() const
{
    return json { { "model_type", "t5" }, { "architectures", { "T5ForConditionalGeneration" } },
        { "vocab_size", vocabSize }, { "d_model", dModel }, { "d_kv", dKv }, { "d_ff", dFf },
        { "num_heads", numHeads }, { "num_layers", numLayers }, { "num_decoder_layers", numDecoderLayers },
        { "relative_attention_num_buckets", relativeAttentionNumBuckets },
        { "relative_attention_max_distance", relativeAttentionMaxDistance }, { "dropout_rate", dropoutRate },
        { "layer_norm_epsilon", layerNormEpsilon }, { "feed_forward_proj", feedForwardProj },
        { "is_gated_act", isGatedAct() }, { "dense_act_fn", denseActFn() },
        { "tie_word_embeddings", tieWordEmbeddings }, { "pad_token_id", padTokenId },
        { "eos_token_id", eosTokenId }, { "decoder_start_token_id", decoderStartTokenId },
        { "is_encoder_decoder", true } };
}

T5Config T5Config::preset(const std::string& name)
{
    T5Config c; // t5-small defaults above (vocab 32128, d 512, d_kv 64, d_ff 2048, 8 heads, 6+6 layers)
    if (name == "t5-small") {
        return c;
    } else if (name == "t5-base") {
        c.dModel = 768;
        c.dFf = 3072;
        c.numHeads = 12;
        c.numLayers = c.numDecoderLayers = 12;
    } else if (name == "t5-large") {
        c.dModel = 1024;
        c.dFf = 4096;
        c.numHeads = 16;
        c.numLayers = c.numDecoderLayers = 24;
    } else if (name == "t5-3b") {
        c.dModel = 1024;
        c.dKv = 128;
        c.dFf = 16384;
        c.numHeads = 32;
        c.numLayers = c.numDecoderLayers = 24;
    } else if (name == "t5-v1_1-small" || name == "flan-t5-small") {
        c.dModel = 512;
        c.dFf = 1024;
        c.numHeads = 6;
        c.numLayers = 8;
        c.numDecoderLayers = 8;
        c.feedForwardProj = "gated-gelu";
        c.tieWordEmbeddings = false;
    } else if (name == "t5-v1_1-base" || name == "flan-t5-base") {
        c.dModel = 768;
        c.dFf = 2048;
        c.numHeads = 12;
        c.numLayers = c.numDecoderLayers = 12;
        c.feedForwardProj = "gated-gelu";
        c.tieWordEmbeddings = false;
    } else {
        throw Error("unknown model shape '" + name
            + "' (expected t5-small, t5-base, t5-large, t5-3b, t5-v1_1-small, t5-v1_1-base, "
              "flan-t5-small or flan-t5-base)");
    }
    return c;
}

} // namespace ladder
