#pragma once

// The trainer's pieces that stand alone (train/Trainer.cpp runs the loop): fault injection, the schedule,
// which parameters decay, evaluation by generation (sharded in a data-parallel run) and the LST activation
// cache's construction. Internal to core/train.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/Task.h"
#include "train/Trainer.h"

namespace c10 {
struct Device;
}

namespace ladder {

class Batcher;
class DataParallel;
class LadderActivationCache;
class LadderMethod;
class Method;
class Tokenizer;
struct GenerationOptions;
class BackboneModelImpl;

namespace trainer_detail {

using Clock = std::chrono::steady_clock;

// Thrown where the observer asked to stop; Trainer::run ends the run as cancelled.
struct Cancelled { };

// LADDER_FAULT_INJECT=nan@N (docs/GPU.md, "Fault injection"): the training loss becomes NaN at optimizer
// step N, as a diverging run's would. The step, or 0 when unset; anything else is an Error naming it.
std::int64_t injectedNanStep();

// LADDER_DIST_FAULT (docs/SCALING.md): "exit@N rank=R" ends rank R's process (exit code 3, nothing
// recorded) as optimizer step N begins, as a crashed rank would; "nan@N rank=R" makes rank R's loss alone
// NaN at step N; "oom@N rank=R" makes rank R's forward at step N throw LibTorch's out-of-memory error.
// Unset: kind "". Anything else is an Error naming the variable.
struct DistFault {
    std::string kind; // "", "exit", "nan" or "oom"
    std::int64_t step = 0;
    int rank = -1;
};
DistFault injectedDistFault();

// ", tried to allocate 2.00 GiB": the size an out-of-memory error names, or "".
std::string allocationOf(const std::string& what);

double secondsSince(Clock::time_point t0);

// HF get_linear_schedule_with_warmup: linear warm-up to the base rate, then linear decay to 0.
double linearSchedule(std::int64_t step, std::int64_t warmup, std::int64_t total);

// Whether weight decay applies to a trainable parameter (HF Trainer's rule, plus LST's gates).
bool decays(const std::string& name);

// Generates predictions for every example of `batcher` and scores them against `examples`. In a
// data-parallel run `batcher` holds this rank's share of `examples` (DataParallel::share) and the
// predictions are gathered before scoring, so that every rank computes the single-process metric; a cancel
// then waits for the next step's agreement (a rank leaving mid-evaluation would leave the others waiting).
TrainEval evaluateSplit(Method& method, const Batcher& batcher, const std::vector<TextExample>& examples,
    const TaskInfo& info, const Tokenizer& tokenizer, const GenerationOptions& gen, const c10::Device& device,
    bool autocast, TrainerObserver& observer, DataParallel* dp = nullptr);

// The ladder activation cache of an LST run (method option cache ram|disk): its cost is logged before it is
// allocated. A data-parallel rank's disk cache is a folder of its own.
std::unique_ptr<LadderActivationCache> makeLadderCache(Method& method, const Batcher& batcher,
    const RunSpec& spec, bool autocast, TrainerObserver& observer, const DataParallel* dp);

std::vector<TextExample> firstN(const std::vector<TextExample>& v, std::int64_t n);

} // namespace trainer_detail
// HF generate()'s defaults for a run's evaluation on `backbone`: T5's from its config (decoder start, eos,
// pad); a decoder-only backbone's from the tokenizer the targets were encoded with (its eos ends a target,
// Tokenizer::encodeTarget), no decoder start token (the prompt's last token starts, model/CausalJoin.h).
GenerationOptions generationOptionsFor(const BackboneModelImpl& backbone, const Tokenizer& tokenizer);

} // namespace ladder
