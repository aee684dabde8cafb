#include "peft/MethodOptions.h"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace {

using nlohmann::json;

const std::set<std::string>& fieldsOf(const std::string& method)
{
    static const std::map<std::string, std::set<std::string>> fields {
        { "full", { "method", "freeze", "visual_dim" } },
        { "bitfit", { "method", "freeze", "backbone_dtype", "quant_group_size", "visual_dim" } },
        { "adapter",
            { "method", "freeze", "hidden", "activation", "backbone_dtype", "quant_group_size",
                "visual_dim" } },
        { "lora",
            { "method", "freeze", "rank", "alpha", "dropout", "targets", "bitfit", "backbone_dtype",
                "quant_group_size", "visual_dim" } },
        { "qlora",
            { "method", "freeze", "rank", "alpha", "dropout", "targets", "bitfit", "backbone_dtype",
                "quant_group_size", "visual_dim" } },
        { "prompt", { "method", "prompts", "backbone_dtype", "quant_group_size", "visual_dim" } },
        { "ladder",
            { "method", "r", "keep", "gate_temperature", "init", "fisher_samples", "backbone_train_mode",
                "ablation", "merge_backbone", "cache", "cache_dtype", "cache_dir", "cache_padding",
                "backbone_dtype", "quant_group_size", "side_checkpoint", "side_attention", "ladder_dtype",
                "side_heads", "visual_dim" } },
    };
    return fields.at(method);
}

// Every size has a ceiling far above any real method (the paper: 100 prompts, adapters of 64, ranks of 32,
// reduction factors up to 32), so that "prompts": 2147483648 fails here, naming the field, instead of in
// the allocator.
std::int64_t intField(const json& j, const std::string& source, const char* field, std::int64_t minimum,
    std::int64_t maximum = 65536)
{
    const auto& v = j.at(field);
    if (!v.is_number_integer() || v.get<std::int64_t>() < minimum)
        throw Error(source + ": field " + field + ": expected an integer >= " + std::to_string(minimum)
            + ", got " + brief(v));
    if (v.get<std::int64_t>() > maximum)
        throw Error(source + ": field " + field + ": expected an integer <= " + std::to_string(maximum)
            + ", got " + brief(v));
    return v.get<std::int64_t>();
}

double numberField(
    const json& j, const std::string& source, const char* field, double lo, double hi, bool openLow = false)
{
    const auto& v = j.at(field);
    if (!v.is_number() || v.get<double>() < lo || v.get<double>() > hi || (openLow && v.get<double>() == lo))
        throw Error(source + ": field " + field + ": expected a number in " + (openLow ? "(" : "[")
            + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + brief(v));
    return v.get<double>();
}

bool boolField(const json& j, const std::string& source, const char* field)
{
    const auto& v = j.at(field);
    if (!v.is_boolean())
        throw Error(source + ": field " + field + ": expected true or false, got " + brief(v));
    return v.get<bool>();
}

std::string choiceField(
    const json& j, const std::string& source, const char* field, const std::vector<std::string>& choices)
{
    const auto& v = j.at(field);
    std::string list;
    for (const auto& c : choices)
        list += (list.empty() ? "" : ", ") + c;
    if (!v.is_string() || std::find(choices.begin(), choices.end(), v.get<std::string>()) == choices.end())
        throw Error(source + ": field " + field + ": expected one of " + list + ", got " + brief(v));
    return v.get<std::string>();
}

const std::vector<std::string> kActivations { "relu", "gelu", "silu", "tanh" };
// T5's projections, then a decoder-only backbone's (Llama, Mistral, Qwen2); validate() checks them against
// the backbone's architecture.
const std::vector<std::string> kTargets { "q", "k", "v", "o", "wi", "wo", "gate", "up", "down" };
const std::vector<std::string> kInits { "random", "magnitude", "fisher" };
const std::vector<std::string> kAblations { "none", "side-tuning", "no-ladders", "adapter-blocks",
    "cross-attention" };
const std::vector<std::string> kCacheModes { "none", "ram", "disk" };
const std::vector<std::string> kCacheDtypes { "fp32", "bf16" };
const std::vector<std::string> kCachePaddings { "same", "any" };
const std::vector<std::string> kBackboneDtypes { "fp32", "bf16", "int8", "int4" };
const std::vector<std::string> kSideAttention { "math", "sdpa" };
const std::vector<std::string> kLadderDtypes { "fp32", "bf16" };

// The activation cache stores what an eval-mode backbone computes; errors name the field.
void checkCache(const MethodOptions& o, const std::string& source)
{
    if (o.cache == "none")
        return;
    if (o.backboneTrainMode)
        throw Error(source
            + ": field cache: the ladder activation cache needs the backbone in eval mode, but "
              "backbone_train_mode is on (backbone dropout changes the ladder inputs every epoch)");
    if (o.ablation == "no-ladders" && !o.mergeBackbone)
        throw Error(
            source + ": field cache: the no-ladders ablation runs no backbone, so there is nothing to cache");
    if (o.ladderDtype == "bf16" && o.cacheDtype != "bf16")
        throw Error(source
            + ": field cache_dtype: ladder_dtype bf16 holds the ladders in bf16, so the cache stores them in "
              "bf16 too: set cache_dtype bf16");
    if (o.cache == "disk" && o.cacheDir.empty())
        throw Error(source + ": field cache_dir: cache disk needs a folder for its file");
}

// The memory options (issue 18) that do not need the backbone's shape; errors name the field.
void checkMemoryOptions(const MethodOptions& o, const std::string& source)
{
    if (o.method == "qlora" && o.backboneDtype != "int4" && o.backboneDtype != "int8")
        throw Error(source
            + ": field backbone_dtype: qlora is LoRA over a quantised backbone: expected int4 or "
            + "int8, got " + o.backboneDtype + " (use method lora for an fp32 or bf16 backbone)");
    const auto g = o.quantGroupSize;
    if (g != 32 && g != 64 && g != 128 && g != 256)
        throw Error(
            source + ": field quant_group_size: expected 32, 64, 128 or 256, got " + std::to_string(g));
}

} // namespace

const std::vector<std::string>& knownMethods()
{
    static const std::vector<std::string> methods { "full", "bitfit", "adapter", "lora", "qlora", "prompt",
        "ladder" };
    return methods;
}

MethodOptions withoutFisherInit(MethodOptions options, bool* changed)
{
    const bool fisher = options.method == "ladder" && options.init == "fisher";
    if (fisher)
        options.init = "random";
    if (changed)
        *changed = fisher;
    return options;
}

bool isKnownMethod(const std::string& method)
{
    const auto& m = knownMethods();
    return std::find(m.begin(), m.end(), method) != m.end();
}

MethodOptions MethodOptions::defaults(const std::string& method)
{
    if (!isKnownMethod(method))
        throw Error("unknown method '" + oneLine(method, 60)
            + "' (expected full, bitfit, adapter, lora, qlora, prompt or ladder)");
    MethodOptions o;
    o.method = method;
    if (method == "qlora")
        o.backboneDtype = "int4";
    return o;
}

bool MethodOptions::hasField(const std::string& method, const std::string& field)
{
    return isKnownMethod(method) && fieldsOf(method).count(field) > 0;
}

MethodOptions MethodOptions::fromJson(const json& j, const std::string& source)
{
    if (!j.is_object())
        throw Error(source + ": expected a JSON object with a field method");
    if (!j.contains("method") || !j.at("method").is_string())
        throw Error(
            source + ": field method: expected one of full, bitfit, adapter, lora, qlora, prompt, ladder");
    const auto method = j.at("method").get<std::string>();
    if (!isKnownMethod(method))
        throw Error(source + ": field method: unknown method '" + oneLine(method, 60)
            + "' (expected full, bitfit, adapter, lora, qlora, prompt or ladder)");
    MethodOptions o = defaults(method);
    const auto& allowed = fieldsOf(method);
    for (const auto& [key, _] : j.items())
        if (!allowed.count(key))
            throw Error(source + ": field " + oneLine(key, 60) + ": not an option of method " + method);

    if (j.contains("freeze"))
        o.freeze = intField(j, source, "freeze", 0);
    if (j.contains("hidden"))
        o.hidden = intField(j, source, "hidden", 1);
    if (j.contains("activation"))
        o.activation = choiceField(j, source, "activation", kActivations);
    if (j.contains("rank"))
        o.rank = intField(j, source, "rank", 1);
    if (j.contains("alpha"))
        o.alpha = numberField(j, source, "alpha", 0.0, 1e6, true);
    if (j.contains("dropout"))
        o.dropout = numberField(j, source, "dropout", 0.0, 0.99);
    if (j.contains("targets")) {
        const auto& t = j.at("targets");
        if (!t.is_array() || t.empty())
            throw Error(source
                + ": field targets: expected a non-empty array among q, k, v, o, wi, wo (T5), gate, up, down "
                  "(decoders)");
        o.targets.clear();
        for (const auto& x : t) {
            if (!x.is_string()
                || std::find(kTargets.begin(), kTargets.end(), x.get<std::string>()) == kTargets.end())
                throw Error(source + ": field targets: " + brief(x)
                    + " is not one of q, k, v, o, wi, wo, gate, up, down");
            if (std::find(o.targets.begin(), o.targets.end(), x.get<std::string>()) == o.targets.end())
                o.targets.push_back(x.get<std::string>());
        }
    }
    if (j.contains("bitfit"))
        o.bitfit = boolField(j, source, "bitfit");
    if (j.contains("prompts"))
        o.prompts = intField(j, source, "prompts", 1);
    if (j.contains("r"))
        o.r = intField(j, source, "r", 1);
    if (j.contains("keep")) {
        const auto& k = j.at("keep");
        if (!k.is_array())
            throw Error(source + ": field keep: expected an array of layer indices (empty = all layers)");
        for (const auto& x : k) {
            if (!x.is_number_integer() || x.get<std::int64_t>() < 0)
                throw Error(source + ": field keep: " + brief(x) + " is not a layer index >= 0");
            o.keep.push_back(x.get<std::int64_t>());
        }
        std::sort(o.keep.begin(), o.keep.end());
        if (std::adjacent_find(o.keep.begin(), o.keep.end()) != o.keep.end())
            throw Error(source + ": field keep: repeated layer index");
    }
    if (j.contains("gate_temperature"))
        o.gateTemperature = numberField(j, source, "gate_temperature", 0.0, 1e3, true);
    if (j.contains("init"))
        o.init = choiceField(j, source, "init", kInits);
    if (j.contains("fisher_samples"))
        o.fisherSamples = intField(j, source, "fisher_samples", 1, std::int64_t(1) << 31);
    if (j.contains("backbone_train_mode"))
        o.backboneTrainMode = boolField(j, source, "backbone_train_mode");
    if (j.contains("ablation"))
        o.ablation = choiceField(j, source, "ablation", kAblations);
    if (j.contains("merge_backbone"))
        o.mergeBackbone = boolField(j, source, "merge_backbone");
    if (j.contains("cache"))
        o.cache = choiceField(j, source, "cache", kCacheModes);
    if (j.contains("cache_dtype"))
        o.cacheDtype = choiceField(j, source, "cache_dtype", kCacheDtypes);
    if (j.contains("cache_dir")) {
        if (!j.at("cache_dir").is_string() || j.at("cache_dir").get<std::string>().empty())
            throw Error(
                source + ": field cache_dir: expected a folder path, got " + brief(j.at("cache_dir")));
        o.cacheDir = j.at("cache_dir").get<std::string>();
    }
    if (j.contains("cache_padding"))
        o.cachePadding = choiceField(j, source, "cache_padding", kCachePaddings);
    if (j.contains("backbone_dtype"))
        o.backboneDtype = choiceField(j, source, "backbone_dtype", kBackboneDtypes);
    if (j.contains("quant_group_size")) {
        o.quantGroupSize = intField(j, source, "quant_group_size", 32, 256);
        if (o.backboneDtype != "int4")
            throw Error(source + ": field quant_group_size: only meaningful with backbone_dtype int4");
    }
    if (j.contains("side_checkpoint"))
        o.sideCheckpoint = boolField(j, source, "side_checkpoint");
    if (j.contains("side_attention"))
        o.sideAttention = choiceField(j, source, "side_attention", kSideAttention);
    if (j.contains("ladder_dtype"))
        o.ladderDtype = choiceField(j, source, "ladder_dtype", kLadderDtypes);
    if (j.contains("side_heads"))
        o.sideHeads = intField(j, source, "side_heads", 0, 1024);
    if (j.contains("visual_dim"))
        o.visualDim = intField(j, source, "visual_dim", 1);
    checkMemoryOptions(o, source);
    for (const char* f : { "cache_dtype", "cache_dir", "cache_padding" })
        if (o.cache == "none" && j.contains(f))
            throw Error(source + ": field " + f + ": only meaningful with cache ram or disk");
    checkCache(o, source);
    return o;
}

json MethodOptions::toJson() const
{
    json all { { "method", method }, { "freeze", freeze }, { "hidden", hidden }, { "activation", activation },
        { "rank", rank }, { "alpha", alpha }, { "dropout", dropout }, { "targets", targets },
        { "bitfit", bitfit }, { "prompts", prompts }, { "r", r }, { "keep", keep },
        { "gate_temperature", gateTemperature }, { "init", init }, { "fisher_samples", fisherSamples },
        { "backbone_train_mode", backboneTrainMode }, { "ablation", ablation },
        { "merge_backbone", mergeBackbone }, { "cache", cache }, { "cache_dtype", cacheDtype },
        { "cache_dir", cacheDir }, { "cache_padding", cachePadding }, { "backbone_dtype", backboneDtype },
        { "quant_group_size", quantGroupSize }, { "side_checkpoint", sideCheckpoint },
        { "side_attention", sideAttention }, { "ladder_dtype", ladderDtype }, { "side_heads", sideHeads },
        { "visual_dim", visualDim } };
    json out = json::object();
    for (const auto& f : fieldsOf(method)) {
        // The cache fields only when the cache is on: specs (and their hashes) without it stay as they were.
        if (f.rfind("cache", 0) == 0 && (cache == "none" || (f == "cache_dir" && cacheDir.empty())))
            continue;
        // The memory options of issue 18 only when they are not their defaults, for the same reason
        // (qlora always names its backbone dtype).
        if (f == "backbone_dtype" && backboneDtype == "fp32")
            continue;
        if (f == "quant_group_size" && backboneDtype != "int4")
            continue;
        if ((f == "side_checkpoint" && !sideCheckpoint) || (f == "side_attention" && sideAttention == "math")
            || (f == "ladder_dtype" && ladderDtype == "fp32") || (f == "side_heads" && sideHeads == 0)
            || (f == "visual_dim" && visualDim == 0))
            continue;
        out[f] = all.at(f);
    }
    return out;
}

MethodOptions MethodOptions::withFields(const json& fields, const std::string& source) const
{
    auto j = toJson();
    for (const auto& [key, value] : fields.items())
        j[key] = value;
    if (fields.contains("backbone_dtype") && fields.at("backbone_dtype") != "int4"
        && !fields.contains("quant_group_size"))
        j.erase("quant_group_size");
    return fromJson(j, source);
}

void MethodOptions::validate(const T5Config& config) const
{
    validate(config.shape());
}

void MethodOptions::validate(const BackboneShape& shape) const
{
    const bool decoderOnly = shape.encoderBlocks == 0;
    const auto layers = shape.encoderBlocks + shape.decoderBlocks;
    const auto inner = shape.heads * shape.headSize;
    if (freeze < 0 || freeze > layers)
        throw Error("method options: field freeze: " + std::to_string(freeze)
            + " is more than the backbone's " + std::to_string(layers) + " layers");
    if (method == "ladder") {
        if (shape.hiddenSize % r || shape.feedForwardSize % r || shape.headSize % r)
            throw Error("method options: field r: " + std::to_string(r) + " must divide "
                + (decoderOnly ? "hidden_size " : "d_model ") + std::to_string(shape.hiddenSize)
                + (decoderOnly ? ", intermediate_size " : ", d_ff ") + std::to_string(shape.feedForwardSize)
                + (decoderOnly ? " and head_dim " : " and d_kv ") + std::to_string(shape.headSize));
        if (decoderOnly && (shape.headSize / r) % 2)
            throw Error("method options: field r: head_dim " + std::to_string(shape.headSize) + " / r "
                + std::to_string(r) + " must be even (the side decoder's rotary embeddings rotate pairs)");
        const auto stackLayers
            = decoderOnly ? shape.decoderBlocks : std::min(shape.encoderBlocks, shape.decoderBlocks);
        for (auto k : keep)
            if (k >= stackLayers)
                throw Error("method options: field keep: layer " + std::to_string(k)
                    + " does not exist (the backbone has "
                    + (decoderOnly ? std::to_string(shape.decoderBlocks) + " layers"
                                   : std::to_string(shape.encoderBlocks) + " encoder and "
                                + std::to_string(shape.decoderBlocks) + " decoder layers")
                    + ", indices from 0)");
    }
    if (visualDim > 0) {
        if (decoderOnly)
            throw Error("method options: field visual_dim: vision-and-language runs need an encoder-decoder "
                        "backbone (CLIP-T5, docs/VL.md); this backbone is decoder-only");
        if (method == "ladder" && ablation != "none")
            throw Error("method options: field ablation: " + ablation
                + " is for text runs; a vision-and-language run uses the paper's side network (none)");
        if (method == "ladder" && cache != "none")
            throw Error("method options: field cache: the LST activation cache is for text runs; a "
                        "vision-and-language run computes the backbone every step");
    }
    if (method == "ladder" && ablation == "adapter-blocks" && init != "random")
        throw Error("method options: field init: " + init
            + " prunes the backbone into transformer side blocks, which ablation adapter-blocks does not "
              "have; set init random");
    if (method == "ladder")
        checkCache(*this, "method options");
    if (method == "adapter" && hidden > shape.hiddenSize * 4)
        throw Error("method options: field hidden: " + std::to_string(hidden) + " is larger than 4 x "
            + (decoderOnly ? "hidden_size" : "d_model"));
    checkMemoryOptions(*this, "method options");
    if (backboneDtype == "int4") {
        // ATen's int4 packing groups along the input dimension of every frozen projection and the embedding.
        for (auto in : { shape.hiddenSize, shape.feedForwardSize, inner })
            if (in % quantGroupSize)
                throw Error("method options: field quant_group_size: " + std::to_string(quantGroupSize)
                    + " must divide every input width of the backbone (d_model "
                    + std::to_string(shape.hiddenSize) + ", d_ff " + std::to_string(shape.feedForwardSize)
                    + ", heads x d_kv " + std::to_string(inner) + ")");
    }
    if (method == "ladder" && sideHeads > 0) {
        const auto sideInner = inner / r;
        if (sideInner % sideHeads)
            throw Error("method options: field side_heads: " + std::to_string(sideHeads)
                + " must divide the side network's inner width heads x d_kv / r = "
                + std::to_string(sideInner));
    }
    if (method == "ladder" && sideAttention == "sdpa" && ablation == "adapter-blocks")
        throw Error("method options: field side_attention: ablation adapter-blocks has no side attention");
    if (isLora() && rank > std::min(shape.hiddenSize, inner))
        throw Error("method options: field rank: " + std::to_string(rank) + " exceeds the projection size");
    if (isLora()) {
        // Each architecture names its own projections (HF PEFT's target_modules, shortened).
        const std::vector<std::string> known = decoderOnly
            ? std::vector<std::string> { "q", "k", "v", "o", "gate", "up", "down" }
            : std::vector<std::string> { "q", "k", "v", "o", "wi", "wo" };
        for (const auto& t : targets)
            if (std::find(known.begin(), known.end(), t) == known.end()) {
                std::string list;
                for (const auto& k : known)
                    list += (list.empty() ? "" : ", ") + k;
                throw Error("method options: field targets: " + t + " is not a projection of a "
                    + shape.architecture + " backbone (" + list + ")");
            }
    }
}

std::vector<std::int64_t> MethodOptions::keptLayers(std::int64_t numLayers) const
{
    if (!keep.empty())
        return keep;
    std::vector<std::int64_t> all(static_cast<std::size_t>(numLayers));
    for (std::int64_t i = 0; i < numLayers; ++i)
        all[static_cast<std::size_t>(i)] = i;
    return all;
}

} // namespace ladder
