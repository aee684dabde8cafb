#include "MethodFlags.h"

#include <sstream>

#include <CLI/CLI.hpp>

#include "util/Error.h"

namespace ladder::cli {
namespace {

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

} // namespace

void MethodFlags::addTo(CLI::App* cmd)
{
    cmd->add_option("--freeze", freeze, "baselines: freeze the first N layers (encoder first)");
    cmd->add_option("--hidden", hidden, "adapter: bottleneck size (48)");
    cmd->add_option("--activation", activation, "adapter: relu, gelu, silu or tanh");
    cmd->add_option("--rank", rank, "lora: rank (32)");
    cmd->add_option("--alpha", alpha, "lora: alpha, scale = alpha / rank (32)");
    cmd->add_option("--dropout", dropout, "lora: dropout on the LoRA path (0)");
    cmd->add_option("--targets", targets, "lora: comma list among q,k,v,o,wi,wo (q,v)");
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
    auto j = MethodOptions::defaults(method).toJson();
    const auto flags = given(); // keep it alive: items() only refers to it
    for (const auto& [key, value] : flags.items()) {
        if (MethodOptions::hasField(method, key))
            j[key] = value;
        else if (strict)
            throw Error("--" +
                [&] {
                    std::string flag = key;
                    std::replace(flag.begin(), flag.end(), '_', '-');
                    return flag;
                }()
                + " is not an option of method " + method);
    }
    return MethodOptions::fromJson(j, "method options");
}

} // namespace ladder::cli
