#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/T5Config.h"

namespace ladder {

// Options of every fine-tuning method, as one plain struct with documented defaults (the paper's T5-base
// settings, docs/LST.md). Serialised to and from JSON as part of a run spec: only the fields of
// the chosen method are written, unknown fields are errors.
struct MethodOptions {
    // "full", "bitfit", "adapter", "lora", "qlora", "prompt" or "ladder". qlora is LoRA over a quantised
    // frozen backbone (backboneDtype int4, or int8): the baseline users pick since 2023 (issue 18).
    std::string method = "ladder";

    // Storage of the frozen backbone's weights (every method but full; docs/PERFORMANCE.md, "Frozen backbone
    // storage"): "fp32" (as loaded), "bf16", "int8" (per-output-channel scales) or "int4" (group-wise
    // along the input dimension, quantGroupSize values per group, bf16 scale and zero per group). Layer-norm
    // weights and the relative-position biases stay fp32. qlora: int4 (default) or int8. Written to JSON
    // only when not fp32 (always for qlora), so existing specs keep their hashes.
    std::string backboneDtype = "fp32";
    std::int64_t quantGroupSize
        = 64; // int4 only: 32, 64, 128 or 256 (ATen's int4 packing); JSON only with int4

    // Baselines (every method but ladder): freeze the first N layers, encoder layers first, then decoder
    // layers, and insert no modules there (paper Figure 6). 0 = none.
    std::int64_t freeze = 0;

    // adapter: Houlsby bottleneck size and activation ("relu", "gelu", "silu", "tanh").
    std::int64_t hidden = 48;
    std::string activation = "relu";

    // lora: rank, alpha (scale = alpha / rank), dropout on the LoRA path, target matrices among
    // q, k, v, o, wi, wo (wi means wi_0 and wi_1 in gated FFNs), BitFit biases trained alongside.
    std::int64_t rank = 32;
    double alpha = 32.0;
    double dropout = 0.0;
    std::vector<std::string> targets { "q", "v" };
    bool bitfit = true;

    // prompt: number of prompt vectors prepended to the encoder input.
    std::int64_t prompts = 100;

    // ladder (LST): reduction factor r; side layers kept (0-based backbone layer indices, the same list
    // for encoder and decoder; empty = all); gate temperature; side-network initialisation ("fisher", the
    // default, as every LST script of the reference implementation; "magnitude" pruning of the backbone, or
    // "random"); Fisher samples (the reference's samples_for_fisher); backbone in train mode (the
    // reference's dropout) instead of eval mode; ablation ("none", "side-tuning", "no-ladders",
    // "adapter-blocks", "cross-attention"); learned merge with the backbone's final output.
    std::int64_t r = 8;
    std::vector<std::int64_t> keep;
    double gateTemperature = 0.1;
    std::string init = "fisher"; // needs training data: createMethod's BatchSource (docs/LST.md)
    std::int64_t fisherSamples = 1024;
    bool backboneTrainMode = false;
    std::string ablation = "none";
    bool mergeBackbone = false;
    // ladder: the activation cache (docs/PERFORMANCE.md): "none", "ram" or "disk" (a memory-mapped file in
    // cacheDir, reused by later runs with the same key); the stored dtype ("fp32": losses equal to an
    // uncached run; "bf16": half the bytes, values rounded to bf16). Needs an eval-mode backbone. Written to
    // JSON only when the cache is on.
    std::string cache = "none";
    std::string cacheDtype = "fp32";
    std::string cacheDir;
    // "same" (entries reused only at the padded lengths they were computed at: fp32 losses bit-equal to an
    // uncached run) or "any" (reused at any padding: faster with dynamic padding, equal to fp32 rounding).
    std::string cachePadding = "same";
    // ladder: memory options beyond the paper (issue 18; docs/LST.md, "Memory options"), each written to
    // JSON only when not its default. sideCheckpoint: recompute each side layer (ladder downsample, gate
    // and side block) in the backward instead of keeping its activations. sideAttention: "math" (softmax
    // of q k^T + bias, as HF) or "sdpa" (fused attention that keeps no attention map for backward; the
    // position bias is an additive mask and the scale 1.0). ladderDtype: "fp32" or "bf16", the dtype the
    // kept backbone hidden states (the ladder inputs) are held in. sideHeads: attention heads of the side
    // network (0 = the backbone's); the side's inner width (heads x d_kv / r) stays, split into sideHeads.
    bool sideCheckpoint = false;
    std::string sideAttention = "math";
    std::string ladderDtype = "fp32";
    std::int64_t sideHeads = 0;
    // Vision-and-language (docs/VL.md): the width of the frozen image encoder's features; > 0 adds the
    // visual projection (model/VisualEmbedding.h) that every method trains. The trainer sets it from the
    // task's feature file; written to JSON only when > 0.
    std::int64_t visualDim = 0;

    static MethodOptions defaults(const std::string& method);
    // Whether `field` (a JSON name such as "rank" or "side_checkpoint") is an option of `method`.
    static bool hasField(const std::string& method, const std::string& field);
    // LoRA's options and modules: lora and qlora.
    bool isLora() const { return method == "lora" || method == "qlora"; }
    // The frozen backbone is stored in a dtype other than fp32.
    bool quantizedBackbone() const { return backboneDtype != "fp32"; }
    // Errors name the field: "method options: field rank: expected a positive integer". Missing fields
    // take today's defaults; toJson() writes every field of the method (init always, for ladder), so stored
    // specs, checkpoints and their hashes keep the init they were made with (random before fisher became
    // the default).
    static MethodOptions fromJson(const nlohmann::json& json, const std::string& source = "method options");
    nlohmann::json toJson() const;
    // These options with `fields` (JSON names, options of this method: the caller checks and names them)
    // put over them. A field the new values make meaningless and that `fields` does not set goes:
    // quant_group_size when backbone_dtype changes away from int4. Errors as fromJson's, naming `source`.
    MethodOptions withFields(const nlohmann::json& fields, const std::string& source) const;
    // Checks values against a backbone (keep indices < layers, freeze <= layers, divisibility by r...).
    void validate(const T5Config& config) const;
    // The same checks against any backbone's sizes (a decoder-only one has no encoder blocks).
    void validate(const BackboneShape& shape) const;

    // Side layers kept, resolved: keep, or every layer when keep is empty.
    std::vector<std::int64_t> keptLayers(std::int64_t numLayers) const;
};

// For callers that build a method without training data and whose results do not depend on the side
// network's initial values (parameter counts, the memory and speed benches, loading trained or given side
// weights): init fisher becomes random, everything else stays. *changed (optional): whether it did.
MethodOptions withoutFisherInit(MethodOptions options, bool* changed = nullptr);

bool isKnownMethod(const std::string& method);
const std::vector<std::string>& knownMethods();

} // namespace ladder
