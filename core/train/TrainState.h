#pragma once

// A run's full training state, saved so that an interrupted or failed run continues where it stopped
// (`ladder train --resume RUN_ID`, Resume in the workbench; docs/RELIABILITY.md, "Resume").
//
// One safetensors file per run, "<store file>.files/state/run-<id>.state" (ResultsStore::statePathFor),
// written through a temporary file and a rename (writeSafetensors), so a process killed mid-write leaves
// the previous state whole. Tensors:
//   "param/<name>"       the trainable weights (fp32, the method's names)
//   "exp_avg/<name>"     AdamW's first moment, for every parameter the optimizer has stepped
//   "exp_avg_sq/<name>"  AdamW's second moment
//   "best/<name>"        the best checkpoint's weights so far (absent before the first evaluation)
//   "rng/cpu"            the CPU generator's state (dropout); "rng/cuda" the run's CUDA generator's
// and "__metadata__" {"ladder_train_state": JSON}: the format version, the run it belongs to (id, creation
// time, spec hash), the position (optimizer step, epoch, next batch of the epoch's plan), AdamW's step of
// each parameter, the best metric so far and its step, the last evaluated step, and the figures a summary
// accumulates (training's peaks, tokens and step seconds).
//
// Reading treats the file as a stranger's (readSafetensors validates the container); every field is
// checked, and errors name the file and the field.

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include "model/Safetensors.h"
#include "train/TrainStateHeader.h"

namespace ladder {

struct TrainState {
    static constexpr int kVersion = 1;

    // Whose state this is: a state file is used only by the run that wrote it.
    std::int64_t runId = 0;
    std::string runCreatedAt; // the run's created_at in the store
    std::string specHash; // runSpecHash() of the run's spec

    // Position: `step` optimizer steps are done; training continues with batch `nextBatch` of epoch
    // `epoch`'s plan (Batcher::plan(epoch), a function of the seed and the epoch). nextBatch may equal the
    // plan's size: the epoch's batches are done and its end-of-epoch evaluation is not.
    std::int64_t step = 0;
    std::int64_t totalSteps = 0;
    std::int64_t epoch = 0;
    std::int64_t nextBatch = 0;
    std::int64_t lastEvalStep = -1;

    // The best validation so far (bestScore -inf and no "best/" tensors before the first finite one).
    double bestScore = -std::numeric_limits<double>::infinity();
    std::int64_t bestStep = 0;
    double lastValidation = std::numeric_limits<double>::quiet_NaN();

    // Figures the run's summary accumulates over its steps.
    std::uint64_t peakAllocatedBytes = 0;
    std::uint64_t peakReservedBytes = 0;
    std::uint64_t initPeakAllocatedBytes = 0;
    std::uint64_t evalPeakAllocatedBytes = 0;
    std::int64_t runTokens = 0;
    double runStepSeconds = 0.0;
    double elapsedSeconds = 0.0; // the run's wall time until the save

    TensorMap params; // name -> weight
    TensorMap expAvg; // name -> AdamW first moment
    TensorMap expAvgSq; // name -> AdamW second moment
    std::map<std::string, std::int64_t> adamSteps; // name -> AdamW's step count for that parameter
    TensorMap best; // name -> best checkpoint's weight
    at::Tensor cpuRng; // uint8
    at::Tensor cudaRng; // uint8; undefined on the CPU
};

// Writes `state` to `path` atomically (temporary file, fsync, rename). Creates the folder. Throws Error
// naming the path ("no space left on device" included) when it cannot.
void saveTrainState(const std::string& path, const TrainState& state);

// Reads and checks a state file: the container (readSafetensors), the metadata's fields and version,
// every "exp_avg"/"exp_avg_sq"/"best" tensor matching a "param" tensor's shape. Throws Error naming the
// file and the field.
TrainState loadTrainState(const std::string& path);

} // namespace ladder
