#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "model/T5Config.h"
#include "model/llama/LlamaConfig.h"
#include "train/MemoryEstimate.h"
#include "train/RunSpec.h"

namespace ladder {

class Batcher;
class Tokenizer;
struct TaskSplits;

// The padded shape of a run's longest training batch, as the trainer builds its batches: sources and
// targets tokenised with HF's truncation at max_source_length and at max_target_length (or, when that is 0,
// the task's longest tokenised label, else 128), each batch padded to its own longest row.
struct TrainingLengths {
    std::int64_t source = 0; // the longest tokenised training source (after truncation)
    std::int64_t target = 0; // the longest tokenised training target, with </s>
    std::size_t examples = 0; // training examples measured
    std::size_t truncatedSources = 0; // sources cut at max_source_length
};

// The lengths of a batcher's examples (tokenised already): what the trainer measures on its own batcher.
TrainingLengths lengthsOf(const Batcher& batcher);

// Tokenises the training split as the trainer would. Costs one pass of the tokenizer over the split
// (seconds for the GLUE tasks): off the GUI thread.
TrainingLengths trainingLengths(const RunSpec& spec, const TaskSplits& task, const Tokenizer& tokenizer);

// trainingLengths of the spec's task with the backbone folder's own tokenizer (model/TokenizerLoad.h); a
// decoder-only backbone (`causal`) reads the task's prompts (task.prompt_template, else the task's default),
// as the trainer writes them (train/TrainerInputs.cpp). Throws ladder::Error naming what could not be read.
TrainingLengths trainingLengthsFor(const RunSpec& spec, const std::string& folder, bool causal);

// The memory-estimate input of a run's training step at the given lengths: the spec's method, batch (one
// micro-batch; a data-parallel rank's share of it), dtype and device, on the backbone's config. This is what
// the workbench's form shows and what the trainer logs; the stored training peak is the same quantity
// measured (docs/STORE.md).
MemoryEstimateInput estimateInputFor(
    const RunSpec& spec, const T5Config& config, const TrainingLengths& lengths);
// The same on a decoder-only backbone: the step runs on the joined causal sequence of these lengths.
MemoryEstimateInput estimateInputFor(
    const RunSpec& spec, const LlamaConfig& config, const TrainingLengths& lengths);

// The estimate of a run spec as the trainer will log it, from files alone: the backbone's config.json
// ("demo": the built demo's; T5 or the Llama family), its tokenizer over the task's training split (a
// decoder's over the prompts; seconds for a GLUE task: off the GUI thread), no weights. What the queue places
// runs by (train/DevicePlacement.h). Throws ladder::Error naming what could not be read.
MemoryEstimate estimateRunSpec(const RunSpec& spec, std::uint64_t cudaWorkspaceBytes = 0);

} // namespace ladder
