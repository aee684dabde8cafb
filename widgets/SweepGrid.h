#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ladder::widgets {

// The paper's sweeps (Figures 5 and 6 of Sung, Cho and Bansal 2022).
enum class SweepPreset {
    LstReduction, // LST reduction factor r in {32, 16, 8, 4}
    AdapterHidden, // Adapter hidden size in {6, 12, 24, 48}
    LoraRank, // LoRA rank in {4, 8, 16, 32} (QLoRA's when the base spec is QLoRA)
    DroppedLayers // N in {0, 6, 12, 18} of T5-base's 24 layers: LST drops N side layers (N/2 per stack,
                  // interleaved); Adapters, LoRA and BitFit freeze their first N layers (encoder first)
};

// Expands a base run spec into the specs of a sweep. Pure functions of their inputs, no Qt.
//
// Every spec keeps the base's backbone, task, training settings and device; "name" is removed (the run
// gets its automatic name, which shows the swept option). When the sweep changes the method, the method
// options start from that method's defaults and training.learning_rate is set to 0, i.e. the method's
// paper default (3e-4 for the baselines, 3e-3 for LST), since a learning rate tuned for one method does
// not carry over. When it keeps the method, the base's other options are kept.
class SweepGrid {
public:
    // The paper's values of a preset: {32, 16, 8, 4}, {6, 12, 24, 48}, {4, 8, 16, 32} or {0, 6, 12, 18}.
    static std::vector<std::int64_t> paperValues(SweepPreset preset);
    // Total layers (encoder + decoder) the paper's N counts against: T5-base's 12 + 12.
    static constexpr std::int64_t kPaperTotalLayers = 24;

    // The dropped-layer counts N for a backbone: the paper's values when it has at least 24 layers in all,
    // else scaled by (encoder + decoder layers) / 24 and rounded ({0, 2, 4, 6} for 4 + 4 layers).
    static std::vector<std::int64_t> droppedLayerCounts(
        std::int64_t encoderLayers, std::int64_t decoderLayers);

    // The side layers LST keeps when it drops `drop` of `layers` per stack, interleaved as the paper
    // does: dropped indices floor(k * layers / drop) for k = 0..drop-1, so 3 of 12 drops 0, 4, 8 (the
    // paper's T5-base list 1,2,3,5,6,7,9,10,11), 12 of 24 drops the even layers (its T5-large list) and
    // 23 of 24 keeps only 23 (its T5-3B list). At least one layer is always kept.
    static std::vector<std::int64_t> interleavedKeep(std::int64_t layers, std::int64_t drop);

    // The specs of `preset` for every seed (values outer, seeds inner). `withBaselines` applies to
    // DroppedLayers only: also the freeze-N specs of Adapters, LoRA and BitFit beside LST's (Figure 6), and
    // QLoRA's as a method of its own when the base spec is QLoRA; without it the base's own method is swept
    // (LST drops layers, any other method freezes).
    // `note` (optional) receives what was scaled or reset, for the dialog to show.
    static std::vector<nlohmann::json> expand(const nlohmann::json& base, SweepPreset preset,
        const std::vector<std::uint64_t>& seeds, std::int64_t encoderLayers, std::int64_t decoderLayers,
        bool withBaselines = false, std::string* note = nullptr);

    // At most this many seeds: each is a run of every grid point, and 10,000 pasted seeds froze the window
    // for minutes (the dialog lists and de-duplicates every spec).
    static constexpr std::size_t kMaxSeeds = 100;

    // Parses "0, 1, 2" or "0 1 2" (non-negative integers, duplicates removed, order kept; at most kMaxSeeds).
    // Throws std::invalid_argument naming the bad item (quoting at most 40 characters of it).
    static std::vector<std::uint64_t> parseSeeds(const std::string& text);
};

} // namespace ladder::widgets
