#include "MethodFlags.h"

#include <sstream>

#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "util/Error.h"

namespace ladder::cli {

std::vector<std::string> splitCommas(const std::string& s)
{
    std::vector<std::string> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty())
            out.push_back(item);
    return out;
}

void MethodFlags::addTo(CLI::App* cmd)
{
    cmd->add_option("--freeze", freeze, "baselines: freeze the first N layers (encoder first)");
    cmd->add_option("--hidden", hidden, "adapter: bottleneck size (48)");
    cmd->add_option("--activation", activation, "adapter: relu, gelu, silu or tanh");
    cmd->add_option("--rank", rank, "lora: rank (32)");
    cmd->add_option("--alpha", alpha, "lora: alpha, scale = alpha / rank (32)");
    cmd->add_option("--dropout", dropout, "lora: dropout on the LoRA path (0)");
    cmd->add_option("--targets", targets,
        "lora: comma list among q,k,v,o,wi,wo (T5) or q,k,v,o,gate,up,down (decoders) (q,v)");
    cmd->add_option("--bitfit", bitfit, "lora: train BitFit biases alongside (true)");
    cmd->add_option("--prompts", prompts, "prompt: number of prompt vectors (100)");
    cmd->add_option("--r", r, "ladder: reduction factor (8)");
    cmd->add_option("--keep", keep, "ladder: side layers kept, 0-based comma list (all)");
    cmd->add_option("--gate-temperature", gateTemperature, "ladder: gate temperature T (0.1)");
    cmd->add_option("--init", init, "ladder: random, magnitude or fisher");
    cmd->add_option("--fisher-samples", fisherSamples, "ladder: samples for Fisher pruning (1024)");
    cmd->add_option(
        "--backbone-train-mode", backboneTrainMode, "ladder: backbone dropout as the reference (false)");
    cmd->add_option(
        "--ablation", ablation, "ladder: none, side-tuning, no-ladders, adapter-blocks, cross-attention");
    cmd->add_option(
        "--merge-backbone", mergeBackbone, "ladder: learned merge with the backbone output (false)");
    cmd->add_option("--backbone-dtype", backboneDtype,
        "all but full: frozen backbone weights in fp32, bf16, int8 or int4 (fp32; qlora: int4)");
    cmd->add_option("--quant-group-size", quantGroupSize, "int4: values per quantisation group, 32-256 (64)");
    cmd->add_option("--side-checkpoint", sideCheckpoint, "ladder: recompute side layers in backward (false)");
    cmd->add_option("--side-attention", sideAttention, "ladder: side attention math or sdpa (math)");
    cmd->add_option("--ladder-dtype", ladderDtype, "ladder: ladder inputs held in fp32 or bf16 (fp32)");
    cmd->add_option("--side-heads", sideHeads, "ladder: side attention heads, 0 = the backbone's (0)");
}

nlohmann::json MethodFlags::given() const
{
    nlohmann::json j = nlohmann::json::object();
    auto put = [&](const char* key, const auto& v) {
        if (v)
            j[key] = *v;
    };
    put("freeze", freeze);
    put("hidden", hidden);
    put("activation", activation);
    put("rank", rank);
    put("alpha", alpha);
    put("dropout", dropout);
    put("bitfit", bitfit);
    put("prompts", prompts);
    put("r", r);
    put("gate_temperature", gateTemperature);
    put("init", init);
    put("fisher_samples", fisherSamples);
    put("backbone_train_mode", backboneTrainMode);
    put("ablation", ablation);
    put("merge_backbone", mergeBackbone);
    put("backbone_dtype", backboneDtype);
    put("quant_group_size", quantGroupSize);
    put("side_checkpoint", sideCheckpoint);
    put("side_attention", sideAttention);
    put("ladder_dtype", ladderDtype);
    put("side_heads", sideHeads);
    if (targets)
        j["targets"] = splitCommas(*targets);
    if (keep) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& item : splitCommas(*keep)) {
            try {
                std::size_t used = 0;
                const auto v = std::stoll(item, &used);
                if (used != item.size())
                    throw std::invalid_argument(item);
                list.push_back(v);
            } catch (const std::exception&) {
                throw Error(
                    "--keep: '" + item + "' is not a layer index (expected a comma list such as 1,2,3)");
            }
        }
        j["keep"] = list;
    }
    return j;
}

MethodOptions MethodFlags::optionsFor(const std::string& method, bool strict) const
{
    nlohmann::json fields = nlohmann::json::object();
    const auto flags = given(); // keep it alive: items() only refers to it
    for (const auto& [key, value] : flags.items()) {
        if (MethodOptions::hasField(method, key))
            fields[key] = value;
        else if (strict)
            throw Error("--" +
                [&] {
                    std::string flag = key;
                    std::replace(flag.begin(), flag.end(), '_', '-');
                    return flag;
                }()
                + " is not an option of method " + method);
    }
    return MethodOptions::defaults(method).withFields(fields, "method options");
}

MethodOptions methodEntryOptions(const std::string& entry, const MethodFlags& base)
{
    std::vector<std::string> parts;
    {
        std::stringstream in(entry);
        std::string part;
        while (std::getline(in, part, ':'))
            parts.push_back(part);
    }
    if (parts.empty() || parts.front().empty())
        throw Error("--methods: empty entry in '" + entry + "'");
    const auto& method = parts.front();
    nlohmann::json j = nlohmann::json::object();
    for (std::size_t i = 1; i < parts.size(); ++i) {
        const auto eq = parts[i].find('=');
        const auto key = parts[i].substr(0, eq);
        if (!MethodOptions::hasField(method, key))
            throw Error("--methods: entry '" + entry + "': " + key + " is not an option of method " + method);
        if (eq == std::string::npos) {
            j[key] = true;
            continue;
        }
        const auto text = parts[i].substr(eq + 1);
        auto value = nlohmann::json::parse(text, nullptr, false);
        j[key] = value.is_discarded() ? nlohmann::json(text) : value;
    }
    return base.optionsFor(method, false).withFields(j, "--methods entry '" + entry + "'");
}

std::vector<std::string> methodEntries(const std::string& list)
{
    // Commas inside brackets belong to a value: "ladder:keep=[1,3,5]".
    std::vector<std::string> items;
    std::string current;
    int depth = 0;
    for (char ch : list + ",") {
        if (ch == ',' && depth == 0) {
            if (!current.empty())
                items.push_back(current);
            current.clear();
            continue;
        }
        depth += ch == '[' ? 1 : ch == ']' ? -1 : 0;
        current += ch;
    }
    std::vector<std::string> out;
    for (const auto& item : items) {
        if (item != "lst-memory") {
            out.push_back(item);
            continue;
        }
        const std::string all = "ladder:side_checkpoint:side_attention=sdpa:ladder_dtype=bf16";
        for (const auto& e : { std::string("ladder:side_checkpoint"),
                 std::string("ladder:side_checkpoint:side_attention=sdpa"), all,
                 all + ":backbone_dtype=int4" })
            out.push_back(e);
    }
    return out;
}

} // namespace ladder::cli
