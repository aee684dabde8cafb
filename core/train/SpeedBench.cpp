#include "train/SpeedBench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include "model/T5Model.h"
#include "peft/Ladder.h"
#include "peft/Method.h"
#include "train/LadderActivationCache.h"
#include "util/Error.h"

namespace ladder {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The benchmark's examples: random ids in [2, vocab), </s> (1) last.
struct SpeedData {
    std::vector<std::vector<std::int64_t>> sources, targets;
    std::int64_t batch = 1;
    std::uint64_t seed = 0;

    // The shuffled batches of `epoch` (example indices), the last one possibly smaller.
    std::vector<std::vector<std::size_t>> plan(std::int64_t epoch) const
    {
        std::vector<std::size_t> order(sources.size());
        std::iota(order.begin(), order.end(), std::size_t(0));
        std::mt19937_64 rng(seed * 1000003ull + static_cast<std::uint64_t>(epoch));
        std::shuffle(order.begin(), order.end(), rng);
        std::vector<std::vector<std::size_t>> out;
        for (std::size_t i = 0; i < order.size(); i += static_cast<std::size_t>(batch))
            out.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(i),
                order.begin()
                    + static_cast<std::ptrdiff_t>(
                        std::min(order.size(), i + static_cast<std::size_t>(batch))));
        return out;
    }

    // Dynamic padding: as long as the longest source / target of the batch.
    Seq2SeqBatch make(const std::vector<std::size_t>& rows, c10::Device device) const
    {
        std::size_t src = 0, tgt = 0;
        for (auto r : rows) {
            src = std::max(src, sources[r].size());
            tgt = std::max(tgt, targets[r].size());
        }
        const auto n = static_cast<std::int64_t>(rows.size());
        auto ids = at::zeros({ n, static_cast<std::int64_t>(src) }, at::kLong);
        auto mask = at::zeros({ n, static_cast<std::int64_t>(src) }, at::kLong);
        auto labels = at::full({ n, static_cast<std::int64_t>(tgt) }, -100, at::kLong);
        auto* pi = ids.data_ptr<std::int64_t>();
        auto* pm = mask.data_ptr<std::int64_t>();
        auto* pl = labels.data_ptr<std::int64_t>();
        for (std::size_t r = 0; r < rows.size(); ++r) {
            const auto& s = sources[rows[r]];
            const auto& t = targets[rows[r]];
            std::copy(s.begin(), s.end(), pi + r * src);
            std::fill(pm + r * src, pm + r * src + s.size(), 1);
            std::copy(t.begin(), t.end(), pl + r * tgt);
        }
        return Seq2SeqBatch { ids.to(device), mask.to(device), labels.to(device) };
    }
};

SpeedData makeData(const SpeedBenchSpec& spec)
{
    SpeedData d;
    d.batch = spec.batch;
    d.seed = spec.seed;
    std::mt19937_64 rng(spec.seed + 17);
    const auto vocab = spec.config.vocabSize;
    std::uniform_int_distribution<std::int64_t> token(2, vocab - 1);
    std::uniform_int_distribution<std::int64_t> length(
        std::max<std::int64_t>(2, spec.sourceLength / 2), std::max<std::int64_t>(2, spec.sourceLength));
    for (std::int64_t e = 0; e < spec.examples; ++e) {
        std::vector<std::int64_t> s(static_cast<std::size_t>(length(rng)));
        for (auto& x : s)
            x = token(rng);
        s.back() = 1;
        std::vector<std::int64_t> t(static_cast<std::size_t>(std::max<std::int64_t>(1, spec.targetLength)));
        for (auto& x : t)
            x = token(rng);
        t.back() = 1;
        d.sources.push_back(std::move(s));
        d.targets.push_back(std::move(t));
    }
    return d;
}

// One method being trained: its backbone, the method, AdamW.
struct Trainee {
    T5ForConditionalGeneration backbone { nullptr };
    std::unique_ptr<Method> method;
    std::vector<at::Tensor> params;
    std::unique_ptr<torch::optim::AdamW> optimizer;

    Trainee(const SpeedBenchSpec& spec, const MethodOptions& options)
    {
        at::manual_seed(spec.seed);
        backbone = T5ForConditionalGeneration(spec.config);
        backbone->to(spec.device);
        method = createMethod(backbone, options);
        method->train(true);
        params = method->trainableParameters();
        optimizer = std::make_unique<torch::optim::AdamW>(
            params, torch::optim::AdamWOptions(1e-4).weight_decay(0.0));
    }

    // One AdamW step; returns the loss.
    template <class Forward> double step(Forward forward)
    {
        optimizer->zero_grad(true);
        auto loss = forward();
        loss.backward();
        optimizer->step();
        const double value = loss.template item<double>();
        if (!std::isfinite(value))
            throw Error("speed bench: " + method->options().method + " produced a non-finite loss");
        return value;
    }
};

} // namespace

const SpeedBenchMethod* SpeedBenchResult::find(const std::string& method) const
{
    for (const auto& m : methods)
        if (m.method == method)
            return &m;
    return nullptr;
}

SpeedBenchResult measureSpeed(const SpeedBenchSpec& spec, const std::vector<MethodOptions>& methods,
    const std::function<void(const std::string&)>& progress)
{
    if (spec.epochs < 2)
        throw Error("speed bench: --epochs must be at least 2 (the cache pays from the second epoch)");
    if (spec.examples < 1 || spec.batch < 1)
        throw Error("speed bench: --examples and --batch must be at least 1");
    auto say = [&](const std::string& line) {
        if (progress)
            progress(line);
    };
    const auto data = makeData(spec);
    SpeedBenchResult result;
    const auto warmPlan = data.plan(-1);
    result.batchesPerEpoch = static_cast<std::int64_t>(data.plan(0).size());
    for (const auto& rows : data.plan(0)) {
        std::size_t longest = 0;
        for (auto r : rows)
            longest = std::max(longest, data.sources[r].size());
        result.paddedTokens += static_cast<std::int64_t>(longest * rows.size());
    }

    bool firstLadder = true; // the LST row whose epochs and cache runs the bench reports
    for (const auto& given : methods) {
        // Step and epoch times do not depend on the side network's initial values, and the bench's random
        // examples are no task for a Fisher pass: LST is built with init random (row.options says so).
        const auto options = withoutFisherInit(given);
        options.validate(spec.config);
        Trainee t(spec, options);
        SpeedBenchMethod row;
        row.method = options.method;
        row.options = options;
        row.trainableParams = t.method->trainableParameterCount();
        say(options.method + ": warm-up step");
        (void)t.step([&] { return t.method->forward(data.make(warmPlan.front(), spec.device)).loss; });
        const auto epochs = options.method == "ladder" ? spec.epochs : 1;
        std::vector<double> losses;
        for (std::int64_t epoch = 0; epoch < epochs; ++epoch) {
            say(options.method + ": epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs));
            const auto t0 = Clock::now();
            for (const auto& rows : data.plan(epoch))
                losses.push_back(
                    t.step([&] { return t.method->forward(data.make(rows, spec.device)).loss; }));
            const auto seconds = secondsSince(t0);
            if (options.method == "ladder" && firstLadder)
                result.lstEpochSeconds.push_back(seconds);
            row.epochSeconds += seconds / static_cast<double>(epochs);
            row.steps += result.batchesPerEpoch;
        }
        row.secondsPerStep = row.epochSeconds / static_cast<double>(result.batchesPerEpoch);
        result.methods.push_back(row);
        // The activation cache is measured against the first LST row only (cache none: not at all).
        if (options.method != "ladder" || !firstLadder || spec.cacheMode == "none") {
            firstLadder = firstLadder && options.method != "ladder";
            continue;
        }
        firstLadder = false;

        // The same LST run again with the activation cache, per padding policy: same seed, same warm-up
        // step, same batches, so every loss can be compared with the uncached run's.
        for (const auto& padding : spec.cachePaddings) {
            auto cachedOptions = options;
            cachedOptions.cache = spec.cacheMode;
            cachedOptions.cacheDtype = spec.cacheDtype;
            cachedOptions.cacheDir = spec.cacheDir;
            cachedOptions.cachePadding = padding;
            cachedOptions.validate(spec.config);
            Trainee c(spec, cachedOptions);
            auto& lst = dynamic_cast<LadderMethod&>(*c.method);
            const auto layout = LadderCacheLayout::forSide(lst.sideNetwork()->options());
            std::vector<std::int64_t> sourceLengths, targetLengths;
            for (std::size_t i = 0; i < data.sources.size(); ++i) {
                sourceLengths.push_back(static_cast<std::int64_t>(data.sources[i].size()));
                targetLengths.push_back(static_cast<std::int64_t>(data.targets[i].size()));
            }
            LadderCacheOptions co;
            co.mode = spec.cacheMode;
            co.dtype = spec.cacheDtype;
            co.dir = spec.cacheDir;
            co.padding = padding;
            LadderCacheKey key;
            if (co.mode == "disk")
                key = LadderCacheKey::make(*c.backbone, layout, ladderCacheComputeLabel(spec.device, false),
                    co.dtype, data.sources, data.targets);
            auto cache
                = std::make_unique<LadderActivationCache>(layout, sourceLengths, targetLengths, key, co);
            if (cache->reusedCount() > 0)
                throw Error("speed bench: " + cache->path()
                    + " already holds cached values; remove it to measure filling");
            result.cacheBytes = cache->bytes();
            result.cacheDescription = cache->describe();
            SpeedBenchResult::CachedRun run;
            run.padding = padding;
            const auto label = "ladder (cache, padding " + padding + ")";
            say(label + ": warm-up step");
            (void)c.step([&] { return c.method->forward(data.make(warmPlan.front(), spec.device)).loss; });
            std::size_t k = 0;
            for (std::int64_t epoch = 0; epoch < spec.epochs; ++epoch) {
                say(label + ": epoch " + std::to_string(epoch + 1) + "/" + std::to_string(spec.epochs));
                const auto t0 = Clock::now();
                for (const auto& rows : data.plan(epoch)) {
                    const auto loss = c.step([&] {
                        return forwardWithCache(lst, data.make(rows, spec.device), rows, *cache).loss;
                    });
                    run.maxLossDifference = std::max(run.maxLossDifference, std::abs(loss - losses.at(k++)));
                }
                cache->flush();
                run.epochSeconds.push_back(secondsSince(t0));
            }
            run.hits = cache->hits;
            run.misses = cache->misses;
            result.cached.push_back(run);
            const auto path = cache->path();
            cache.reset();
            if (!path.empty())
                std::remove(path.c_str());
        }
    }
    return result;
}

} // namespace ladder
