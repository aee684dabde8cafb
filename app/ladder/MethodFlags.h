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

// "a,b,,c" -> {"a", "b", "c"}: the comma lists of flags (--methods, --targets, --keep).
std::vector<std::string> splitCommas(const std::string& s);

// One row of a multi-method command (bench memory): "method" or "method:field=value:field..." (a bare field
// is true), e.g. "ladder:side_checkpoint:ladder_dtype=bf16", the fields named as in the run spec. `base` is
// the method's options from the shared flags; the row's own fields override them. Errors name the entry.
MethodOptions methodEntryOptions(const std::string& entry, const MethodFlags& base);

// The entries of a comma list of method entries; "lst-memory" expands to LST with the memory options of
// issue 18 added one at a time (side_checkpoint, side_attention sdpa, ladder_dtype bf16, backbone_dtype
// int4), so that each row shows its part of the saving.
std::vector<std::string> methodEntries(const std::string& list);

} // namespace ladder::cli
