#include "peft/LadderReferenceNames.h"

#include <algorithm>
#include <map>
#include <regex>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "util/Error.h"

namespace ladder {
namespace {

bool startsWith(const std::string& s, const std::string& prefix)
{
    return s.compare(0, prefix.size(), prefix) == 0;
}

[[noreturn]] void noCounterpart(const std::string& ladderName)
{
    throw Error("ladder: side parameter " + ladderName
        + " has no counterpart in the reference implementation (modeling_side_t5.py has no "
          "cross-attention or adapter-block side layers)");
}

// One stack's names: "downsample.embed.weight" -> "side_first_downsample.weight" and so on.
std::string referenceStackName(const std::string& rest, const std::string& ladderName)
{
    static const std::regex downsample(R"(downsample\.(\d+)\.(weight|bias))");
    static const std::regex gate(R"(gate\.(\d+))");
    static const std::regex block(R"(block\.(\d+)\.(layer\.\d+\..+))");
    std::smatch m;
    if (rest == "downsample.embed.weight" || rest == "downsample.embed.bias")
        return "side_first_downsample." + rest.substr(std::string("downsample.embed.").size());
    if (std::regex_match(rest, m, downsample))
        return "side_downsamples." + m[1].str() + "." + m[2].str();
    if (std::regex_match(rest, m, gate))
        return "side_gate_params." + m[1].str();
    if (std::regex_match(rest, m, block))
        return "side_block." + m[1].str() + "." + m[2].str();
    if (rest == "final_layer_norm.weight")
        return "final_side_layer_norm.weight";
    noCounterpart(ladderName);
}

std::string shapeString(const at::Tensor& t)
{
    return c10::str(t.sizes());
}

} // namespace

std::string referenceSideName(const std::string& ladderName)
{
    for (const std::string stack : { "encoder", "decoder" }) {
        const auto prefix = "side_" + stack + ".";
        if (startsWith(ladderName, prefix))
            return stack + "." + referenceStackName(ladderName.substr(prefix.size()), ladderName);
    }
    if (ladderName == "side_final_upsample.weight" || ladderName == "side_final_upsample.bias")
        return ladderName;
    if (ladderName == "side_merge_gate")
        return "side_gate_params_merge_last";
    noCounterpart(ladderName);
}

bool isUnusedReferenceGate(const std::string& referenceName, const LadderSideOptions& options)
{
    static const std::regex gate(R"((encoder|decoder)\.side_gate_params\.(\d+))");
    std::smatch m;
    if (!std::regex_match(referenceName, m, gate))
        return false;
    const bool decoder = m[1].str() == "decoder";
    const auto depth = decoder ? options.backbone.numDecoderLayers : options.backbone.numLayers;
    const auto& keep = decoder ? options.decoderKeep : options.encoderKeep;
    std::int64_t layer = 0;
    try {
        layer = std::stoll(m[2].str());
    } catch (const std::exception&) {
        return false;
    }
    if (layer >= depth)
        return false;
    return std::find(keep.begin(), keep.end(), layer) == keep.end();
}

void loadReferenceSideWeights(LadderSideNetwork& side, const TensorMap& tensors, const std::string& source)
{
    // Reference name -> LadderBench parameter.
    std::map<std::string, std::pair<std::string, at::Tensor>> wanted;
    for (const auto& item : side->named_parameters(true))
        wanted.emplace(referenceSideName(item.key()), std::make_pair(item.key(), item.value()));

    for (const auto& [name, tensor] : tensors) {
        if (wanted.count(name))
            continue;
        if (isUnusedReferenceGate(name, side->options())) {
            if (tensor.numel() != 1)
                throw Error(source + ": tensor " + name + " (the gate of a dropped layer) has shape "
                    + shapeString(tensor) + ", expected [1]");
            continue;
        }
        throw Error(source + ": unexpected tensor " + name
            + ": not a parameter of this side network (reference names such as "
              "encoder.side_block.1.layer.0.SelfAttention.q.weight are expected; check r and keep)");
    }
    for (const auto& [referenceName, target] : wanted) {
        const auto& [ladderName, parameter] = target;
        const auto it = tensors.find(referenceName);
        if (it == tensors.end())
            throw Error(
                source + ": missing tensor " + referenceName + " (side parameter " + ladderName + ")");
        const auto& value = it->second;
        if (value.sizes() != parameter.sizes())
            throw Error(source + ": tensor " + referenceName + " (" + ladderName + ") has shape "
                + shapeString(value) + ", expected " + shapeString(parameter));
        if (!at::isFloatingType(value.scalar_type()))
            throw Error(source + ": tensor " + referenceName + " (" + ladderName + ") has dtype "
                + std::string(c10::toString(value.scalar_type())) + ", expected a floating-point type");
    }
    at::NoGradGuard noGrad;
    for (auto& [referenceName, target] : wanted) {
        auto& parameter = target.second;
        parameter.copy_(tensors.at(referenceName).to(parameter.device(), parameter.scalar_type()));
    }
}

void loadReferenceSideWeights(LadderSideNetwork& side, const std::string& path)
{
    loadReferenceSideWeights(side, readSafetensors(path), path);
}

} // namespace ladder
