#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "train/MemoryMeter.h"
#include "train/RunSpec.h"

namespace at {
class Tensor;
}

namespace ladder {

struct TrainerInputs; // train/TrainerInputs.h: what a run trains on
class DistributedGroup; // dist/DistributedGroup.h

// One optimizer step, as the trainer reports it.
struct TrainStep {
    std::int64_t step = 0; // 1-based optimizer step
    std::int64_t totalSteps = 0;
    std::int64_t epoch = 0; // 0-based
    double loss = 0.0; // mean over the accumulated micro-batches
    double learningRate = 0.0;
    MemorySample memory; // now, and training's peak so far (the steps only, as RunSummary's)
    double tokensPerSecond = 0.0; // non-padding source + target tokens over this step's wall time
    double elapsedSeconds = 0.0;
};

// One evaluation by generation.
struct TrainEval {
    std::int64_t step = 0;
    std::int64_t epoch = 0;
    std::string split; // "validation" or "test"
    std::map<std::string, double> values;
    std::string mainName;
    double main = 0.0;
    std::size_t examples = 0;
    std::size_t invalid = 0; // predictions that did not parse as a label
    double seconds = 0.0;
    // The first kStoredPredictions examples of the split, in split order: what was generated for each.
    struct Prediction {
        std::string id;
        std::string target; // the reference text the model was trained to generate
        std::string prediction; // the generated text, decoded without special tokens
    };
    static constexpr std::size_t kStoredPredictions = 200;
    std::vector<Prediction> predictions;
};

enum class RunOutcome { Finished, Failed, Cancelled };
const char* toString(RunOutcome status);

// What a run ends with; also what the store keeps as final figures.
struct RunSummary {
    RunOutcome status = RunOutcome::Failed;
    std::string message; // failure or cancellation reason
    std::string mainMetric;
    double bestValidation = std::numeric_limits<double>::quiet_NaN();
    std::int64_t bestStep = 0;
    double lastValidation = std::numeric_limits<double>::quiet_NaN();
    double testMetric = std::numeric_limits<double>::quiet_NaN();
    std::map<std::string, double> testValues;
    // Peaks of live bytes (absolute, weights included) of the run's three phases (docs/STORE.md):
    // training's: the training steps only (batches, forward, backward, clipping, the optimizer step; LST's
    // activation cache, filled by the first epoch's forwards), never the evaluations between them;
    std::uint64_t peakAllocatedBytes = 0;
    std::uint64_t peakReservedBytes = 0;
    // the method's construction and initialisation (LST's Fisher pass runs a whole backbone backward);
    std::uint64_t initPeakAllocatedBytes = 0;
    // the highest of every evaluation by generation (validation and test).
    std::uint64_t evalPeakAllocatedBytes = 0;
    std::uint64_t weightBytes = 0;
    std::uint64_t gradientBytes = 0;
    std::uint64_t optimizerBytes = 0;
    std::int64_t trainableParams = 0;
    std::int64_t totalParams = 0; // everything that takes memory
    std::int64_t backboneParams = 0; // the paper's denominator
    std::int64_t steps = 0;
    double wallSeconds = 0.0;
    double tokensPerSecond = 0.0;
    std::string device;
    std::string meterLabel;
    // A data-parallel run (the peaks above are this rank's): its ranks, and what each step all-reduces.
    int worldSize = 1;
    std::uint64_t gradientSyncBytes = 0;
};

// Receives the trainer's events on the training thread; cancelRequested() is polled every step.
class TrainerObserver {
public:
    virtual ~TrainerObserver() = default;
    virtual void onStarted(const RunSummary& staticFigures) { }
    virtual void onStep(const TrainStep& step) { }
    virtual void onEval(const TrainEval& eval) { }
    virtual void onLog(const std::string& level, const std::string& message) { }
    // Progress of the method's initialisation before the first step (LST's Fisher pass: `what` is "Fisher
    // initialisation", done of total examples), after every example; cancelRequested() is polled there too.
    virtual void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) { }
    // The best checkpoint has been restored into `method` (before the test evaluation): save it here.
    virtual void onBestModel(const class Method& method) { }
    // The training state of `step` is about to be saved: write out what is pending (the metric points up
    // to it), so that a run resumed from that state finds its history complete.
    virtual void onStateSaving(std::int64_t step) { }
    virtual bool cancelRequested() { return false; }
};

// Trains one run: AdamW, linear warm-up and decay, clipping, accumulation, evaluation by generation on
// the validation split every epoch (or every N steps), keeps the best by the validation metric and
// evaluates it on the test split at the end. Never throws: a NaN loss, an out-of-memory error or any
// other failure ends the run as Failed with a message; cancellation as Cancelled.
class Trainer {
public:
    explicit Trainer(RunSpec spec)
        : m_spec(std::move(spec))
    {
    }
    RunSummary run(TrainerObserver& observer);
    RunSummary run(TrainerInputs inputs, TrainerObserver& observer);

    // Saving the training state (train/TrainState.h) every spec.training.saveStateEverySteps steps and
    // after every evaluation, and resuming from one. A state that cannot be saved (a full disk) fails the
    // run with the reason, naming the file.
    struct StateOptions {
        std::string path; // where the state is written; empty: never saved
        std::int64_t runId = 0; // whose state it is (written into it)
        std::string runCreatedAt;
        std::string specHash;
        // Continue from the state at `path`: loaded once the method is built (outside every memory peak),
        // applied, and freed before the first step. It must be this run's (runId, runCreatedAt, specHash).
        bool resume = false;
    };
    void setStateOptions(StateOptions options) { m_state = std::move(options); }

    // Data parallelism (docs/SCALING.md): this process is one rank of `group`. Each optimizer step takes
    // the spec's global batch: this rank its strided share, gradients averaged across the ranks (only the
    // trainable parameters travel), the losses and the evaluation's predictions gathered, so the run's
    // figures equal one process's. Every rank agrees each micro-batch on a NaN loss, an out-of-memory error
    // or a cancel, so none is left waiting. Its training state is not saved.
    void setDistributed(std::shared_ptr<DistributedGroup> group) { m_group = std::move(group); }

    // Test hook: called with each micro-batch loss before backward (e.g. to inject a NaN).
    std::function<void(at::Tensor& loss, std::int64_t step)> lossHook;

private:
    RunSpec m_spec;
    StateOptions m_state;
    std::shared_ptr<DistributedGroup> m_group;
};

} // namespace ladder
