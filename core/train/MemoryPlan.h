#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "peft/MethodOptions.h"
#include "train/MemoryEstimate.h"

namespace ladder {

// "What fits?" before launch (issue 18, docs/PERFORMANCE.md "Fit to a device: ladder plan"): the largest
// batch and source length whose estimated training peak (estimateTrainingMemory) fits a memory budget, and
// the memory options that make a method fit when even batch 1 does not. Built on the estimate alone: no
// tensor is allocated and no device is asked, so it runs on any thread (`ladder plan`, the workbench form's
// "Fit to device").

// The largest batch and source length a plan looks at: far above any real run; a result at the cap says so.
constexpr std::int64_t kPlanMaxBatch = std::int64_t(1) << 20;
constexpr std::int64_t kPlanMaxSourceLength = std::int64_t(1) << 16;

// A byte count as a user writes it: "24GiB", "24 GB", "800MiB", "1.5GiB", "512KiB", or a plain number of
// bytes. Units are binary (KiB, MiB, GiB, TiB: powers of 1024) or decimal (KB, MB, GB, TB: powers of 1000),
// case-insensitive; "K", "M", "G", "T" alone are binary (as `free -h` and nvidia-smi show them). Throws
// ladder::Error naming `what` for anything else, for 0 and for more than 2^62 bytes.
std::uint64_t parseByteSize(const std::string& text, const std::string& what = "budget");
// Bytes in the largest binary unit that keeps the number >= 1, one decimal: "24.0 GiB", "812.5 MiB".
std::string formatBinaryBytes(std::uint64_t bytes);

// The largest value in [1, cap] of one size whose estimated peak fits the budget (binary search: the
// estimate grows with batch and source length; test_plan checks that it does).
struct FitResult {
    std::int64_t value = 0; // 0: even 1 does not fit
    std::uint64_t peak = 0; // the estimated peak at `value` (at 1 when value is 0)
    bool capped = false; // the cap itself fits: the true largest may be larger
};

// The batch of `input` varies; everything else is as given. Throws what the estimate throws (options that
// do not fit the config, a bad dtype).
FitResult largestFittingBatch(
    const MemoryEstimateInput& input, std::uint64_t budget, std::int64_t cap = kPlanMaxBatch);
// The source length of `input` varies, at its batch.
FitResult largestFittingSourceLength(
    const MemoryEstimateInput& input, std::uint64_t budget, std::int64_t cap = kPlanMaxSourceLength);

// One set of memory options of a method: the given options with some of the memory knobs changed.
struct OptionCandidate {
    MethodOptions options;
    std::vector<std::string> changes; // "side_checkpoint", "r 16", "backbone int4", ...; empty = as given
    // Changes that alter what trains (everything but side_checkpoint, which recomputes exactly, and
    // side_attention sdpa, equal to the math path to 1e-5).
    int inexactChanges = 0;
    std::uint64_t peak = 0; // estimated at the input's batch
    bool fits = false;
    std::string label() const; // "as given", or the changes joined with ", "
};

// The memory option sets of `base`'s method beyond `base` itself (first in the list, no changes):
// - ladder: r in {8, 16, 32}; side layers kept: as given, 3 of every 4 (the paper's T5-base list,
//   1,2,3,5,6,7,...) or every other (the paper's T5-large list, 1,3,5,...); side_checkpoint;
//   side_attention sdpa; ladder_dtype bf16; backbone_dtype bf16, int8 or int4 (smaller than given; int4
//   with the given group size, or the largest of 256..32 that divides the backbone's widths). Every
//   combination.
// - bitfit, adapter, lora, qlora, prompt: backbone_dtype smaller than given (qlora int8: int4).
// - full: none (its backbone trains in fp32).
// Sets that do not validate against `config` (r not dividing the widths, an int4 group that does not
// divide d_model) are left out. peak and fits are not filled in.
std::vector<OptionCandidate> memoryOptionCandidates(const MethodOptions& base, const T5Config& config);
// The same on a decoder-only backbone: its layers for keep lists, no side_checkpoint or sdpa (T5's only).
std::vector<OptionCandidate> memoryOptionCandidates(const MethodOptions& base, const LlamaConfig& config);

// The option set of input.method's method that fits the budget at input's batch with the fewest changes
// from input.method; among as many changes, the one with the fewest that alter training (inexactChanges),
// then the smallest estimated peak. So the given options win whenever they fit.
struct OptionChoice {
    bool found = false; // some candidate fits
    OptionCandidate chosen; // the choice (when found)
    OptionCandidate given; // input.method itself, priced
    OptionCandidate smallest; // the candidate with the smallest peak, fitting or not
    std::size_t candidates = 0; // option sets priced
    std::size_t fitting = 0; // of those, how many fit
    std::string why; // one or two sentences: what was chosen and why
};
OptionChoice cheapestFittingOptions(const MemoryEstimateInput& input, std::uint64_t budget);

// One row of a plan: a method with its options.
struct PlanRow {
    std::string label; // "lora", "qlora (int4)", "ladder (side_checkpoint, r 16)"
    MethodOptions options;
    std::string error; // the estimate refused these options for this backbone; the figures below are 0
    FitResult batch; // largest batch at the requested source length
    FitResult sourceLength; // largest source length at the requested batch
    std::uint64_t peakAtRequest = 0; // estimated peak at the requested batch and source length
    bool fitsRequest = false;
};

struct MemoryPlan {
    MemoryEstimateInput request; // the requested batch, lengths, dtype, device (its method unused)
    std::uint64_t budget = 0;
    std::vector<PlanRow> rows; // one per method given, in order, then the chosen LST configuration
    bool planLadder = false; // ladder was among the methods: `ladder` below holds its choice
    OptionChoice ladder; // the cheapest LST configuration at the requested batch
};

// The plan for each of `methods` (each with its options, e.g. MethodOptions::defaults). When one of them is
// ladder, its cheapest fitting configuration at the requested batch (cheapestFittingOptions) is chosen and,
// when it differs from the given options, added as a last row.
MemoryPlan planTrainingMemory(
    const MemoryEstimateInput& request, std::uint64_t budget, const std::vector<MethodOptions>& methods);

// What the workbench's "Fit to device" does with one run: the largest batch that fits (capped at maxBatch);
// when even batch 1 does not fit, the cheapest memory options that fit at batch 1 and, with them, the
// largest batch. ok false when nothing fits; message says what was chosen or why nothing fits.
struct DeviceFit {
    bool ok = false;
    std::int64_t batch = 0;
    MethodOptions options; // input.method, or the memory options chosen
    bool optionsChanged = false;
    std::uint64_t peak = 0; // estimated at the chosen batch and options
    std::string message;
};
DeviceFit fitToBudget(
    const MemoryEstimateInput& input, std::uint64_t budget, std::int64_t maxBatch = kPlanMaxBatch);

} // namespace ladder
