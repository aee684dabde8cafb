#include "train/TrainerSteps.h"
#include "train/TrainerInputs.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <regex>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>

#include "data/Batcher.h"
#include "data/DemoTasks.h"
#include "data/Metrics.h"
#include "model/Generation.h"
#include "model/T5Quantization.h"
#include "model/T5Tokenizer.h"
#include "model/llama/LlamaQuantization.h"
#include "peft/Ladder.h"
#include "peft/Method.h"
#include "train/Autocast.h"
#include "train/DataParallel.h"
#include "train/LadderActivationCache.h"
#include "util/Error.h"

namespace ladder {
namespace trainer_detail {

// Fault injection for tests of the failure paths (docs/GPU.md, "Fault injection"): the environment variable
// LADDER_FAULT_INJECT=nan@N makes the training loss NaN at optimizer step N, as a diverging run would.
// Returns the step, or 0 when the variable is unset; anything else in it is an error naming it.
std::int64_t injectedNanStep()
{
    const char* value = std::getenv("LADDER_FAULT_INJECT");
    if (!value || !*value)
        return 0;
    const std::string v(value);
    if (v.rfind("nan@", 0) == 0) {
        try {
            std::size_t used = 0;
            const auto step = std::stoll(v.substr(4), &used);
            if (used == v.size() - 4 && step > 0)
                return step;
        } catch (const std::exception&) {
        }
    }
    throw Error("LADDER_FAULT_INJECT: expected nan@STEP with STEP >= 1, got '" + v + "'");
}

// ", tried to allocate 2.00 GiB": the size an out-of-memory error names (CUDA's "Tried to allocate 2.00 GiB",
// the CPU tracking allocator's "tried to allocate N bytes"), or "" when it names none.
std::string allocationOf(const std::string& what)
{
    static const std::regex size(R"([Tt]ried to allocate ([0-9.]+ ?[KMGT]?i?B|[0-9]+ bytes))");
    std::smatch m;
    if (!std::regex_search(what, m, size))
        return {};
    return ", tried to allocate " + m[1].str();
}

// Fault injection for the tests of a data-parallel run (docs/SCALING.md): LADDER_DIST_FAULT="exit@N rank=R"
// ends rank R's process (exit code 3, nothing recorded) as optimizer step N begins, as a crashed rank would;
// "nan@N rank=R" makes rank R's loss alone NaN at step N. Unset: no fault. Anything else is an error.

DistFault injectedDistFault()
{
    const char* value = std::getenv("LADDER_DIST_FAULT");
    if (!value || !*value)
        return {};
    static const std::regex form(R"(^(exit|nan|oom)@([1-9][0-9]{0,9}) rank=([0-9]{1,5})$)");
    std::cmatch m;
    if (!std::regex_match(value, m, form))
        throw Error(
            std::string(
                "LADDER_DIST_FAULT: expected exit@STEP rank=R, nan@STEP rank=R or oom@STEP rank=R, got '")
            + value + "'");
    return { m[1].str(), std::stoll(m[2].str()), std::stoi(m[3].str()) };
}

double secondsSince(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// HF get_linear_schedule_with_warmup: linear warm-up to the base rate, then linear decay to 0.
double linearSchedule(std::int64_t step, std::int64_t warmup, std::int64_t total)
{
    if (step < warmup)
        return static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(1, warmup));
    return std::max(0.0,
        static_cast<double>(total - step) / static_cast<double>(std::max<std::int64_t>(1, total - warmup)));
}

// Whether weight decay applies to a trainable parameter: HF Trainer's rule (no decay for biases and
// normalisation weights: names with "bias", "layernorm", "rmsnorm" or a "norm"/"_norm" component, which
// T5's layer_norm and final_layer_norm are, and the relative attention bias), plus LST's gates.
bool decays(const std::string& name)
{
    std::string n = name;
    std::transform(
        n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    static const std::regex spared(
        R"((bias|layernorm|rmsnorm|(^|\.)norm($|\.)|_norm($|\.)|(^|[._])gate($|[._])))");
    return !std::regex_search(n, spared);
}

// Generates predictions for every example of `batcher` and scores them against `examples`. In a
// data-parallel run `batcher` holds this rank's share of `examples` (DataParallel::share) and the
// predictions are gathered before scoring, so that every rank computes the single-process metric; a cancel
// then waits for the next step's agreement (a rank leaving mid-evaluation would leave the others waiting).
TrainEval evaluateSplit(Method& method, const Batcher& batcher, const std::vector<TextExample>& examples,
    const TaskInfo& info, const Tokenizer& tokenizer, const GenerationOptions& gen, const c10::Device& device,
    bool autocast, TrainerObserver& observer, DataParallel* dp)
{
    const auto t0 = Clock::now();
    method.train(false);
    std::vector<std::string> predictions(batcher.exampleCount());
    {
        at::NoGradGuard noGrad;
        AutocastGuard amp(autocast, device.type());
        auto stepper = method.makeStepper();
        for (const auto& indices : batcher.plan(0)) { // one batch at a time: no epoch's tensors held
            if (!dp && observer.cancelRequested())
                throw Cancelled {};
            const auto b = batcher.makeBatch(indices);
            stepper->setVisual(b.batch.visual.to(device));
            const auto result
                = generate(*stepper, b.batch.inputIds.to(device), b.batch.attentionMask.to(device), gen);
            const auto seq = result.sequences.contiguous();
            for (std::int64_t r = 0; r < seq.size(0); ++r) {
                const auto* row = seq[r].data_ptr<std::int64_t>();
                // Column 0 is the start token (T5's decoder start, a decoder's last prompt token), not a
                // prediction.
                predictions[b.indices[static_cast<std::size_t>(r)]]
                    = tokenizer.decode(std::vector<std::int64_t>(row + 1, row + seq.size(1)), true);
            }
        }
    }
    // An evaluation under bf16 may have run ATen's int4 kernels, whose packed weights would otherwise stay
    // allocated through the training steps after it (model/QuantizedWeight.h).
    if (const auto* t5 = dynamic_cast<const T5ForConditionalGenerationImpl*>(method.backbone().get()))
        releaseKernelForms(*t5);
    else if (const auto* llama = asLlama(*method.backbone()))
        releaseKernelForms(*llama);
    method.train(true);
    if (dp)
        predictions = dp->gatherShares(predictions, examples.size());
    const auto metrics = evaluate(info, predictions, examples);
    TrainEval e;
    e.values = metrics.values;
    e.mainName = metrics.mainName;
    e.main = metrics.main;
    e.examples = metrics.count;
    e.invalid = metrics.invalid;
    for (std::size_t i = 0; i < examples.size() && i < TrainEval::kStoredPredictions; ++i)
        e.predictions.push_back({ examples[i].id, examples[i].target, predictions[i] });
    e.seconds = secondsSince(t0);
    return e;
}

// The ladder activation cache of an LST run (method option cache ram|disk), T5's or a decoder's: its cost is
// logged before it is allocated.
std::unique_ptr<LadderActivationCache> makeLadderCache(Method& method, const Batcher& batcher,
    const RunSpec& spec, bool autocast, TrainerObserver& observer, const DataParallel* dp)
{
    const auto& o = spec.method;
    const auto layout = LadderCacheLayout::forMethod(method);
    std::vector<std::int64_t> sources, targets;
    for (std::size_t i = 0; i < batcher.exampleCount(); ++i) {
        sources.push_back(static_cast<std::int64_t>(batcher.sourceIds(i).size()));
        targets.push_back(static_cast<std::int64_t>(batcher.targetIds(i).size()));
    }
    LadderCacheOptions options;
    options.mode = o.cache;
    options.dtype = o.cacheDtype;
    options.dir = o.cacheDir;
    if (dp && o.cache == "disk" && !options.dir.empty()) { // per rank: each holds what its shares read
        options.dir += "/rank-" + std::to_string(dp->rank());
        demofs::makeDirectories(options.dir);
    }
    options.padding = o.cachePadding;
    char size[32];
    std::snprintf(size, sizeof size, "%.1f MB",
        static_cast<double>(LadderActivationCache::bytesFor(layout, sources, targets, o.cacheDtype)) / 1e6);
    observer.onLog("info",
        "ladder cache (" + o.cache + ", " + o.cacheDtype + ", padding " + o.cachePadding + "): " + size
            + " for " + std::to_string(sources.size())
            + " training examples; the backbone runs in the first epoch only");
    LadderCacheKey key;
    if (o.cache == "disk") {
        std::vector<std::vector<std::int64_t>> sourceIds, targetIds;
        for (std::size_t i = 0; i < batcher.exampleCount(); ++i) {
            sourceIds.push_back(batcher.sourceIds(i));
            targetIds.push_back(batcher.targetIds(i));
        }
        key = LadderCacheKey::make(*method.backbone(), layout,
            ladderCacheComputeLabel(c10::Device(spec.device), autocast), o.cacheDtype, sourceIds, targetIds);
    }
    auto cache = std::make_unique<LadderActivationCache>(layout, std::move(sources), std::move(targets), key,
        options, [&observer](const std::string& level, const std::string& message) {
            observer.onLog(level, message);
        });
    observer.onLog("info", "ladder cache: " + cache->describe());
    return cache;
}

std::vector<TextExample> firstN(const std::vector<TextExample>& v, std::int64_t n)
{
    if (n <= 0 || static_cast<std::size_t>(n) >= v.size())
        return v;
    return { v.begin(), v.begin() + n };
}

} // namespace trainer_detail

using namespace trainer_detail;

TrainEval evaluateSplit(const RunSpec& spec, TrainerInputs& inputs, Method& method, const std::string& split)
{
    const auto& o = spec.training;
    const auto& task = inputs.task;
    if (split != "validation" && split != "test")
        throw Error("evaluate: split must be validation or test, got " + split);
    const auto examples = firstN(split == "test" ? task.test : task.validation, o.maxEvalExamples);
    if (examples.empty())
        throw Error("evaluate: task " + task.info.name + " has no " + split + " examples");
    BatcherOptions bo;
    bo.batchSize = static_cast<int>(o.batchSize);
    bo.maxSourceLength = static_cast<int>(o.maxSourceLength);
    bo.maxTargetLength = static_cast<int>(o.maxTargetLength > 0
            ? o.maxTargetLength
            : Batcher::targetLengthFor(task.info, *inputs.tokenizer, 128));
    setVisualOptions(bo, task.info);
    const Batcher batcher(*inputs.tokenizer, examples, bo);
    auto gen = generationOptionsFor(*inputs.backbone, *inputs.tokenizer);
    gen.numBeams = o.numBeams;
    gen.maxNewTokens = bo.maxTargetLength;
    const c10::Device device(spec.device);
    TrainerObserver none;
    auto e = evaluateSplit(
        method, batcher, examples, task.info, *inputs.tokenizer, gen, device, o.dtype == "bf16", none);
    e.split = split;
    return e;
}

GenerationOptions generationOptionsFor(const BackboneModelImpl& backbone, const Tokenizer& tokenizer)
{
    if (const auto* t5 = dynamic_cast<const T5ForConditionalGenerationImpl*>(&backbone))
        return GenerationOptions::forConfig(t5->config());
    GenerationOptions gen;
    gen.eosTokenId = tokenizer.eosId();
    gen.padTokenId = tokenizer.padId();
    gen.decoderStartTokenId = tokenizer.padId(); // unused: a causal stepper starts from the prompt
    return gen;
}

} // namespace ladder
