#include "model/llama/LlamaConfig.h"

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace {

using nlohmann::json;

// Bounds far above any published decoder (Llama 3 405B: hidden 16,384, 126 layers, 128 heads, vocab
// 128,256; Qwen2: vocab 152,064), so that a lying config.json fails here, naming the field, instead of in
// the allocator.
constexpr std::int64_t kMaxVocabSize = std::int64_t(1) << 22;
constexpr std::int64_t kMaxWidth = std::int64_t(1) << 16;
constexpr std::int64_t kMaxIntermediate = std::int64_t(1) << 18;
constexpr std::int64_t kMaxHeads = 1024;
constexpr std::int64_t kMaxHeadDim = 4096;
constexpr std::int64_t kMaxLayers = 1024;
constexpr std::int64_t kMaxPositions = std::int64_t(1) << 24;

const char* const kSupportedRope = "default, linear, llama3";

std::int64_t requirePositiveInt(const json& j, const std::string& source, const char* field)
{
    if (!j.contains(field))
        throw Error(source + ": missing field " + field + " (expected a positive integer)");
    const auto& v = j.at(field);
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0)
        throw Error(source + ": field " + field + ": expected a positive integer, got " + brief(v));
    return v.get<std::int64_t>();
}

std::optional<std::int64_t> optionalPositiveInt(const json& j, const std::string& source, const char* field)
{
    if (!j.contains(field) || j.at(field).is_null())
        return std::nullopt;
    return requirePositiveInt(j, source, field);
}

std::optional<std::int64_t> optionalTokenId(const json& j, const std::string& source, const char* field)
{
    if (!j.contains(field) || j.at(field).is_null())
        return std::nullopt;
    const auto& v = j.at(field);
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
        throw Error(source + ": field " + field + ": expected a token id (integer >= 0), got " + brief(v));
    return v.get<std::int64_t>();
}

double number(
    const json& j, const std::string& source, const std::string& field, double fallback, double lo, double hi)
{
    if (!j.contains(field) || j.at(field).is_null())
        return fallback;
    const auto& v = j.at(field);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo || v.get<double>() > hi)
        throw Error(source + ": field " + field + ": expected a number in [" + std::to_string(lo) + ", "
            + std::to_string(hi) + "], got " + brief(v));
    return v.get<double>();
}

bool boolean(const json& j, const std::string& source, const char* field, bool fallback)
{
    if (!j.contains(field) || j.at(field).is_null())
        return fallback;
    if (!j.at(field).is_boolean())
        throw Error(source + ": field " + field + ": expected true or false, got " + brief(j.at(field)));
    return j.at(field).get<bool>();
}

// The rope parameters of either layout: `params` is rope_parameters (tf5) or rope_scaling (tf4, where
// rope_theta is top-level and passed as `theta`). `where` names the object in errors.
LlamaRope parseRope(const json& params, double theta, const std::string& source, const std::string& where)
{
    LlamaRope rope;
    rope.theta = theta;
    if (params.is_null())
        return rope;
    if (!params.is_object())
        throw Error(source + ": field " + where + ": expected an object, got " + brief(params));
    std::string type = "default";
    const char* typeKey = params.contains("rope_type") ? "rope_type" : "type";
    if (params.contains(typeKey)) {
        if (!params.at(typeKey).is_string())
            throw Error(source + ": field " + where + "." + typeKey + ": expected a string, got "
                + brief(params.at(typeKey)));
        type = params.at(typeKey).get<std::string>();
    } else if (!params.empty() && params.begin().value().is_object()) {
        throw Error(source + ": field " + where
            + ": per-layer-type rope parameters are not supported (expected one rope_type for every layer)");
    }
    if (type != "default" && type != "linear" && type != "llama3")
        throw Error(source + ": field " + where + "." + typeKey + ": unsupported rope type '"
            + oneLine(type, 60) + "' (supported: " + kSupportedRope + ")");
    rope.type = type;
    rope.theta = number(params, source, "rope_theta", theta, 1e-6, 1e15);
    if (number(params, source, "partial_rotary_factor", 1.0, 0.0, 1.0) != 1.0)
        throw Error(source + ": field " + where
            + ".partial_rotary_factor: only 1.0 is supported (Llama rotates " + "the whole head)");
    const auto required = [&](const char* field) {
        if (!params.contains(field) || params.at(field).is_null())
            throw Error(source + ": field " + where + "." + field + ": required for rope type " + type);
    };
    if (type == "linear" || type == "llama3") {
        required("factor");
        rope.factor = number(params, source, "factor", 1.0, 1e-6, 1e6);
    }
    if (type == "llama3") {
        required("low_freq_factor");
        required("high_freq_factor");
        required("original_max_position_embeddings");
        rope.lowFreqFactor = number(params, source, "low_freq_factor", 1.0, 1e-6, 1e6);
        rope.highFreqFactor = number(params, source, "high_freq_factor", 4.0, 1e-6, 1e6);
        if (rope.highFreqFactor <= rope.lowFreqFactor)
            throw Error(source + ": field " + where
                + ".high_freq_factor: must be greater than low_freq_factor (llama3 rope)");
        rope.originalMaxPositionEmbeddings
            = requirePositiveInt(params, source, "original_max_position_embeddings");
    }
    return rope;
}

std::string formatNumber(double v)
{
    std::ostringstream s;
    s << v;
    return s.str();
}

} // namespace

bool LlamaConfig::supportsModelType(const std::string& modelType)
{
    return modelType == "llama" || modelType == "mistral" || modelType == "qwen2";
}

std::int64_t LlamaConfig::generationPadId() const
{
    if (padTokenId)
        return *padTokenId;
    return eosTokenIds.empty() ? 0 : eosTokenIds.front();
}

BackboneShape LlamaConfig::shape() const
{
    BackboneShape s;
    s.architecture = modelType;
    s.hiddenSize = hiddenSize;
    s.feedForwardSize = intermediateSize;
    s.heads = numAttentionHeads;
    s.keyValueHeads = numKeyValueHeads;
    s.headSize = headDim;
    s.vocabSize = vocabSize;
    s.encoderBlocks = 0;
    s.decoderBlocks = numHiddenLayers;
    s.tiedEmbeddings = tieWordEmbeddings;
    return s;
}

std::int64_t LlamaConfig::parameterCount() const
{
    const std::int64_t h = hiddenSize, q = numAttentionHeads * headDim, kv = numKeyValueHeads * headDim;
    std::int64_t attention = h * q + 2 * h * kv + q * h;
    if (qkvBias())
        attention += q + 2 * kv;
    if (oBias())
        attention += h;
    std::int64_t mlp = 3 * h * intermediateSize;
    if (mlpHasBias())
        mlp += 2 * intermediateSize + h;
    const std::int64_t layer = attention + mlp + 2 * h; // two RMSNorms
    std::int64_t n = vocabSize * h + numHiddenLayers * layer + h;
    if (!tieWordEmbeddings)
        n += vocabSize * h;
    return n;
}

std::string LlamaConfig::ropeDescription() const
{
    std::string s = rope.type + " theta=" + formatNumber(rope.theta);
    if (rope.type == "linear")
        s += " factor " + formatNumber(rope.factor);
    if (rope.type == "llama3")
        s += " factor " + formatNumber(rope.factor) + " (low " + formatNumber(rope.lowFreqFactor) + ", high "
            + formatNumber(rope.highFreqFactor) + ", original "
            + std::to_string(rope.originalMaxPositionEmbeddings) + ")";
    return s;
}

void LlamaConfig::validate() const
{
    const std::string what = modelType + " config: field ";
    auto range = [&](std::int64_t v, std::int64_t most, const char* field) {
        if (v <= 0 || v > most)
            throw Error(
                what + field + ": expected 1 to " + std::to_string(most) + ", got " + std::to_string(v));
    };
    range(vocabSize, kMaxVocabSize, "vocab_size");
    range(hiddenSize, kMaxWidth, "hidden_size");
    range(intermediateSize, kMaxIntermediate, "intermediate_size");
    range(numHiddenLayers, kMaxLayers, "num_hidden_layers");
    range(numAttentionHeads, kMaxHeads, "num_attention_heads");
    range(numKeyValueHeads, kMaxHeads, "num_key_value_heads");
    range(headDim, kMaxHeadDim, "head_dim");
    range(numAttentionHeads * headDim, kMaxWidth, "num_attention_heads x head_dim");
    range(maxPositionEmbeddings, kMaxPositions, "max_position_embeddings");
    if (numAttentionHeads % numKeyValueHeads != 0)
        throw Error(what + "num_key_value_heads: " + std::to_string(numKeyValueHeads)
            + " does not divide num_attention_heads " + std::to_string(numAttentionHeads));
    if (headDim % 2 != 0)
        throw Error(what + "head_dim: must be even for rotary embeddings, got " + std::to_string(headDim));
    if (!(rmsNormEps > 0.0) || rmsNormEps > 1.0)
        throw Error(what + "rms_norm_eps: expected a number in (0, 1]");
    if (slidingWindow && *slidingWindow <= 0)
        throw Error(what + "sliding_window: expected a positive integer");
    const auto tokenInRange = [&](std::optional<std::int64_t> id, const char* field) {
        if (id && (*id < 0 || *id >= vocabSize))
            throw Error(what + field + ": " + std::to_string(*id) + " is outside the vocabulary (vocab_size "
                + std::to_string(vocabSize) + ")");
    };
    tokenInRange(bosTokenId, "bos_token_id");
    tokenInRange(padTokenId, "pad_token_id");
    for (const auto id : eosTokenIds)
        tokenInRange(id, "eos_token_id");
}

LlamaConfig LlamaConfig::fromJson(const json& j, const std::string& source)
{
    if (!j.is_object())
        throw Error(source + ": expected a JSON object");
    LlamaConfig c;
    if (!j.contains("model_type") || !j.at("model_type").is_string())
        throw Error(source + ": field model_type: expected \"llama\", \"mistral\" or \"qwen2\"");
    c.modelType = j.at("model_type").get<std::string>();
    if (!supportsModelType(c.modelType))
        throw Error(source + ": field model_type: unsupported '" + oneLine(c.modelType, 60)
            + "' (supported decoders: llama, mistral, qwen2)");
    if (j.contains("architectures") && j.at("architectures").is_array()) {
        for (const auto& a : j.at("architectures")) {
            if (!a.is_string())
                continue;
            const auto arch = a.get<std::string>();
            if (arch != "LlamaForCausalLM" && arch != "MistralForCausalLM" && arch != "Qwen2ForCausalLM")
                throw Error(source + ": field architectures: unsupported '" + oneLine(arch, 60)
                    + "' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
        }
    }
    c.vocabSize = requirePositiveInt(j, source, "vocab_size");
    c.hiddenSize = requirePositiveInt(j, source, "hidden_size");
    c.intermediateSize = requirePositiveInt(j, source, "intermediate_size");
    c.numHiddenLayers = requirePositiveInt(j, source, "num_hidden_layers");
    c.numAttentionHeads = requirePositiveInt(j, source, "num_attention_heads");
    c.numKeyValueHeads = optionalPositiveInt(j, source, "num_key_value_heads").value_or(c.numAttentionHeads);
    if (c.hiddenSize % c.numAttentionHeads != 0 && !(j.contains("head_dim") && !j.at("head_dim").is_null()))
        throw Error(source + ": field hidden_size: " + std::to_string(c.hiddenSize)
            + " is not a multiple of num_attention_heads " + std::to_string(c.numAttentionHeads)
            + " (and no head_dim is given)");
    c.headDim = optionalPositiveInt(j, source, "head_dim").value_or(c.hiddenSize / c.numAttentionHeads);
    c.maxPositionEmbeddings = optionalPositiveInt(j, source, "max_position_embeddings")
                                  .value_or(c.modelType == "llama" ? 2048
                                          : c.modelType == "qwen2" ? 32768
                                                                   : 131072);
    c.rmsNormEps = number(j, source, "rms_norm_eps", 1e-6, 0.0, 1.0);
    if (j.contains("hidden_act") && !j.at("hidden_act").is_null()) {
        const auto& act = j.at("hidden_act");
        if (!act.is_string() || act.get<std::string>() != "silu")
            throw Error(source + ": field hidden_act: unsupported " + brief(act) + " (supported: silu)");
    }
    c.tieWordEmbeddings = boolean(j, source, "tie_word_embeddings", false);
    c.attentionBias = boolean(j, source, "attention_bias", false);
    c.mlpBias = boolean(j, source, "mlp_bias", false);

    // Rope: rope_parameters (tf5) wins; else top-level rope_theta and rope_scaling (tf4).
    if (j.contains("rope_parameters") && !j.at("rope_parameters").is_null()) {
        const auto& p = j.at("rope_parameters");
        c.rope = parseRope(
            p, p.is_object() && p.contains("rope_theta") ? 0.0 : 10000.0, source, "rope_parameters");
        if (p.is_object() && !p.contains("rope_theta"))
            c.rope.theta = number(j, source, "rope_theta", 10000.0, 1e-6, 1e15);
    } else {
        const double theta = number(j, source, "rope_theta", 10000.0, 1e-6, 1e15);
        c.rope = parseRope(
            j.contains("rope_scaling") ? j.at("rope_scaling") : json(), theta, source, "rope_scaling");
    }

    if (c.modelType == "mistral") {
        // HF's MistralConfig defaults sliding_window to 4096 when the key is absent; null disables it.
        if (!j.contains("sliding_window"))
            c.slidingWindow = 4096;
        else
            c.slidingWindow = optionalPositiveInt(j, source, "sliding_window");
    } else if (c.modelType == "qwen2") {
        if (boolean(j, source, "use_sliding_window", false))
            throw Error(source
                + ": field use_sliding_window: true is not supported (Qwen2's per-layer sliding "
                  "window); only full attention");
        if (j.contains("layer_types") && j.at("layer_types").is_array())
            for (const auto& t : j.at("layer_types"))
                if (!t.is_string() || t.get<std::string>() != "full_attention")
                    throw Error(source + ": field layer_types: " + brief(t)
                        + " is not supported (only full_attention layers)");
    }

    c.bosTokenId = optionalTokenId(j, source, "bos_token_id");
    c.padTokenId = optionalTokenId(j, source, "pad_token_id");
    if (j.contains("eos_token_id") && !j.at("eos_token_id").is_null()) {
        const auto& e = j.at("eos_token_id");
        if (e.is_array()) {
            if (e.size() > 64)
                throw Error(source + ": field eos_token_id: at most 64 ids, got " + std::to_string(e.size()));
            for (const auto& v : e) {
                if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
                    throw Error(source + ": field eos_token_id: expected token ids, got " + brief(e));
                c.eosTokenIds.push_back(v.get<std::int64_t>());
            }
        } else {
            c.eosTokenIds.push_back(*optionalTokenId(j, source, "eos_token_id"));
        }
    }
    for (const char* field : { "dtype", "torch_dtype" })
        if (j.contains(field) && j.at(field).is_string()) {
            c.dtype = j.at(field).get<std::string>();
            break;
        }
    try {
        c.validate();
    } catch (const Error& e) {
        throw Error(source + ": " + e.what());
    }
    return c;
}

LlamaConfig LlamaConfig::fromJsonFile(const std::string& path)
{
    return fromJson(readJsonFile(path, "a HuggingFace decoder config.json"), path);
}

json LlamaConfig::toJson() const
{
    json rp = { { "rope_type", rope.type }, { "rope_theta", rope.theta } };
    if (rope.type == "linear" || rope.type == "llama3")
        rp["factor"] = rope.factor;
    if (rope.type == "llama3") {
        rp["low_freq_factor"] = rope.lowFreqFactor;
        rp["high_freq_factor"] = rope.highFreqFactor;
        rp["original_max_position_embeddings"] = rope.originalMaxPositionEmbeddings;
    }
    json j = {
        { "model_type", modelType },
        { "vocab_size", vocabSize },
        { "hidden_size", hiddenSize },
        { "intermediate_size", intermediateSize },
        { "num_hidden_layers", numHiddenLayers },
        { "num_attention_heads", numAttentionHeads },
        { "num_key_value_heads", numKeyValueHeads },
        { "head_dim", headDim },
        { "max_position_embeddings", maxPositionEmbeddings },
        { "rms_norm_eps", rmsNormEps },
        { "hidden_act", "silu" },
        { "rope_parameters", rp },
        { "tie_word_embeddings", tieWordEmbeddings },
        { "attention_bias", attentionBias },
        { "mlp_bias", mlpBias },
        { "sliding_window", slidingWindow ? json(*slidingWindow) : json() },
    };
    j["bos_token_id"] = bosTokenId ? json(*bosTokenId) : json();
    j["pad_token_id"] = padTokenId ? json(*padTokenId) : json();
    if (eosTokenIds.size() == 1)
        j["eos_token_id"] = eosTokenIds.front();
    else if (eosTokenIds.empty())
        j["eos_token_id"] = nullptr;
    else
        j["eos_token_id"] = eosTokenIds;
    return j;
}

} // namespace ladder
