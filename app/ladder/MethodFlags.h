#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "peft/MethodOptions.h"

namespace CLI {
class App;
}

namespace ladder::cli {

// Method options as command-line flags named like their JSON fields (gate_temperature ->
// --gate-temperature). Only the flags given on the command line are applied.
struct MethodFlags {
    std::optional<std::int64_t> freeze, hidden, rank, prompts, r, fisherSamples, quantGroupSize, sideHeads;
    std::optional<double> alpha, dropout, gateTemperature;
    std::optional<std::string> activation, init, ablation, targets, keep, backboneDtype, sideAttention,
        ladderDtype;
    std::optional<bool> bitfit, backboneTrainMode, mergeBackbone, sideCheckpoint;

    void addTo(CLI::App* cmd);
    // The given flags as JSON fields.
    nlohmann::json given() const;
    // Defaults of `method` with the given flags applied. strict: a flag that is not an option of the
    // method is an error; otherwise it is ignored (bench runs several methods with one set of flags).
    MethodOptions optionsFor(const std::string& method, bool strict) const;
};

} // namespace ladder::cli
