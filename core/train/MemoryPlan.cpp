#include "train/MemoryPlan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <tuple>

#include "peft/DecoderLadder.h"
#include "util/Error.h"
#include "util/Text.h"

namespace ladder {
namespace {

constexpr std::uint64_t kMaxByteSize = std::uint64_t(1) << 62;

// Megabytes (10^6) with one decimal, as the CLI's tables show memory.
std::string megabytes(std::uint64_t bytes)
{
    char text[64];
    std::snprintf(text, sizeof text, "%.1f MB", static_cast<double>(bytes) / 1e6);
    return text;
}

std::string joined(const std::vector<std::string>& items, const char* separator = ", ")
{
    std::string out;
    for (const auto& item : items)
        out += (out.empty() ? "" : separator) + item;
    return out;
}

std::string layerList(const std::vector<std::int64_t>& layers)
{
    std::string out;
    for (auto l : layers)
        out += (out.empty() ? "" : ",") + std::to_string(l);
    return out;
}

// The largest value in [1, cap] with peakAt(value) <= budget, for a peak that grows with the value.
FitResult largestFitting(
    std::int64_t cap, std::uint64_t budget, const std::function<std::uint64_t(std::int64_t)>& peakAt)
{
    FitResult r;
    const auto first = peakAt(1);
    if (first > budget) {
        r.peak = first;
        return r;
    }
    std::int64_t lo = 1; // fits
    std::uint64_t loPeak = first;
    std::int64_t hi = 0; // does not fit (0: none found yet)
    while (hi == 0) {
        const std::int64_t next = lo >= cap / 2 ? cap : lo * 2;
        if (next == lo) // lo == cap
            break;
        const auto peak = peakAt(next);
        if (peak <= budget) {
            lo = next;
            loPeak = peak;
        } else {
            hi = next;
        }
    }
    if (hi == 0) {
        r.value = lo;
        r.peak = loPeak;
        r.capped = true;
        return r;
    }
    while (hi - lo > 1) {
        const std::int64_t mid = lo + (hi - lo) / 2;
        const auto peak = peakAt(mid);
        if (peak <= budget) {
            lo = mid;
            loPeak = peak;
        } else {
            hi = mid;
        }
    }
    r.value = lo;
    r.peak = loPeak;
    return r;
}

std::uint64_t estimatedPeak(const MemoryEstimateInput& input, const MethodOptions& options)
{
    MemoryEstimateInput in = input;
    in.method = options;
    return estimateTrainingMemory(in).total;
}

// Orders candidates: fewest changes, then fewest that alter training, then the smallest peak.
bool preferred(const OptionCandidate& a, const OptionCandidate& b)
{
    return std::make_tuple(a.changes.size(), a.inexactChanges, a.peak)
        < std::make_tuple(b.changes.size(), b.inexactChanges, b.peak);
}

int dtypeRank(const std::string& dtype)
{
    if (dtype == "bf16")
        return 1;
    if (dtype == "int8")
        return 2;
    if (dtype == "int4")
        return 3;
    return 0; // fp32
}

// The memory knobs of `o` that differ from its method's defaults, for a row's label.
std::vector<std::string> memoryDifferences(const MethodOptions& o)
{
    const auto d = MethodOptions::defaults(o.method);
    std::vector<std::string> out;
    if (o.method == "ladder") {
        if (o.r != d.r)
            out.push_back("r " + std::to_string(o.r));
        if (o.keep != d.keep)
            out.push_back("keep " + layerList(o.keep));
        if (o.sideCheckpoint != d.sideCheckpoint)
            out.push_back("side_checkpoint");
        if (o.sideAttention != d.sideAttention)
            out.push_back("side_attention " + o.sideAttention);
        if (o.ladderDtype != d.ladderDtype)
            out.push_back("ladder_dtype " + o.ladderDtype);
        if (o.sideHeads != d.sideHeads)
            out.push_back("side_heads " + std::to_string(o.sideHeads));
    }
    if (o.method == "qlora")
        out.push_back(o.backboneDtype + " base");
    else if (o.backboneDtype != d.backboneDtype)
        out.push_back("backbone_dtype " + o.backboneDtype);
    return out;
}

std::string rowLabel(const MethodOptions& o)
{
    const auto differences = memoryDifferences(o);
    return differences.empty() ? o.method : o.method + " (" + joined(differences) + ")";
}

PlanRow planRow(const MemoryEstimateInput& request, std::uint64_t budget, const MethodOptions& options)
{
    PlanRow row;
    row.label = rowLabel(options);
    row.options = options;
    MemoryEstimateInput in = request;
    in.method = options;
    try {
        row.peakAtRequest = estimateTrainingMemory(in).total;
        row.fitsRequest = row.peakAtRequest <= budget;
        row.batch = largestFittingBatch(in, budget);
        row.sourceLength = largestFittingSourceLength(in, budget);
    } catch (const std::exception& e) {
        row = PlanRow {};
        row.label = rowLabel(options);
        row.options = options;
        row.error = oneLine(e.what());
    }
    return row;
}

} // namespace

std::uint64_t parseByteSize(const std::string& text, const std::string& what)
{
    const auto fail = [&](const std::string& why) -> std::uint64_t {
        throw Error(what + ": '" + oneLine(text, 40) + "' " + why
            + " (expected bytes, or a number with a unit: KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, "
              "GB, TB (powers of 1000), e.g. 24GiB or 800MiB)");
    };
    std::size_t i = 0;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])))
        ++i;
    const std::size_t numberStart = i;
    long double value = 0.0L;
    std::size_t digits = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
        value = value * 10.0L + (text[i] - '0');
        ++i;
        ++digits;
    }
    if (i < text.size() && text[i] == '.') {
        ++i;
        long double scale = 0.1L;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
            value += scale * (text[i] - '0');
            scale /= 10.0L;
            ++i;
            ++digits;
        }
    }
    if (digits == 0)
        return numberStart < text.size() && text[numberStart] == '-' ? fail("is negative")
                                                                     : fail("is not a size");
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])))
        ++i;
    std::string unit;
    for (; i < text.size(); ++i)
        unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
    while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.back())))
        unit.pop_back();
    static const std::pair<const char*, long double> kUnits[] = { { "", 1.0L }, { "b", 1.0L },
        { "k", 1024.0L }, { "kib", 1024.0L }, { "kb", 1e3L }, { "m", 1048576.0L }, { "mib", 1048576.0L },
        { "mb", 1e6L }, { "g", 1073741824.0L }, { "gib", 1073741824.0L }, { "gb", 1e9L },
        { "t", 1099511627776.0L }, { "tib", 1099511627776.0L }, { "tb", 1e12L } };
    const auto* found
        = std::find_if(std::begin(kUnits), std::end(kUnits), [&](const auto& u) { return unit == u.first; });
    if (found == std::end(kUnits))
        return fail("has an unknown unit '" + oneLine(unit, 20) + "'");
    const long double bytes = std::round(value * found->second);
    if (bytes < 1.0L)
        return fail("is zero: a budget must hold at least one byte");
    if (bytes > static_cast<long double>(kMaxByteSize))
        return fail("is more than 2^62 bytes");
    return static_cast<std::uint64_t>(bytes);
}

std::string formatBinaryBytes(std::uint64_t bytes)
{
    static const char* const kUnits[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = static_cast<double>(bytes);
    int unit = 0;
    while (v >= 1024.0 && unit < 6) {
        v /= 1024.0;
        ++unit;
    }
    char text[64];
    if (unit == 0)
        std::snprintf(text, sizeof text, "%llu bytes", static_cast<unsigned long long>(bytes));
    else
        std::snprintf(text, sizeof text, "%.1f %s", v, kUnits[unit]);
    return text;
}

FitResult largestFittingBatch(const MemoryEstimateInput& input, std::uint64_t budget, std::int64_t cap)
{
    MemoryEstimateInput in = input;
    return largestFitting(std::max<std::int64_t>(cap, 1), budget, [&](std::int64_t batch) {
        in.batch = batch;
        return estimateTrainingMemory(in).total;
    });
}

FitResult largestFittingSourceLength(const MemoryEstimateInput& input, std::uint64_t budget, std::int64_t cap)
{
    MemoryEstimateInput in = input;
    return largestFitting(std::max<std::int64_t>(cap, 1), budget, [&](std::int64_t length) {
        in.srcLen = length;
        return estimateTrainingMemory(in).total;
    });
}

std::string OptionCandidate::label() const
{
    return changes.empty() ? std::string("as given") : joined(changes);
}

namespace {

// The candidates on any backbone: `shape` gives the widths an int4 group must divide and the layers a keep
// list draws from; `validate` is the backbone's own check of a set of options.
std::vector<OptionCandidate> optionCandidates(const MethodOptions& base, const BackboneShape& shape,
    const std::function<void(const MethodOptions&)>& validate)
{
    std::vector<OptionCandidate> out;
    OptionCandidate given;
    given.options = base;
    out.push_back(given);
    if (base.method == "full")
        return out;

    // One knob's choices: the given value first (no change), then the alternatives.
    struct Choice {
        std::function<void(MethodOptions&)> apply;
        std::string change; // empty: the given value
        bool exact = false;
    };
    std::vector<std::vector<Choice>> knobs;
    const auto unchanged = Choice { [](MethodOptions&) {}, "", true };

    // int4 with the given group size where it divides every input width of the backbone, else the largest
    // that does (0: none does, no int4).
    const auto divides = [&](std::int64_t group) {
        return shape.hiddenSize % group == 0 && shape.feedForwardSize % group == 0
            && (shape.heads * shape.headSize) % group == 0;
    };
    // A decoder's side network has no recomputation nor sdpa yet (peft/DecoderLadder.cpp refuses them).
    const bool decoder = shape.encoderBlocks == 0;
    std::int64_t int4Group = divides(base.quantGroupSize) ? base.quantGroupSize : 0;
    for (std::int64_t group : { 256, 128, 64, 32 })
        if (int4Group == 0 && divides(group))
            int4Group = group;
    std::vector<Choice> dtypes { unchanged };
    for (const char* dtype : { "bf16", "int8", "int4" }) {
        if (dtypeRank(dtype) <= dtypeRank(base.backboneDtype))
            continue;
        const bool int4 = std::string(dtype) == "int4";
        if (int4 && int4Group == 0)
            continue;
        const auto group = int4 ? int4Group : base.quantGroupSize;
        dtypes.push_back({ [dtype, group](MethodOptions& o) {
                              o.backboneDtype = dtype;
                              o.quantGroupSize = group;
                          },
            std::string("backbone_dtype ") + dtype
                + (int4 && group != base.quantGroupSize ? " (group " + std::to_string(group) + ")" : ""),
            false });
    }

    if (base.method == "ladder") {
        std::vector<Choice> rs { unchanged };
        for (std::int64_t r : { 8, 16, 32 })
            if (r != base.r)
                rs.push_back({ [r](MethodOptions& o) { o.r = r; }, "r " + std::to_string(r), false });
        knobs.push_back(rs);

        const auto layers
            = decoder ? shape.decoderBlocks : std::min(shape.encoderBlocks, shape.decoderBlocks);
        const auto given = base.keptLayers(layers);
        std::vector<Choice> keeps { unchanged };
        std::vector<std::int64_t> threeOfFour, everyOther;
        for (std::int64_t l = 0; l < layers; ++l) {
            if (l % 4 != 0)
                threeOfFour.push_back(l);
            if (l % 2 == 1)
                everyOther.push_back(l);
        }
        for (const auto& keep : { threeOfFour, everyOther })
            if (!keep.empty() && keep != given
                && std::find_if(keeps.begin() + 1, keeps.end(),
                       [&](const Choice& c) { return c.change == "keep " + layerList(keep); })
                    == keeps.end())
                keeps.push_back(
                    { [keep](MethodOptions& o) { o.keep = keep; }, "keep " + layerList(keep), false });
        knobs.push_back(keeps);

        if (!base.sideCheckpoint && !decoder)
            knobs.push_back({ unchanged,
                { [](MethodOptions& o) { o.sideCheckpoint = true; }, "side_checkpoint", true } });
        if (base.sideAttention != "sdpa" && base.ablation != "adapter-blocks" && !decoder)
            knobs.push_back({ unchanged,
                { [](MethodOptions& o) { o.sideAttention = "sdpa"; }, "side_attention sdpa", true } });
        if (base.ladderDtype != "bf16")
            knobs.push_back({ unchanged,
                { [](MethodOptions& o) { o.ladderDtype = "bf16"; }, "ladder_dtype bf16", false } });
    }
    knobs.push_back(dtypes);

    // Every combination, the given values first (index 0 of every knob is the base itself, already out).
    std::vector<std::size_t> index(knobs.size(), 0);
    while (true) {
        std::size_t k = 0;
        while (k < knobs.size() && ++index[k] == knobs[k].size())
            index[k++] = 0;
        if (k == knobs.size())
            break;
        OptionCandidate c;
        c.options = base;
        for (std::size_t i = 0; i < knobs.size(); ++i) {
            const auto& choice = knobs[i][index[i]];
            if (choice.change.empty())
                continue;
            choice.apply(c.options);
            c.changes.push_back(choice.change);
            c.inexactChanges += choice.exact ? 0 : 1;
        }
        try {
            validate(c.options);
        } catch (const Error&) {
            continue; // e.g. r 32 where d_kv is 16, int4 groups that do not divide d_model
        }
        out.push_back(std::move(c));
    }
    return out;
}

} // namespace

std::vector<OptionCandidate> memoryOptionCandidates(const MethodOptions& base, const T5Config& config)
{
    return optionCandidates(base, config.shape(), [&](const MethodOptions& o) { o.validate(config); });
}

std::vector<OptionCandidate> memoryOptionCandidates(const MethodOptions& base, const LlamaConfig& config)
{
    const auto shape = config.shape();
    return optionCandidates(base, shape, [&](const MethodOptions& o) {
        o.validate(shape);
        if (o.method == "ladder")
            (void)decoderSideOptions(config, o); // the side decoder's own limits (an even rotary head_dim)
    });
}

OptionChoice cheapestFittingOptions(const MemoryEstimateInput& input, std::uint64_t budget)
{
    OptionChoice choice;
    auto candidates = input.llama ? memoryOptionCandidates(input.method, *input.llama)
                                  : memoryOptionCandidates(input.method, input.config);
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        auto& c = candidates[i];
        c.peak = estimatedPeak(input, c.options); // the given options (i == 0) throw on a bad input
        c.fits = c.peak <= budget;
        ++choice.candidates;
        if (i == 0)
            choice.given = c;
        if (c.fits) {
            ++choice.fitting;
            if (!choice.found || preferred(c, choice.chosen))
                choice.chosen = c;
            choice.found = true;
        }
        if (i == 0 || c.peak < choice.smallest.peak)
            choice.smallest = c;
    }
    const std::string at = "at batch " + std::to_string(input.batch) + ", source "
        + std::to_string(input.srcLen) + ", target " + std::to_string(input.tgtLen);
    const std::string ofBudget = " of the budget's " + megabytes(budget);
    if (choice.found && choice.chosen.changes.empty()) {
        choice.why = "the given options fit " + at + ": " + megabytes(choice.given.peak) + ofBudget
            + "; nothing to change";
    } else if (choice.found) {
        const auto& c = choice.chosen;
        choice.why = "the given options need " + megabytes(choice.given.peak) + " " + at
            + ", over the budget's " + megabytes(budget) + "; " + std::to_string(choice.fitting) + " of "
            + std::to_string(choice.candidates) + " option sets fit, the fewest changes that do are "
            + std::to_string(c.changes.size()) + " ("
            + (c.inexactChanges == 0 ? std::string("none of them alters training")
                                     : std::to_string(c.inexactChanges) + " altering training")
            + "): " + c.label() + ", " + megabytes(c.peak);
        if (choice.smallest.peak < c.peak)
            choice.why += "; the smallest peak is " + megabytes(choice.smallest.peak) + " with "
                + choice.smallest.label();
    } else {
        choice.why = "none of " + std::to_string(choice.candidates) + " option sets fits " + at
            + ": the smallest, " + choice.smallest.label() + ", needs " + megabytes(choice.smallest.peak)
            + ofBudget;
    }
    return choice;
}

MemoryPlan planTrainingMemory(
    const MemoryEstimateInput& request, std::uint64_t budget, const std::vector<MethodOptions>& methods)
{
    MemoryPlan plan;
    plan.request = request;
    plan.budget = budget;
    for (const auto& options : methods)
        plan.rows.push_back(planRow(request, budget, options));
    for (const auto& options : methods) {
        if (options.method != "ladder")
            continue;
        MemoryEstimateInput in = request;
        in.method = options;
        try {
            plan.ladder = cheapestFittingOptions(in, budget);
        } catch (const std::exception&) {
            break; // the row says why the given options cannot be priced
        }
        plan.planLadder = true;
        if (plan.ladder.found && !plan.ladder.chosen.changes.empty())
            plan.rows.push_back(planRow(request, budget, plan.ladder.chosen.options));
        break;
    }
    return plan;
}

DeviceFit fitToBudget(const MemoryEstimateInput& input, std::uint64_t budget, std::int64_t maxBatch)
{
    DeviceFit fit;
    fit.options = input.method;
    const auto batch = largestFittingBatch(input, budget, maxBatch);
    const std::string ofBudget = " of " + megabytes(budget);
    if (batch.value > 0) {
        fit.ok = true;
        fit.batch = batch.value;
        fit.peak = batch.peak;
        fit.message = "batch " + std::to_string(batch.value) + ": estimated peak " + megabytes(batch.peak)
            + ofBudget + (batch.capped ? " (the largest batch allowed)" : "");
        return fit;
    }
    MemoryEstimateInput one = input;
    one.batch = 1;
    const auto choice = cheapestFittingOptions(one, budget);
    if (!choice.found) {
        fit.peak = choice.smallest.peak;
        fit.message = "nothing fits: even batch 1 needs " + megabytes(batch.peak) + ofBudget
            + (choice.candidates > 1 ? "; with the smallest memory options (" + choice.smallest.label() + ") "
                        + megabytes(choice.smallest.peak)
                                     : std::string());
        return fit;
    }
    MemoryEstimateInput with = input;
    with.method = choice.chosen.options;
    const auto chosen = largestFittingBatch(with, budget, maxBatch);
    fit.ok = true;
    fit.batch = chosen.value;
    fit.peak = chosen.peak;
    fit.options = choice.chosen.options;
    fit.optionsChanged = true;
    fit.message = "even batch 1 needs " + megabytes(batch.peak) + ofBudget + ": memory options "
        + choice.chosen.label() + ", batch " + std::to_string(chosen.value) + " at " + megabytes(chosen.peak);
    return fit;
}

} // namespace ladder
