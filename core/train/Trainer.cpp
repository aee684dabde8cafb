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
#include "dist/DistributedGroup.h"
#include "dist/GradientSync.h"
#include "model/Generation.h"
#include "model/T5Quantization.h"
#include "model/T5Tokenizer.h"
#include "model/llama/LlamaModel.h"
#include "peft/Ladder.h"
#include "peft/Method.h"
#include "train/Autocast.h"
#include "train/DataParallel.h"
#include "train/LadderActivationCache.h"
#include "train/MemoryEstimate.h"
#include "train/RunEstimate.h"
#include "train/TrainState.h"
#include "train/TrainerState.h"
#include "train/TrainerSteps.h"
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

using namespace trainer_detail;

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
    std::unique_ptr<DataParallel> dp; // a data-parallel run (setDistributed)
    std::unique_ptr<GradientSync> gradientSync;
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
        if (m_group) {
            dp = std::make_unique<DataParallel>(m_group);
            if (device.is_cuda() != m_group->device().is_cuda())
                throw Error("device " + spec.device + ": the process group is " + m_group->backendName()
                    + " on " + m_group->device().str() + " (Gloo for cpu runs, NCCL for cuda runs)");
            if (device.is_cuda())
                device = m_group->device(); // cuda:LOCAL_RANK, bound before the group's first collective
            if (m_state.resume)
                throw Error("training state " + m_state.path
                    + ": a data-parallel run does not resume (its state is not saved); train it again");
        }
        // bf16 is mixed precision on every device: bf16 autocast around the forward passes (training and
        // generation), fp32 weights, gradients and AdamW state (docs/PERFORMANCE.md, "bf16").
        const bool autocast = o.dtype == "bf16";
        auto nanStep = injectedNanStep();
        const auto distFault = injectedDistFault();
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
        setVisualOptions(bo, task.info);
        BatcherOptions trainOptions = bo;
        trainOptions.shuffle = true;
        trainOptions.bucketByLength = o.bucketByLength;
        const Batcher trainBatcher(tokenizer, task.train, trainOptions);
        const auto validation = firstN(task.validation, o.maxEvalExamples);
        const auto test = firstN(task.test, o.maxEvalExamples);
        // A data-parallel run evaluates each rank's strided share of a split, in batches of its share of
        // the global batch, and gathers the predictions.
        BatcherOptions evalOptions = bo;
        if (dp)
            evalOptions.batchSize = static_cast<int>(dp->localBatch(bo.batchSize));
        const Batcher validationBatcher(tokenizer, dp ? dp->share(validation) : validation, evalOptions);
        std::unique_ptr<Batcher> testBatcher = test.empty()
            ? nullptr
            : std::make_unique<Batcher>(tokenizer, dp ? dp->share(test) : test, evalOptions);

        // Fisher initialisation reads its own pass over the training data, one example at a time.
        BatcherOptions fisherOptions = bo;
        fisherOptions.batchSize = 1;
        fisherOptions.shuffle = true;
        const Batcher fisherBatcher(tokenizer, task.train, fisherOptions);
        BatchSource fisherSource;
        // A resumed run's weights come from its state: LST's Fisher pass is not repeated.
        auto methodOptions = m_state.resume ? withoutFisherInit(spec.method) : spec.method;
        if (task.info.isVisual()) {
            // The visual projection's width is the feature file's (docs/VL.md).
            if (methodOptions.visualDim > 0 && methodOptions.visualDim != task.info.visualDim)
                bo.visualFeatures->expectDim(methodOptions.visualDim);
            methodOptions.visualDim = task.info.visualDim;
        } else if (methodOptions.visualDim > 0) {
            throw Error("method options: field visual_dim: " + std::to_string(methodOptions.visualDim)
                + " is for a vision-and-language task (task type vl); task " + task.info.name + " is text");
        }
        if (methodOptions.method == "ladder" && methodOptions.init == "fisher") {
            auto inner = fisherBatcher.source(0);
            fisherSource = [inner, device]() -> std::optional<Seq2SeqBatch> {
                auto b = inner();
                if (b)
                    *b = onDevice(*b, device);
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
        if (dp) {
            // Every rank starts from rank 0's weights (DDP's constructor does the same), then the hooks.
            dp->broadcastFromRankZero(params);
            gradientSync = std::make_unique<GradientSync>(dp->group(), params);
            summary.worldSize = dp->world();
            summary.gradientSyncBytes = gradientSync->bytesPerStep();
            char line[400];
            std::snprintf(line, sizeof line,
                "data parallel: %s; global batch %lld, %lld a rank; gradients all-reduced: %.3f MB a step "
                "in %zu buckets (%zu trainable tensors); training state not saved (a data-parallel run does "
                "not resume)",
                dp->group().describe().c_str(), static_cast<long long>(o.batchSize),
                static_cast<long long>(dp->localBatch(o.batchSize)),
                static_cast<double>(gradientSync->bytesPerStep()) / 1e6, gradientSync->bucketCount(),
                gradientSync->parameterCount());
            observer.onLog("info", line);
        }
        std::unique_ptr<LadderActivationCache> ladderCache; // LST's, on T5 or a decoder
        if (spec.method.method == "ladder" && spec.method.cache != "none")
            ladderCache = makeLadderCache(*method, trainBatcher, spec, autocast, observer, dp.get());
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
                const auto* t5 = dynamic_cast<const T5ForConditionalGenerationImpl*>(inputs.backbone.get());
                const auto* llama = asLlama(*inputs.backbone);
                if (task.info.isVisual())
                    throw Error(
                        "none for vision-and-language runs yet: the estimate does not price the visual "
                        "features (docs/VL.md; ladder bench memory --vl measures them)");
                if (!t5 && !llama)
                    throw Error("the estimate prices T5 and the Llama family, this backbone is "
                        + inputs.backbone->shape().architecture);
                auto input = estimateInputFor(spec, t5 ? t5->config() : T5Config {}, lengths);
                if (llama)
                    input.llama = llama->config(); // the joined causal sequence of these lengths
                if (dp) { // this rank's: its share of the batch, and the gradient buckets
                    input.batch = dp->localBatch(o.batchSize);
                    input.dataParallel = true;
                }
                const auto e = estimateTrainingMemory(input);
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

        auto gen = generationOptionsFor(*inputs.backbone, *inputs.tokenizer);
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
            if (m_state.path.empty() || dp)
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
                autocast, observer, dp.get());
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
        std::string rankFailure; // a data-parallel rank's failed backward, told at the next agreement
        // A data-parallel rank's failure as text for the agreement (every rank then fails with it).
        const auto failureOf = [&](const std::function<void()>& work) -> std::string {
            try {
                work();
                return {};
            } catch (const c10::OutOfMemoryError& e) {
                return "out of memory (peak allocated "
                    + std::to_string(meter->sample().peakAllocated / (1024 * 1024)) + " MiB"
                    + allocationOf(e.what()) + ")";
            } catch (const CollectiveError&) {
                throw;
            } catch (const std::exception& e) {
                std::string what = e.what();
                return what.substr(0, what.find('\n'));
            }
        };
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
                const bool cancelAsked = observer.cancelRequested();
                const bool faultHere = dp && distFault.rank == dp->rank() && distFault.step == step + 1;
                if (faultHere && distFault.kind == "exit")
                    std::_Exit(3); // as a crash: no flush, no record, no goodbye to the peers
                if (faultHere && distFault.kind == "nan")
                    nanStep = distFault.step;
                if (cancelAsked && !dp)
                    throw Cancelled {};
                const auto groupStart = i / accumulation * accumulation;
                const auto groupSize = std::min(accumulation, plan.size() - groupStart);
                const bool closesGroup = i + 1 == groupStart + groupSize;
                // A data-parallel rank takes its strided share of the global batch (possibly none).
                const auto mine = dp ? dp->share(plan[i]) : plan[i];
                at::Tensor loss;
                double lossValue = 0.0;
                std::int64_t labelTokens = 0, batchTokens = 0;
                const auto forward = [&] {
                    // The allocator's own error type and wording, as a real out-of-memory forward throws.
                    TORCH_CHECK_WITH(OutOfMemoryError, !(faultHere && distFault.kind == "oom"),
                        "tried to allocate 2.00 GiB (injected: LADDER_DIST_FAULT)");
                    const auto b = trainBatcher.makeBatch(mine);
                    const auto batch = onDevice(b.batch, device);
                    {
                        AutocastGuard amp(autocast, device.type());
                        loss = ladderCache ? forwardWithCache(*method, batch, b.indices, *ladderCache).loss
                                           : method->forward(batch).loss;
                    }
                    if (lossHook)
                        lossHook(loss, step + 1);
                    if (nanStep == step + 1)
                        loss = loss * std::numeric_limits<double>::quiet_NaN();
                    lossValue = loss.item<double>();
                    labelTokens = (b.batch.labels != -100).sum().item<std::int64_t>();
                    batchTokens = b.batch.attentionMask.sum().item<std::int64_t>() + labelTokens;
                };
                double microLoss = 0.0; // the micro-batch's loss: mean over its label tokens, all ranks'
                double lossScale = 0.0; // a data-parallel rank's factor on its loss (below)
                if (!dp) {
                    forward();
                    microLoss = lossValue;
                } else {
                    // Every rank learns every rank's outcome before any goes on: a failure or a cancel on one
                    // ends the run on all of them, instead of leaving them waiting in the next collective.
                    std::string failure = std::move(rankFailure);
                    rankFailure.clear();
                    if (failure.empty() && !mine.empty())
                        failure = failureOf(forward);
                    const auto a
                        = dp->agree(labelTokens > 0 ? lossValue * static_cast<double>(labelTokens) : 0.0,
                            labelTokens, batchTokens, cancelAsked, failure);
                    if (!a.failure.empty())
                        return fail(RunOutcome::Failed, "data-parallel run stopped: " + a.failure);
                    if (a.cancel)
                        throw Cancelled {};
                    microLoss = a.meanLoss();
                    batchTokens = static_cast<std::int64_t>(a.tokens);
                    // DDP averages gradients over the ranks; this rank's part of the global micro-batch's
                    // token mean is its sum over the global token count, times W.
                    lossScale = a.labelTokens > 0 ? static_cast<double>(labelTokens) * dp->world()
                            / a.labelTokens / static_cast<double>(groupSize)
                                                  : 0.0;
                }
                if (!std::isfinite(microLoss))
                    return fail(RunOutcome::Failed,
                        "loss became " + std::string(std::isnan(microLoss) ? "NaN" : "infinite") + " at step "
                            + std::to_string(step + 1)
                            + (nanStep == step + 1 ? " (injected: LADDER_FAULT_INJECT)"
                                                   : " (try a lower learning rate)"));
                if (!dp) {
                    (loss / static_cast<double>(groupSize)).backward();
                } else {
                    if (closesGroup)
                        gradientSync->arm(); // the group's gradients travel as this backward makes them
                    if (loss.defined() && labelTokens > 0)
                        rankFailure = failureOf([&] { (loss * lossScale).backward(); });
                    loss = at::Tensor();
                    if (closesGroup) {
                        // Also after a failed backward: the peers wait for this rank's buckets.
                        gradientSync->finish();
                        const auto a = dp->agree(0.0, 0, 0, false, rankFailure);
                        rankFailure.clear();
                        if (!a.failure.empty())
                            return fail(RunOutcome::Failed, "data-parallel run stopped: " + a.failure);
                    }
                }
                accumulatedLoss += microLoss;
                tokens += batchTokens;
                if (!closesGroup)
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
                *method, *testBatcher, test, task.info, tokenizer, gen, device, autocast, observer, dp.get());
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
    } catch (const CollectiveError& e) { // a peer died or hung: this rank cannot go on alone
        return fail(RunOutcome::Failed,
            std::string(
                "data-parallel run stopped: another rank stopped answering (it died, or hung past the "
                "collective timeout of ")
                + std::to_string(dp ? dp->group().timeout().count() / 1000 : 0) + " s): " + e.what());
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
