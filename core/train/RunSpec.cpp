#include "train/RunSpec.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <set>
#include <sstream>

#include "data/VlTask.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace {

using nlohmann::json;

void rejectUnknown(const json& j, const std::string& where, const std::set<std::string>& allowed)
{
    for (const auto& [key, _] : j.items())
        if (!allowed.count(key)) {
            std::string list;
            for (const auto& a : allowed)
                list += (list.empty() ? "" : ", ") + a;
            throw Error(where + "." + oneLine(key, 60) + ": unknown field (expected one of " + list + ")");
        }
}

const json& objectField(const json& j, const std::string& where)
{
    if (!j.is_object())
        throw Error(where + ": expected a JSON object");
    return j;
}

// Every count has a ceiling far above any real run, so that a mistyped or hostile spec fails here, naming
// the field, instead of allocating (batch_size 2^40) or looping for ever.
constexpr std::int64_t kMaxCount = std::int64_t(1) << 31;
constexpr std::int64_t kMaxBatch = 65536; // examples in one batch, and batches in one optimizer step
constexpr std::int64_t kMaxLength = 65536; // tokens in one source or target
constexpr std::int64_t kMaxSeed = std::numeric_limits<std::int64_t>::max();

std::int64_t intField(const json& j, const char* key, const std::string& where, std::int64_t minimum,
    std::int64_t fallback, std::int64_t maximum = kMaxCount)
{
    if (!j.contains(key))
        return fallback;
    const auto& v = j.at(key);
    if (!v.is_number_integer() || v.get<std::int64_t>() < minimum)
        throw Error(
            where + "." + key + ": expected an integer >= " + std::to_string(minimum) + ", got " + brief(v));
    if (v.get<std::int64_t>() > maximum)
        throw Error(
            where + "." + key + ": expected an integer <= " + std::to_string(maximum) + ", got " + brief(v));
    return v.get<std::int64_t>();
}

double numberField(
    const json& j, const char* key, const std::string& where, double lo, double hi, double fallback)
{
    if (!j.contains(key))
        return fallback;
    const auto& v = j.at(key);
    if (!v.is_number() || v.get<double>() < lo || v.get<double>() > hi)
        throw Error(where + "." + key + ": expected a number in [" + std::to_string(lo) + ", "
            + std::to_string(hi) + "], got " + brief(v));
    return v.get<double>();
}

std::string stringField(const json& j, const char* key, const std::string& where, const std::string& fallback,
    const std::vector<std::string>& choices = {})
{
    if (!j.contains(key))
        return fallback;
    const auto& v = j.at(key);
    if (!v.is_string())
        throw Error(where + "." + key + ": expected a string, got " + brief(v));
    const auto s = v.get<std::string>();
    if (!choices.empty() && std::find(choices.begin(), choices.end(), s) == choices.end()) {
        std::string list;
        for (const auto& c : choices)
            list += (list.empty() ? "" : ", ") + c;
        throw Error(where + "." + key + ": expected one of " + list + ", got \"" + oneLine(s, 60) + "\"");
    }
    return s;
}

bool boolField(const json& j, const char* key, const std::string& where, bool fallback)
{
    if (!j.contains(key))
        return fallback;
    if (!j.at(key).is_boolean())
        throw Error(where + "." + key + ": expected true or false, got " + brief(j.at(key)));
    return j.at(key).get<bool>();
}

} // namespace

double TrainingOptions::learningRateFor(const std::string& method) const
{
    if (learningRate > 0.0)
        return learningRate;
    if (method == "prompt")
        return 0.3;
    if (method == "ladder")
        return 3e-3;
    return 3e-4;
}

RunSpec RunSpec::fromJson(const json& j, const std::string& source)
{
    const std::string root = source + ": field";
    objectField(j, source);
    rejectUnknown(
        j, root + " ", { "name", "backbone", "task", "method", "training", "device", "seed", "store" });
    RunSpec s;
    s.raw = j;
    s.name = stringField(j, "name", root + " ", "");
    s.backbone = stringField(j, "backbone", root + " ", "demo");
    if (s.backbone.empty())
        throw Error(root + " backbone: expected \"demo\" or a HuggingFace T5 folder");
    s.device = stringField(j, "device", root + " ", "cpu");
    if (s.device != "cpu" && s.device.rfind("cuda", 0) != 0)
        throw Error(root + " device: expected cpu, cuda or cuda:N, got \"" + oneLine(s.device, 60) + "\"");
    s.seed = static_cast<std::uint64_t>(intField(j, "seed", root + " ", 0, 0, kMaxSeed));
    s.store = stringField(j, "store", root + " ", "");

    if (!j.contains("task"))
        throw Error(
            root + " task: missing (expected {\"type\": \"glue\" | \"demo\" | \"generic\" | \"vl\", ...})");
    const auto& t = objectField(j.at("task"), root + " task");
    const std::string tw = root + " task";
    rejectUnknown(t, tw,
        { "type", "path", "name", "data_seed", "text_columns", "label_column", "validation_path", "test_path",
            "format", "kind", "labels", "validation_fraction", "test_fraction", "target_decimals",
            "label_targets", "prompt_template", "features", "visual_tokens", "tasks" });
    s.task.type = stringField(t, "type", tw, "glue", { "glue", "demo", "generic", "vl" });
    s.task.path = stringField(t, "path", tw, "");
    s.task.name = stringField(t, "name", tw, s.task.type == "demo" ? "supersense" : "auto");
    s.task.dataSeed = static_cast<std::uint64_t>(intField(t, "data_seed", tw, 0, 42, kMaxSeed));
    stringField(
        t, "label_targets", tw, "index", { "index", "text" }); // validated here, read by the task loader
    // A decoder-only backbone's prompt (data/PromptTemplate.h); checked against the task's fields when
    // loaded.
    if (t.contains("prompt_template")
        && (!t.at("prompt_template").is_string() || t.at("prompt_template").get<std::string>().empty()))
        throw Error(tw + ".prompt_template: expected a non-empty string with {field} placeholders");
    if ((s.task.type == "glue" || s.task.type == "generic") && s.task.path.empty())
        throw Error(tw + ".path: missing (the " + s.task.type + " data folder or file)");
    // A vision-and-language task (data/VlTask.h): a folder, or the name "scenes" for the built-in scene demo;
    // the feature file, the visual tokens per image and the task types to keep. Only a "vl" task takes them.
    if (s.task.type == "vl") {
        if (s.task.path.empty() && s.task.name != "scenes")
            throw Error(
                tw + ".path: missing (the VL task folder; or name \"scenes\" for the built-in scene demo)");
        if (t.contains("features")
            && (!t.at("features").is_string() || t.at("features").get<std::string>().empty()))
            throw Error(tw + ".features: expected the visual feature file (a non-empty string), got "
                + brief(t.at("features")));
        intField(t, "visual_tokens", tw, 0, 0, 4096);
        if (t.contains("tasks")) {
            const auto& list = t.at("tasks");
            if (!list.is_array() || list.empty())
                throw Error(
                    tw + ".tasks: expected a non-empty list of vqa, gqa, nlvr2, caption, got " + brief(list));
            std::set<std::string> seen;
            for (const auto& item : list) {
                if (!item.is_string() || !isVlTaskType(item.get<std::string>()))
                    throw Error(tw + ".tasks: expected a list of vqa, gqa, nlvr2, caption, got " + brief(item)
                        + " in it");
                if (!seen.insert(item.get<std::string>()).second)
                    throw Error(tw + ".tasks: \"" + item.get<std::string>() + "\" is listed twice");
            }
        }
    } else {
        for (const char* key : { "features", "visual_tokens", "tasks" }) {
            if (t.contains(key))
                throw Error(
                    tw + "." + key + ": only a \"vl\" task takes it (task.type is \"" + s.task.type + "\")");
        }
    }
    s.task.generic = t;

    if (!j.contains("method"))
        throw Error(root + " method: missing (expected {\"method\": \"ladder\", ...})");
    s.method = MethodOptions::fromJson(j.at("method"), root + " method");

    if (j.contains("training")) {
        const auto& tr = objectField(j.at("training"), root + " training");
        const std::string w = root + " training";
        rejectUnknown(tr, w,
            { "learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation", "warmup_steps",
                "weight_decay", "max_grad_norm", "eval_every_steps", "max_source_length", "max_target_length",
                "bucket_by_length", "threads", "dtype", "num_beams", "max_eval_examples", "log_every_steps",
                "save_state_every_steps", "processes" });
        auto& o = s.training;
        o.learningRate = numberField(tr, "learning_rate", w, 0.0, 100.0, 0.0);
        o.epochs = intField(tr, "epochs", w, 1, o.epochs);
        o.maxSteps = intField(tr, "max_steps", w, 0, 0);
        o.batchSize = intField(tr, "batch_size", w, 1, o.batchSize, kMaxBatch);
        o.gradientAccumulation = intField(tr, "gradient_accumulation", w, 1, 1, kMaxBatch);
        o.warmupSteps = intField(tr, "warmup_steps", w, 0, o.warmupSteps);
        o.weightDecay = numberField(tr, "weight_decay", w, 0.0, 10.0, 0.0);
        o.maxGradNorm = numberField(tr, "max_grad_norm", w, 0.0, 1e6, 1.0);
        o.evalEverySteps = intField(tr, "eval_every_steps", w, 0, 0);
        o.maxSourceLength = intField(tr, "max_source_length", w, 2, o.maxSourceLength, kMaxLength);
        o.maxTargetLength = intField(tr, "max_target_length", w, 0, 0, kMaxLength);
        o.bucketByLength = boolField(tr, "bucket_by_length", w, false);
        o.threads = intField(tr, "threads", w, 0, 0, 4096);
        o.dtype = stringField(tr, "dtype", w, "fp32", { "fp32", "bf16" });
        o.numBeams = intField(tr, "num_beams", w, 1, 1, 256);
        o.maxEvalExamples = intField(tr, "max_eval_examples", w, 0, 0);
        o.logEverySteps = intField(tr, "log_every_steps", w, 1, 1);
        o.saveStateEverySteps = intField(tr, "save_state_every_steps", w, 0, o.saveStateEverySteps);
        o.processes = intField(tr, "processes", w, 1, 1, 1024);
    }
    return s;
}

RunSpec RunSpec::fromFile(const std::string& path)
{
    if (path == "-") {
        // Standard input is read once, at the first call; later calls parse the same text.
        static const std::string text = [] {
            std::ostringstream all;
            all << std::cin.rdbuf();
            return all.str();
        }();
        if (text.empty())
            throw Error("standard input: expected a run spec JSON object, got nothing");
        return fromJson(parseJson(text, "standard input"), "standard input");
    }
    return fromJson(readJsonFile(path, "a run spec JSON file"), path);
}

json RunSpec::toJson() const
{
    json taskJson = task.generic.is_object() ? task.generic : json::object();
    taskJson["type"] = task.type;
    if (!task.path.empty())
        taskJson["path"] = task.path;
    taskJson["name"] = task.name;
    taskJson["data_seed"] = task.dataSeed;
    const auto& o = training;
    json j { { "backbone", backbone }, { "task", taskJson }, { "method", method.toJson() },
        { "training",
            { { "learning_rate", o.learningRateFor(method.method) }, { "epochs", o.epochs },
                { "max_steps", o.maxSteps }, { "batch_size", o.batchSize },
                { "gradient_accumulation", o.gradientAccumulation }, { "warmup_steps", o.warmupSteps },
                { "weight_decay", o.weightDecay }, { "max_grad_norm", o.maxGradNorm },
                { "eval_every_steps", o.evalEverySteps }, { "max_source_length", o.maxSourceLength },
                { "max_target_length", o.maxTargetLength }, { "bucket_by_length", o.bucketByLength },
                { "threads", o.threads }, { "dtype", o.dtype }, { "num_beams", o.numBeams },
                { "max_eval_examples", o.maxEvalExamples }, { "log_every_steps", o.logEverySteps },
                { "save_state_every_steps", o.saveStateEverySteps } } },
        { "device", device }, { "seed", seed } };
    if (o.processes != 1)
        j["training"]["processes"] = o.processes;
    if (!name.empty())
        j["name"] = name;
    if (!store.empty())
        j["store"] = store;
    return j;
}

std::string RunSpec::displayName() const
{
    return name.empty() ? defaultName() : name;
}

namespace {

// 1e-3, 5e-4, 2.5e-5, 0.3, 0.05: a learning rate as people write it.
std::string compactNumber(double v)
{
    char buf[32];
    if (v > 0 && v < 0.01) {
        int exponent = static_cast<int>(std::floor(std::log10(v)));
        double mantissa = v / std::pow(10.0, exponent);
        if (mantissa >= 9.995) { // 9.999e-4 prints as 1e-3
            mantissa /= 10;
            ++exponent;
        }
        std::snprintf(buf, sizeof buf, "%.3ge%d", mantissa, exponent);
    } else {
        std::snprintf(buf, sizeof buf, "%.3g", v);
    }
    return buf;
}

// LoRA's targets: "qkvo" for the attention matrices in q, k, v, o order, "ff" for wi and wo together,
// joined by "+" ("qkvo+ff", "qv", "wi").
std::string loraTargets(const std::vector<std::string>& targets)
{
    const std::set<std::string> t(targets.begin(), targets.end());
    std::string attention;
    for (const char* m : { "q", "k", "v", "o" })
        if (t.count(m))
            attention += m;
    std::string ff;
    if (t.count("wi") && t.count("wo"))
        ff = "ff";
    else if (t.count("wi"))
        ff = "wi";
    else if (t.count("wo"))
        ff = "wo";
    if (attention.empty())
        return ff;
    return ff.empty() ? attention : attention + "+" + ff;
}

} // namespace

std::string RunSpec::defaultName(std::int64_t numLayers) const
{
    const auto& m = method;
    const auto defaults = MethodOptions::defaults(m.method);
    std::vector<std::string> parts;
    if (m.method == "full") {
        parts.push_back("full");
    } else if (m.method == "bitfit") {
        parts.push_back("BitFit");
    } else if (m.method == "adapter") {
        parts.push_back("Adapters h" + std::to_string(m.hidden));
        if (m.activation != defaults.activation)
            parts.push_back(m.activation);
    } else if (m.isLora()) {
        parts.push_back(std::string(m.method == "qlora" ? "QLoRA" : "LoRA") + " r" + std::to_string(m.rank));
        parts.push_back(loraTargets(m.targets));
        if (m.alpha != static_cast<double>(m.rank))
            parts.push_back("alpha " + compactNumber(m.alpha));
        if (!m.bitfit)
            parts.push_back("no biases");
    } else if (m.method == "prompt") {
        parts.push_back("prompt " + std::to_string(m.prompts));
    } else if (m.method == "ladder") {
        parts.push_back("LST r" + std::to_string(m.r));
        if (!m.keep.empty())
            parts.push_back("keep " + std::to_string(m.keep.size())
                + (numLayers > 0 ? "/" + std::to_string(numLayers) : std::string()));
        if (m.init != defaults.init)
            parts.push_back(m.init + " init");
        if (m.ablation != "none")
            parts.push_back(m.ablation);
        if (m.sideCheckpoint)
            parts.push_back("ckpt");
        if (m.sideAttention != defaults.sideAttention)
            parts.push_back(m.sideAttention);
        if (m.ladderDtype != defaults.ladderDtype)
            parts.push_back(m.ladderDtype + " ladders");
        if (m.sideHeads > 0)
            parts.push_back(std::to_string(m.sideHeads) + " heads");
    } else {
        parts.push_back(m.method);
    }
    if (m.method != "ladder" && m.freeze > 0)
        parts.push_back("freeze " + std::to_string(m.freeze));
    if (m.quantizedBackbone() && m.method != "qlora")
        parts.push_back(m.backboneDtype);
    else if (m.method == "qlora" && m.backboneDtype != "int4")
        parts.push_back(m.backboneDtype);
    if (training.learningRate > 0.0) {
        TrainingOptions paperDefault;
        if (training.learningRate != paperDefault.learningRateFor(m.method))
            parts.push_back("lr " + compactNumber(training.learningRate));
    }
    if (training.dtype != "fp32")
        parts.push_back(training.dtype);
    std::string out;
    for (const auto& p : parts)
        out += (out.empty() ? "" : " ") + p;
    return out + " · seed " + std::to_string(seed);
}

} // namespace ladder
