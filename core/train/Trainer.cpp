#include "train/Trainer.h"
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
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "data/Batcher.h"
#include "data/Metrics.h"
#include "model/Generation.h"
#include "model/T5Quantization.h"
#include "model/T5Tokenizer.h"
#include "peft/Ladder.h"
#include "peft/Method.h"
#include "train/Autocast.h"
#include "train/LadderActivationCache.h"
#include "train/MemoryEstimate.h"
#include "train/RunEstimate.h"
#include "train/TrainState.h"
#include "train/TrainerState.h"
#include "util/Error.h"

namespace ladder {

const char* toString(RunOutcome status)
{
    switch (status) {
    case RunOutcome::Finished:
        return "finished";
    case RunOutcome::Failed:
        return "failed";
    case RunOutcome::Cancelled:
        return "cancelled";
    }
    return "failed";
}

namespace {

using Clock = std::chrono::steady_clock;

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

struct Cancelled { };

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

// Generates predictions for every example of `batcher` and scores them.
TrainEval evaluateSplit(Method& method, const Batcher& batcher, const std::vector<TextExample>& examples,
    const TaskInfo& info, const T5Tokenizer& tokenizer, const GenerationOptions& gen,
    const c10::Device& device, bool autocast, TrainerObserver& observer)
{
    const auto t0 = Clock::now();
    method.train(false);
    std::vector<std::string> predictions(examples.size());
    {
        at::NoGradGuard noGrad;
        AutocastGuard amp(autocast, device.type());
        auto stepper = method.makeStepper();
        for (const auto& indices : batcher.plan(0)) { // one batch at a time: no epoch's tensors held
            if (observer.cancelRequested())
                throw Cancelled {};
            const auto b = batcher.makeBatch(indices);
            const auto result
                = generate(*stepper, b.batch.inputIds.to(device), b.batch.attentionMask.to(device), gen);
            const auto seq = result.sequences.contiguous();
            for (std::int64_t r = 0; r < seq.size(0); ++r) {
                const auto* row = seq[r].data_ptr<std::int64_t>();
                predictions[b.indices[static_cast<std::size_t>(r)]]
                    = tokenizer.decode(std::vector<std::int64_t>(row, row + seq.size(1)), true);
            }
        }
    }
    // An evaluation under bf16 may have run ATen's int4 kernels, whose packed weights would otherwise stay
    // allocated through the training steps after it (model/QuantizedWeight.h).
    releaseKernelForms(*method.backbone());
    method.train(true);
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

// The ladder activation cache of an LST run (method option cache ram|disk): its cost is logged before
// it is allocated.
std::unique_ptr<LadderActivationCache> makeLadderCache(LadderMethod& method, const Batcher& batcher,
    const RunSpec& spec, bool autocast, TrainerObserver& observer)
{
    const auto& o = spec.method;
    const auto layout = LadderCacheLayout::forSide(method.sideNetwork()->options());
    std::vector<std::int64_t> sources, targets;
    for (std::size_t i = 0; i < batcher.exampleCount(); ++i) {
        sources.push_back(static_cast<std::int64_t>(batcher.sourceIds(i).size()));
        targets.push_back(static_cast<std::int64_t>(batcher.targetIds(i).size()));
    }
    LadderCacheOptions options;
    options.mode = o.cache;
    options.dtype = o.cacheDtype;
    options.dir = o.cacheDir;
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

} // namespace

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
    const Batcher batcher(*inputs.tokenizer, examples, bo);
    auto gen = GenerationOptions::forConfig(inputs.backbone->config());
    gen.numBeams = o.numBeams;
    gen.maxNewTokens = bo.maxTargetLength;
    const c10::Device device(spec.device);
    TrainerObserver none;
    auto e = evaluateSplit(
        method, batcher, examples, task.info, *inputs.tokenizer, gen, device, o.dtype == "bf16", none);
    e.split = split;
    return e;
}

RunSummary Trainer::run(TrainerObserver& observer)
{
    RunSummary summary;
    summary.device = m_spec.device;
    try {
        // A line per stage ("loading backbone X", "loading task Y"), and a cancel between the stages.
        const auto beforeStage = [&observer](const std::string& stage) {
            if (observer.cancelRequested())
                return true;
            if (!stage.empty())
                observer.onLog("info", "loading " + stage);
            return false;
        };
        return run(loadTrainerInputs(m_spec, beforeStage), observer);
    } catch (const LoadCancelled& e) {
        summary.status = RunOutcome::Cancelled;
        summary.message = e.what();
        observer.onLog("info", summary.message);
        return summary;
    } catch (const std::exception& e) {
        std::string what = e.what();
        if (const auto nl = what.find('\n'); nl != std::string::npos)
            what.resize(nl);
        summary.status = RunOutcome::Failed;
        summary.message = what;
        observer.onLog("error", what);
        return summary;
    }
}

RunSummary Trainer::run(TrainerInputs inputs, TrainerObserver& observer)
{
    const auto& spec = m_spec;
    const auto& o = spec.training;
    RunSummary summary;
    summary.device = spec.device;
    const auto t0 = Clock::now();
    std::unique_ptr<MemoryMeter> meter;
    // The meter's peak window is reset at every change of phase, and each window's peak goes to its phase's
    // figure (the highest over its windows): training's is never raised by an evaluation or the init.
    // Untracked: set-up, and after training, restoring and saving the best checkpoint.
    enum class Phase { Untracked, Init, Training, Evaluation };
    Phase phase = Phase::Untracked;
    auto foldPeak = [&]() {
        if (!meter)
            return;
        const auto s = meter->sample();
        if (phase == Phase::Init)
            summary.initPeakAllocatedBytes = std::max(summary.initPeakAllocatedBytes, s.peakAllocated);
        else if (phase == Phase::Evaluation)
            summary.evalPeakAllocatedBytes = std::max(summary.evalPeakAllocatedBytes, s.peakAllocated);
        else if (phase == Phase::Training) {
            summary.peakAllocatedBytes = std::max(summary.peakAllocatedBytes, s.peakAllocated);
            summary.peakReservedBytes = std::max(summary.peakReservedBytes, s.peakReserved);
        }
    };
    auto enterPhase = [&](Phase next) {
        foldPeak();
        meter->resetPeak();
        phase = next;
    };
    double elapsedBefore = 0.0; // a resumed run's time before it stopped
    auto fail = [&](RunOutcome status, const std::string& message) {
        summary.status = status;
        summary.message = message;
        summary.wallSeconds = elapsedBefore + secondsSince(t0);
        foldPeak(); // the phase that failed, was cancelled or ran out of memory
        observer.onLog(status == RunOutcome::Cancelled ? "info" : "error", message);
        return summary;
    };

    try {
        if (o.threads > 0)
            at::set_num_threads(static_cast<int>(o.threads)); // per thread: set inside the training thread
        c10::Device device(spec.device);
        if (device.is_cuda() && !at::hasCUDA())
            throw Error("device " + spec.device + ": no CUDA device is available");
        // bf16 is mixed precision on every device: bf16 autocast around the forward passes (training and
        // generation), fp32 weights, gradients and AdamW state (docs/PERFORMANCE.md, "bf16").
        const bool autocast = o.dtype == "bf16";
        const auto nanStep = injectedNanStep();
        meter = std::make_unique<MemoryMeter>(device);
        summary.meterLabel = meter->label();
        at::manual_seed(spec.seed);

        auto& task = inputs.task;
        if (task.train.empty() || task.validation.empty())
            throw Error("task " + task.info.name + ": the training and validation splits must not be empty");
        const auto& tokenizer = *inputs.tokenizer;
        BatcherOptions bo;
        bo.batchSize = static_cast<int>(o.batchSize);
        bo.maxSourceLength = static_cast<int>(o.maxSourceLength);
        bo.maxTargetLength = static_cast<int>(
            o.maxTargetLength > 0 ? o.maxTargetLength : Batcher::targetLengthFor(task.info, tokenizer, 128));
        bo.seed = spec.seed;
        BatcherOptions trainOptions = bo;
        trainOptions.shuffle = true;
        trainOptions.bucketByLength = o.bucketByLength;
        const Batcher trainBatcher(tokenizer, task.train, trainOptions);
        const auto validation = firstN(task.validation, o.maxEvalExamples);
        const auto test = firstN(task.test, o.maxEvalExamples);
        const Batcher validationBatcher(tokenizer, validation, bo);
        std::unique_ptr<Batcher> testBatcher
            = test.empty() ? nullptr : std::make_unique<Batcher>(tokenizer, test, bo);

        // Fisher initialisation reads its own pass over the training data, one example at a time.
        BatcherOptions fisherOptions = bo;
        fisherOptions.batchSize = 1;
        fisherOptions.shuffle = true;
        const Batcher fisherBatcher(tokenizer, task.train, fisherOptions);
        BatchSource fisherSource;
        // A resumed run's weights come from its state: LST's Fisher pass is not repeated.
        const auto methodOptions = m_state.resume ? withoutFisherInit(spec.method) : spec.method;
        if (methodOptions.method == "ladder" && methodOptions.init == "fisher") {
            auto inner = fisherBatcher.source(0);
            fisherSource = [inner, device]() -> std::optional<Seq2SeqBatch> {
                auto b = inner();
                if (b)
                    *b = Seq2SeqBatch { b->inputIds.to(device), b->attentionMask.to(device),
                        b->labels.to(device) };
                return b;
            };
        }

        // The Fisher pass reports "Fisher initialisation k/N" (onInitProgress after every example, a log
        // line every 10% and at the end) and stops as Cancelled when the observer asks.
        MethodInitHooks initHooks;
        std::int64_t fisherLoggedTenths = 0, fisherLoggedDone = -1;
        if (fisherSource) {
            const auto available = static_cast<std::int64_t>(task.train.size());
            initHooks.progress = [&, available](std::int64_t done, std::int64_t total) {
                total = std::min(total, available); // examples with no target are skipped: see the last call
                done = std::min(done, total);
                observer.onInitProgress("Fisher initialisation", done, total);
                const auto tenths = total > 0 ? done * 10 / total : 10;
                if (tenths > fisherLoggedTenths || (done == total && done != fisherLoggedDone)) {
                    fisherLoggedTenths = tenths;
                    fisherLoggedDone = done;
                    observer.onLog("info",
                        "Fisher initialisation " + std::to_string(done) + "/" + std::to_string(total)
                            + " examples");
                }
            };
            initHooks.cancelRequested = [&observer] { return observer.cancelRequested(); };
        }

        inputs.backbone->to(device);
        enterPhase(Phase::Init);
        auto method = createMethod(inputs.backbone, methodOptions, fisherSource, initHooks);
        method->train(true);
        // The stored peak is training's: the method's initialisation (LST's Fisher pass runs a whole backbone
        // backward) has its own peak, reported apart.
        enterPhase(Phase::Training); // sets initPeakAllocatedBytes
        if (methodOptions.method == "ladder" && methodOptions.init == "fisher")
            observer.onLog("info",
                "Fisher initialisation: peak allocated "
                    + std::to_string(summary.initPeakAllocatedBytes / 1000000)
                    + " MB (not part of the training peak)");
        auto params = method->trainableParameters();
        std::unique_ptr<LadderActivationCache> ladderCache;
        LadderMethod* ladderMethod = nullptr;
        if (spec.method.method == "ladder" && spec.method.cache != "none") {
            ladderMethod = dynamic_cast<LadderMethod*>(method.get());
            if (!ladderMethod)
                throw Error("ladder cache: the method is not an LST method");
            ladderCache = makeLadderCache(*ladderMethod, trainBatcher, spec, autocast, observer);
        }
        summary.trainableParams = method->trainableParameterCount();
        summary.totalParams = method->totalParameterCount();
        summary.backboneParams = method->backboneParameterCount();
        summary.weightBytes = static_cast<std::uint64_t>(summary.totalParams) * 4;
        summary.gradientBytes = static_cast<std::uint64_t>(summary.trainableParams) * 4;
        summary.optimizerBytes = static_cast<std::uint64_t>(summary.trainableParams) * 8;
        summary.mainMetric = task.info.mainMetric;
        observer.onStarted(summary);

        const double baseLr = o.learningRateFor(spec.method.method);
        std::vector<at::Tensor> decayed, spared;
        for (const auto& [name, p] : method->namedTrainableParameters())
            (decays(name) ? decayed : spared).push_back(p);
        std::vector<torch::optim::OptimizerParamGroup> groups;
        if (!decayed.empty())
            groups.emplace_back(decayed,
                std::make_unique<torch::optim::AdamWOptions>(
                    torch::optim::AdamWOptions(baseLr).weight_decay(o.weightDecay)));
        if (!spared.empty())
            groups.emplace_back(spared,
                std::make_unique<torch::optim::AdamWOptions>(
                    torch::optim::AdamWOptions(baseLr).weight_decay(0.0)));
        torch::optim::AdamW optimizer(
            std::move(groups), torch::optim::AdamWOptions(baseLr).weight_decay(o.weightDecay));
        const auto batchesPerEpoch = static_cast<std::int64_t>(trainBatcher.batchCount());
        const auto stepsPerEpoch = std::max<std::int64_t>(
            1, (batchesPerEpoch + o.gradientAccumulation - 1) / o.gradientAccumulation);
        const auto totalSteps = o.maxSteps > 0 ? o.maxSteps : o.epochs * stepsPerEpoch;
        const auto epochs = o.maxSteps > 0 ? (totalSteps + stepsPerEpoch - 1) / stepsPerEpoch : o.epochs;
        const auto named = method->namedTrainableParameters();
        observer.onLog("info",
            "training " + std::to_string(task.train.size()) + " examples, " + std::to_string(totalSteps)
                + " steps, lr " + std::to_string(baseLr) + ", " + std::to_string(summary.trainableParams)
                + " trainable parameters");
        {
            // The estimate of the longest batch's step (what the workbench's form shows), for comparison with
            // the training peak this run stores.
            const auto lengths = lengthsOf(trainBatcher);
            try {
                const auto e
                    = estimateTrainingMemory(estimateInputFor(spec, inputs.backbone->config(), lengths));
                char line[200];
                std::snprintf(line, sizeof line,
                    "memory estimate of a training step at the longest batch (source %lld, target %lld): "
                    "%.1f MB",
                    static_cast<long long>(lengths.source), static_cast<long long>(lengths.target),
                    static_cast<double>(e.total) / 1e6);
                observer.onLog("info", line);
            } catch (const std::exception& e) {
                observer.onLog("warning", std::string("memory estimate: ") + e.what());
            }
        }

        auto gen = GenerationOptions::forConfig(inputs.backbone->config());
        gen.numBeams = o.numBeams;
        gen.maxNewTokens = bo.maxTargetLength;

        HostSnapshot best;
        double bestScore = -std::numeric_limits<double>::infinity();
        std::int64_t lastEvalStep = -1;
        std::int64_t step = 0;
        std::int64_t runTokens = 0; // over every step, for the run's throughput
        double runStepSeconds = 0.0;
        std::int64_t startEpoch = 0, startBatch = 0;
        if (m_state.resume) {
            // Outside every peak: the state's tensors are in memory until it is released below.
            enterPhase(Phase::Untracked);
            const auto& path = m_state.path;
            auto loaded = std::make_unique<TrainState>(loadTrainState(path));
            const TrainState* resume = loaded.get();
            if (resume->runId != m_state.runId || resume->runCreatedAt != m_state.runCreatedAt
                || resume->specHash != m_state.specHash)
                throw Error("training state " + path + ": it is run " + std::to_string(resume->runId)
                    + "'s (created " + resume->runCreatedAt + "), not this run's");
            elapsedBefore = resume->elapsedSeconds;
            if (resume->totalSteps != totalSteps)
                throw Error("training state " + path + ": saved for a run of "
                    + std::to_string(resume->totalSteps) + " steps, this run has "
                    + std::to_string(totalSteps) + " (its task's data or its spec changed since)");
            if (resume->epoch > epochs)
                throw Error("training state " + path + ": field epoch: " + std::to_string(resume->epoch)
                    + " is past the run's " + std::to_string(epochs) + " epochs");
            applyTrainState(*resume, path, named, optimizer);
            setGeneratorState(c10::Device(at::kCPU), resume->cpuRng);
            if (device.is_cuda() && resume->cudaRng.defined())
                setGeneratorState(device, resume->cudaRng);
            if (!resume->best.empty()) {
                std::vector<at::Tensor> snapshot;
                for (const auto& [name, p] : named)
                    snapshot.push_back(resume->best.at(name));
                best.take(snapshot);
            }
            bestScore = resume->bestScore;
            if (std::isfinite(bestScore)) {
                summary.bestValidation = bestScore;
                summary.bestStep = resume->bestStep;
            }
            summary.lastValidation = resume->lastValidation;
            lastEvalStep = resume->lastEvalStep;
            step = resume->step;
            summary.steps = step;
            runTokens = resume->runTokens;
            runStepSeconds = resume->runStepSeconds;
            summary.peakAllocatedBytes = std::max(summary.peakAllocatedBytes, resume->peakAllocatedBytes);
            summary.peakReservedBytes = std::max(summary.peakReservedBytes, resume->peakReservedBytes);
            summary.initPeakAllocatedBytes
                = std::max(summary.initPeakAllocatedBytes, resume->initPeakAllocatedBytes);
            summary.evalPeakAllocatedBytes
                = std::max(summary.evalPeakAllocatedBytes, resume->evalPeakAllocatedBytes);
            startEpoch = resume->epoch;
            startBatch = resume->nextBatch;
            observer.onLog("info",
                "resumed from step " + std::to_string(step) + " of " + std::to_string(totalSteps) + " (epoch "
                    + std::to_string(startEpoch + 1) + ", batch " + std::to_string(startBatch) + "), state "
                    + m_state.path);
            loaded.reset(); // the state's tensors are freed before the first step
            enterPhase(Phase::Training);
        }
        // The full training state, for a resume: after the step that just ended, training goes on with
        // batch `nextBatch` of `epoch`'s plan. Outside every peak (a CUDA run copies to the host).
        auto saveState = [&](std::int64_t epoch, std::int64_t nextBatch) {
            if (m_state.path.empty())
                return;
            observer.onStateSaving(step);
            const auto resumePhase = phase;
            enterPhase(Phase::Untracked);
            TrainState st;
            st.runId = m_state.runId;
            st.runCreatedAt = m_state.runCreatedAt;
            st.specHash = m_state.specHash;
            st.step = step;
            st.totalSteps = totalSteps;
            st.epoch = epoch;
            st.nextBatch = nextBatch;
            st.lastEvalStep = lastEvalStep;
            st.bestScore = bestScore;
            st.bestStep = summary.bestStep;
            st.lastValidation = summary.lastValidation;
            st.peakAllocatedBytes = summary.peakAllocatedBytes;
            st.peakReservedBytes = summary.peakReservedBytes;
            st.initPeakAllocatedBytes = summary.initPeakAllocatedBytes;
            st.evalPeakAllocatedBytes = summary.evalPeakAllocatedBytes;
            st.runTokens = runTokens;
            st.runStepSeconds = runStepSeconds;
            st.elapsedSeconds = elapsedBefore + secondsSince(t0);
            captureTrainState(named, optimizer, best, &st);
            st.cpuRng = generatorState(c10::Device(at::kCPU));
            if (device.is_cuda())
                st.cudaRng = generatorState(device);
            saveTrainState(m_state.path, st);
            enterPhase(resumePhase);
        };
        auto validate = [&](std::int64_t step, std::int64_t epoch) {
            lastEvalStep = step;
            const auto previous = phase;
            enterPhase(Phase::Evaluation);
            auto e = evaluateSplit(*method, validationBatcher, validation, task.info, tokenizer, gen, device,
                autocast, observer);
            enterPhase(previous);
            e.step = step;
            e.epoch = epoch;
            e.split = "validation";
            observer.onEval(e);
            summary.lastValidation = e.main;
            if (std::isfinite(e.main) && e.main > bestScore) { // a NaN score never becomes the best
                bestScore = e.main;
                summary.bestValidation = e.main;
                summary.bestStep = step;
                best.take(params);
            }
        };

        double accumulatedLoss = 0.0;
        std::int64_t tokens = 0;
        auto stepStart = Clock::now();
        optimizer.zero_grad(true);
        const auto accumulation = static_cast<std::size_t>(o.gradientAccumulation);
        for (std::int64_t epoch = startEpoch; epoch < epochs && step < totalSteps; ++epoch) {
            // HF Trainer's accumulation: groups of `accumulation` batches within an epoch, the last group of
            // an epoch possibly shorter, and an optimizer step closing every group, so that every epoch ends
            // with a step and no gradient crosses an epoch. Each group's loss is the mean over its batches.
            // Batches are made one at a time from the epoch's plan.
            const auto plan = trainBatcher.plan(static_cast<int>(epoch));
            const auto first = static_cast<std::size_t>(epoch == startEpoch ? startBatch : 0);
            if (first > plan.size())
                throw Error("training state " + m_state.path
                    + ": field next_batch: " + std::to_string(startBatch) + " is past epoch "
                    + std::to_string(epoch + 1) + "'s " + std::to_string(plan.size()) + " batches");
            for (std::size_t i = first; i < plan.size(); ++i) {
                if (observer.cancelRequested())
                    throw Cancelled {};
                const auto groupStart = i / accumulation * accumulation;
                const auto groupSize = std::min(accumulation, plan.size() - groupStart);
                const auto b = trainBatcher.makeBatch(plan[i]);
                Seq2SeqBatch batch { b.batch.inputIds.to(device), b.batch.attentionMask.to(device),
                    b.batch.labels.to(device) };
                at::Tensor loss;
                {
                    AutocastGuard amp(autocast, device.type());
                    loss = ladderCache ? forwardWithCache(*ladderMethod, batch, b.indices, *ladderCache).loss
                                       : method->forward(batch).loss;
                }
                if (lossHook)
                    lossHook(loss, step + 1);
                if (nanStep == step + 1)
                    loss = loss * std::numeric_limits<double>::quiet_NaN();
                const double lossValue = loss.item<double>();
                if (!std::isfinite(lossValue))
                    return fail(RunOutcome::Failed,
                        "loss became " + std::string(std::isnan(lossValue) ? "NaN" : "infinite") + " at step "
                            + std::to_string(step + 1)
                            + (nanStep == step + 1 ? " (injected: LADDER_FAULT_INJECT)"
                                                   : " (try a lower learning rate)"));
                (loss / static_cast<double>(groupSize)).backward();
                accumulatedLoss += lossValue;
                tokens += b.batch.attentionMask.sum().item<std::int64_t>()
                    + (b.batch.labels != -100).sum().item<std::int64_t>();
                if (i + 1 < groupStart + groupSize)
                    continue;

                ++step;
                const double lr = baseLr * linearSchedule(step - 1, o.warmupSteps, totalSteps);
                for (auto& group : optimizer.param_groups())
                    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
                if (o.maxGradNorm > 0.0)
                    torch::nn::utils::clip_grad_norm_(params, o.maxGradNorm);
                optimizer.step();
                optimizer.zero_grad(true);

                TrainStep s;
                s.step = step;
                s.totalSteps = totalSteps;
                s.epoch = epoch;
                s.loss = accumulatedLoss / static_cast<double>(groupSize);
                s.learningRate = lr;
                s.memory = meter->sample(); // the peak: training's so far, earlier windows included
                s.memory.peakAllocated = std::max(s.memory.peakAllocated, summary.peakAllocatedBytes);
                s.memory.peakReserved = std::max(s.memory.peakReserved, summary.peakReservedBytes);
                const double dt = secondsSince(stepStart);
                s.tokensPerSecond = dt > 0 ? static_cast<double>(tokens) / dt : 0.0;
                runTokens += tokens;
                runStepSeconds += dt;
                s.elapsedSeconds = elapsedBefore + secondsSince(t0);
                summary.steps = step;
                if (step % o.logEverySteps == 0 || step == totalSteps)
                    observer.onStep(s);
                accumulatedLoss = 0.0;
                tokens = 0;

                const bool evaluated = o.evalEverySteps > 0 && step % o.evalEverySteps == 0;
                if (evaluated)
                    validate(step, epoch);
                if (evaluated || (o.saveStateEverySteps > 0 && step % o.saveStateEverySteps == 0))
                    saveState(epoch, static_cast<std::int64_t>(i) + 1);
                stepStart = Clock::now(); // after the evaluation: a step's time is its own
                if (step >= totalSteps)
                    break;
            }
            if (ladderCache) {
                ladderCache->flush();
                observer.onLog("info",
                    "ladder cache: " + std::to_string(ladderCache->storedCount()) + " of "
                        + std::to_string(ladderCache->exampleCount()) + " examples stored; "
                        + std::to_string(ladderCache->hits) + " batches served from it, "
                        + std::to_string(ladderCache->misses) + " ran the backbone");
            }
            if (o.evalEverySteps == 0) {
                validate(step, epoch);
                saveState(epoch + 1, 0);
            }
        }
        enterPhase(Phase::Untracked); // training's peak is complete
        if (lastEvalStep != step) { // the last step was not evaluated yet
            validate(step, epochs - 1);
            saveState(epochs, 0);
        }

        // The best checkpoint on the test split.
        if (!best.empty())
            best.restore(params);
        observer.onBestModel(*method);
        if (testBatcher) {
            enterPhase(Phase::Evaluation);
            auto e = evaluateSplit(
                *method, *testBatcher, test, task.info, tokenizer, gen, device, autocast, observer);
            enterPhase(Phase::Untracked);
            e.step = summary.bestStep;
            e.epoch = epochs - 1;
            e.split = "test";
            observer.onEval(e);
            summary.testMetric = e.main;
            summary.testValues = e.values;
        }
        summary.status = RunOutcome::Finished;
        summary.wallSeconds = elapsedBefore + secondsSince(t0);
        // Training throughput over the run: the steps' tokens over the steps' wall time (evaluations and
        // loading excluded), as each step's figure is over its own time.
        summary.tokensPerSecond = runStepSeconds > 0 ? static_cast<double>(runTokens) / runStepSeconds : 0.0;
        observer.onLog("info", "finished in " + std::to_string(summary.wallSeconds) + " s");
        return summary;
    } catch (const Cancelled&) {
        return fail(RunOutcome::Cancelled, "cancelled at step " + std::to_string(summary.steps));
    } catch (const InitCancelled& e) { // LST's Fisher pass: the backbone is frozen again, gradients undefined
        return fail(RunOutcome::Cancelled, e.what());
    } catch (const c10::OutOfMemoryError& e) {
        const auto peak = meter ? meter->sample().peakAllocated : 0; // of the phase that ran out
        const char* where = phase == Phase::Init ? "initialising the method, "
            : phase == Phase::Evaluation         ? "evaluating, "
                                                 : "";
        return fail(RunOutcome::Failed,
            std::string("out of memory (") + where + "peak allocated " + std::to_string(peak / (1024 * 1024))
                + " MiB" + allocationOf(e.what()) + ")");
    } catch (const std::exception& e) {
        std::string what = e.what();
        if (const auto nl = what.find('\n'); nl != std::string::npos)
            what.resize(nl);
        return fail(RunOutcome::Failed, what);
    }
}

} // namespace ladder
