#include "SweepGrid.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "peft/MethodOptions.h"
#include "util/Text.h"

namespace ladder::widgets {
namespace {
// How much of a seed that does not parse a message quotes (a pasted megabyte was echoed whole).
constexpr std::size_t kMaxQuoted = 40;

using nlohmann::json;

// The method object of a swept spec: the base's options when the method stays, else the defaults.
std::string methodOf(const json& base)
{
    return base.contains("method") && base.at("method").is_object()
        ? base.at("method").value("method", std::string("ladder"))
        : std::string("ladder");
}

json methodObject(const json& base, const std::string& method, bool* changed)
{
    const std::string baseMethod = methodOf(base);
    *changed = baseMethod != method;
    if (!*changed)
        return base.at("method");
    return MethodOptions::defaults(method).toJson();
}

json specWith(const json& base, json method, bool methodChanged, std::uint64_t seed)
{
    json spec = base;
    spec.erase("name");
    spec["method"] = std::move(method);
    spec["seed"] = seed;
    if (methodChanged && spec.contains("training") && spec.at("training").is_object())
        spec["training"]["learning_rate"] = 0.0;
    return spec;
}

} // namespace

std::vector<std::int64_t> SweepGrid::paperValues(SweepPreset preset)
{
    switch (preset) {
    case SweepPreset::LstReduction:
        return { 32, 16, 8, 4 };
    case SweepPreset::AdapterHidden:
        return { 6, 12, 24, 48 };
    case SweepPreset::LoraRank:
        return { 4, 8, 16, 32 };
    case SweepPreset::DroppedLayers:
        return { 0, 6, 12, 18 };
    }
    return {};
}

std::vector<std::int64_t> SweepGrid::droppedLayerCounts(
    std::int64_t encoderLayers, std::int64_t decoderLayers)
{
    const std::int64_t total = encoderLayers + decoderLayers;
    std::vector<std::int64_t> counts;
    for (std::int64_t n : paperValues(SweepPreset::DroppedLayers)) {
        if (total < kPaperTotalLayers)
            n = std::llround(static_cast<double>(n) * static_cast<double>(total) / kPaperTotalLayers);
        if (counts.empty() || counts.back() != n)
            counts.push_back(n);
    }
    return counts;
}

std::vector<std::int64_t> SweepGrid::interleavedKeep(std::int64_t layers, std::int64_t drop)
{
    drop = std::clamp<std::int64_t>(drop, 0, std::max<std::int64_t>(0, layers - 1));
    std::vector<bool> dropped(static_cast<std::size_t>(std::max<std::int64_t>(layers, 0)), false);
    for (std::int64_t k = 0; k < drop; ++k)
        dropped[static_cast<std::size_t>(k * layers / drop)] = true;
    std::vector<std::int64_t> keep;
    for (std::int64_t i = 0; i < layers; ++i)
        if (!dropped[static_cast<std::size_t>(i)])
            keep.push_back(i);
    return keep;
}

std::vector<nlohmann::json> SweepGrid::expand(const nlohmann::json& base, SweepPreset preset,
    const std::vector<std::uint64_t>& seeds, std::int64_t encoderLayers, std::int64_t decoderLayers,
    bool withBaselines, std::string* note)
{
    if (!base.is_object())
        throw std::invalid_argument("base run spec: expected a JSON object");
    std::vector<json> specs;
    std::ostringstream notes;
    bool resetLearningRate = false;
    auto add = [&](json method, bool changed) {
        resetLearningRate = resetLearningRate || changed;
        for (auto seed : seeds)
            specs.push_back(specWith(base, method, changed, seed));
    };

    const char* fixedMethod = nullptr;
    const char* field = nullptr;
    switch (preset) {
    case SweepPreset::LstReduction:
        fixedMethod = "ladder";
        field = "r";
        break;
    case SweepPreset::AdapterHidden:
        fixedMethod = "adapter";
        field = "hidden";
        break;
    case SweepPreset::LoraRank:
        // QLoRA is LoRA over a quantised backbone: a QLoRA base sweeps its own rank, its backbone kept.
        fixedMethod = methodOf(base) == "qlora" ? "qlora" : "lora";
        field = "rank";
        break;
    case SweepPreset::DroppedLayers:
        break;
    }
    if (fixedMethod) {
        for (std::int64_t value : paperValues(preset)) {
            bool changed = false;
            json method = methodObject(base, fixedMethod, &changed);
            method[field] = value;
            add(method, changed);
        }
    } else {
        const std::int64_t sideLayers = std::min(encoderLayers, decoderLayers);
        const std::int64_t total = encoderLayers + decoderLayers;
        const auto counts = droppedLayerCounts(encoderLayers, decoderLayers);
        if (total < kPaperTotalLayers) {
            notes << "The backbone has " << encoderLayers << " + " << decoderLayers
                  << " layers, fewer than T5-base's 24: the paper's N in {0, 6, 12, 18} is scaled to N in {";
            for (std::size_t i = 0; i < counts.size(); ++i)
                notes << (i ? ", " : "") << counts[i];
            notes << "}. ";
        }
        const std::string baseMethod = methodOf(base);
        std::vector<std::string> methods;
        if (withBaselines) {
            methods = { "ladder", "adapter", "lora", "bitfit" };
            if (baseMethod == "qlora") // QLoRA is its own method: its curve beside LoRA's
                methods.insert(methods.begin() + 3, "qlora");
        } else {
            methods = { baseMethod };
        }
        for (const auto& name : methods) {
            for (std::int64_t n : counts) {
                bool changed = false;
                json method = methodObject(base, name, &changed);
                if (name == "ladder") {
                    // N counts both stacks: N / 2 side layers dropped in each (paper section 4).
                    method["keep"] = interleavedKeep(sideLayers, n / 2);
                    if (n / 2 == 0)
                        method["keep"] = json::array(); // all layers
                } else {
                    method["freeze"] = std::min(n, total);
                }
                add(method, changed);
            }
        }
        notes
            << "LST drops N/2 side layers in each stack, interleaved; the other methods freeze their first N "
               "layers, encoder layers first. ";
    }
    if (resetLearningRate)
        notes << "Specs whose method differs from the base spec's use that method's paper learning rate. ";
    // Identical specs (a preset added twice) once only.
    std::vector<json> unique;
    for (auto& spec : specs)
        if (std::find(unique.begin(), unique.end(), spec) == unique.end())
            unique.push_back(std::move(spec));
    if (note)
        *note = notes.str();
    return unique;
}

std::vector<std::uint64_t> SweepGrid::parseSeeds(const std::string& text)
{
    std::string normalized = text;
    std::replace(normalized.begin(), normalized.end(), ',', ' ');
    std::istringstream in(normalized);
    std::vector<std::uint64_t> seeds;
    std::string item;
    while (in >> item) {
        const bool digits = !item.empty()
            && std::all_of(item.begin(), item.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
        if (!digits || item.size() > 18)
            throw std::invalid_argument(
                "seeds: \"" + printable(item, true, kMaxQuoted) + "\" is not a non-negative integer");
        const auto seed = static_cast<std::uint64_t>(std::stoull(item));
        if (std::find(seeds.begin(), seeds.end(), seed) == seeds.end())
            seeds.push_back(seed);
        if (seeds.size() > kMaxSeeds)
            throw std::invalid_argument("seeds: at most " + std::to_string(kMaxSeeds)
                + " at once (each one is a run of every grid point); for more, use `ladder sweep`");
    }
    if (seeds.empty())
        throw std::invalid_argument("seeds: expected at least one seed, e.g. 0, 1, 2");
    return seeds;
}

} // namespace ladder::widgets
