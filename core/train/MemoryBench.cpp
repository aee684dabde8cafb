#include "train/MemoryBench.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include "device/Devices.h"
#include "model/T5Checkpoint.h"
#include "model/T5Model.h"
#include "model/T5Quantization.h"
#include "model/llama/LlamaQuantization.h"
#include "peft/Method.h"
#include "train/Autocast.h"
#include "train/MemoryMeter.h"
#include "util/Error.h"

namespace ladder {

MemoryBenchResult measureTrainingMemory(const MemoryBenchSpec& spec, const MethodOptions& given,
    const std::function<void(const std::string&)>& progress)
{
    // Training memory does not depend on LST's initial side weights, and the bench has no task data for a
    // Fisher pass: LST is built with init random (r.options says so).
    const auto optionsIn = withoutFisherInit(given);
    if (spec.steps < 2)
        throw Error("memory bench: at least 2 steps are needed (AdamW allocates its state inside step 1)");
    if (spec.dtype != "fp32" && spec.dtype != "bf16")
        throw Error("memory bench: dtype must be fp32 or bf16 (mixed precision), got '" + spec.dtype + "'");
    if (spec.inferenceRepeats < 1)
        throw Error("memory bench: at least 1 timed inference forward is needed");
    const bool autocast = spec.dtype == "bf16";
    const auto synchronize = [&] {
        if (spec.device.is_cuda())
            (void)at::zeros({ 1 }, at::TensorOptions().device(spec.device)).cpu(); // waits for the stream
    };
    MemoryMeter meter(spec.device);
    const auto baseline = meter.sample().allocated; // whatever the process held before this method
    meter.resetPeak();

    MemoryBenchResult r;
    const bool visual = spec.visualDim > 0;
    if (visual && (spec.llama || spec.visualTokens < 1))
        throw Error("memory bench: vision-and-language needs a T5 shape and at least 1 visual token");
    MethodOptions options = optionsIn;
    if (visual)
        options.visualDim = spec.visualDim;
    if (!visual) {
        MemoryEstimateInput in;
        in.config = spec.config;
        in.llama = spec.llama;
        in.method = options;
        in.batch = spec.batch;
        in.srcLen = spec.sourceLength;
        in.tgtLen = spec.targetLength;
        in.device = spec.device.is_cuda() ? "cuda" : "cpu";
        in.dtype = spec.dtype;
        if (spec.device.is_cuda())
            in.cudaWorkspaceBytes = cuda::cublasWorkspaceBytes(); // this device's figure (0: none present)
        r.estimate = estimateTrainingMemory(in);
    }
    r.method = options.method;
    r.dtype = spec.dtype;
    r.options = options;
    r.meterLabel = meter.label();
    {
        at::manual_seed(static_cast<std::uint64_t>(spec.seed));
        BackboneModel backbone;
        if (spec.llama)
            backbone = LlamaForCausalLM(*spec.llama).ptr();
        else
            backbone = T5ForConditionalGeneration(spec.config).ptr();
        backbone->to(spec.device);
        auto method = createMethod(backbone, options);
        method->train(true);
        auto params = method->trainableParameters();
        r.totalParams = method->totalParameterCount();
        r.backboneParams = method->backboneParameterCount();
        r.trainableParams = method->trainableParameterCount();
        // The backbone module's weights as held (its matrices may be stored as bf16/int8/int4 by
        // backbone_dtype; the modules methods add in place are in it, fp32), and what a method keeps outside
        // it (LST's side network), fp32.
        const auto* llama = asLlama(*backbone);
        const auto backboneBytes = llama
            ? backboneWeightBytes(*llama)
            : backboneWeightBytes(dynamic_cast<const T5ForConditionalGenerationImpl&>(*backbone));
        r.weightBytes = static_cast<std::uint64_t>(backboneBytes)
            + static_cast<std::uint64_t>(r.totalParams - countParameters(*backbone)) * 4;
        r.gradientBytes = static_cast<std::uint64_t>(r.trainableParams) * 4;
        // exp_avg and exp_avg_sq, plus LibTorch's per-parameter step counter (a scalar double tensor).
        r.optimizerBytes = static_cast<std::uint64_t>(r.trainableParams) * 8 + params.size() * 8;
        r.staticBytes = r.weightBytes + r.gradientBytes + r.optimizerBytes;

        torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(1e-4).weight_decay(0.0));
        // The peak is the training steps' own: building (and quantising) the model is not a step.
        meter.resetPeak();
        const auto longOpts = at::TensorOptions().dtype(at::kLong).device(spec.device);
        const auto vocab = spec.llama ? spec.llama->vocabSize : spec.config.vocabSize;
        Seq2SeqBatch batch;
        batch.inputIds = at::randint(2, vocab, { spec.batch, spec.sourceLength }, longOpts);
        batch.attentionMask = at::ones({ spec.batch, spec.sourceLength }, longOpts);
        batch.labels = at::randint(2, vocab, { spec.batch, spec.targetLength }, longOpts);
        if (visual) {
            const auto floatOpts = at::TensorOptions().dtype(at::kFloat).device(spec.device);
            batch.visual.tokensPerImage = spec.visualTokens;
            batch.visual.features = at::randn({ spec.batch, spec.visualTokens, spec.visualDim }, floatOpts);
            batch.visual.boxes = at::zeros({ spec.batch, spec.visualTokens, 4 }, floatOpts);
            batch.visual.imageOrder = at::zeros({ spec.batch, spec.visualTokens }, longOpts);
            batch.visual.mask = at::ones({ spec.batch, spec.visualTokens }, longOpts);
        }

        double timed = 0.0;
        for (std::int64_t step = 1; step <= spec.steps; ++step) {
            if (progress)
                progress(
                    options.method + ": step " + std::to_string(step) + "/" + std::to_string(spec.steps));
            const auto t0 = std::chrono::steady_clock::now();
            optimizer.zero_grad(true);
            at::Tensor loss;
            {
                AutocastGuard amp(autocast, spec.device.type());
                loss = method->forward(batch).loss;
            }
            loss.backward();
            optimizer.step();
            if (!std::isfinite(loss.item<double>()))
                throw Error("memory bench: " + options.method + " produced a non-finite loss");
            synchronize(); // the optimizer's kernels too, so that a CUDA step's time is the step's
            const auto s = meter.sample();
            r.stepPeaks.push_back(s.peakAllocated > baseline ? s.peakAllocated - baseline : 0);
            meter.resetPeak();
            const double seconds
                = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (step >= 2)
                timed += seconds;
        }
        r.secondsPerStep = timed / static_cast<double>(spec.steps - 1);

        // Inference on the same batch: no graph, dropout off.
        optimizer.zero_grad(true);
        method->train(false);
        {
            at::NoGradGuard noGrad;
            AutocastGuard amp(autocast, spec.device.type());
            const auto before = meter.sample().allocated;
            meter.resetPeak();
            (void)method->forward(batch);
            const auto peak = meter.sample().peakAllocated;
            r.inferencePeakBytes = r.weightBytes + (peak > before ? peak - before : 0);
            synchronize();
            const auto t0 = std::chrono::steady_clock::now();
            for (std::int64_t i = 0; i < spec.inferenceRepeats; ++i)
                (void)method->forward(batch);
            synchronize();
            r.inferenceSecondsPerBatch
                = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                / static_cast<double>(spec.inferenceRepeats);
            r.inferenceExamplesPerSecond = r.inferenceSecondsPerBatch > 0
                ? static_cast<double>(spec.batch) / r.inferenceSecondsPerBatch
                : 0.0;
        }
        for (auto p : r.stepPeaks)
            r.peakBytes = std::max(r.peakBytes, p);
        r.peakReservedBytes = meter.sample().peakReserved;
    }
    return r;
}

} // namespace ladder
