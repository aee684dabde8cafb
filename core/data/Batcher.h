#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/Seq2SeqBatch.h"
#include "data/Task.h"
#include "data/VisualFeatures.h"

namespace ladder {

class Tokenizer;

struct BatcherOptions {
    int batchSize = 32;
    // Token limits, </s> included: longer sources and targets are cut from the right and keep </s> last
    // (HF's tokenizer(..., truncation=True, max_length=...)). <= 0: no limit.
    int maxSourceLength = 128;
    int maxTargetLength = 128;
    // A new example order every epoch, from (seed, epoch) alone.
    bool shuffle = false;
    // Length bucketing: the (shuffled) order is cut into chunks of bucketChunk * batchSize examples,
    // each chunk is sorted by source length (longest first, ties in order), cut into batches, and with
    // shuffle on the batches of the epoch are shuffled again, so similar lengths share a batch and less
    // padding is computed. Deterministic for a given seed and epoch.
    bool bucketByLength = false;
    int bucketChunk = 50;
    // Drop the last, smaller batch of an epoch.
    bool dropLast = false;
    std::uint64_t seed = 0;
    // Vision-and-language (docs/VL.md): the feature file the examples' images (TextExample::images) are read
    // from, one image at a time as batches are made, and the visual tokens per image (0: the file's boxes;
    // fewer: VisualFeatureFile::reduceTokens). Null: a text task (batches carry no VisualInput).
    std::shared_ptr<const VisualFeatureFile> visualFeatures;
    std::int64_t visualTokens = 0;
};

// A vision-and-language task's feature file and visual tokens (TaskInfo::visualFeatures, visualTokens) into
// `options` (the file opened once, its header checked); nothing for a text task.
void setVisualOptions(BatcherOptions& options, const TaskInfo& info);

// One padded batch and the examples it holds, in row order (indices into the Batcher's examples), so
// generated predictions can be put back in example order for evaluation.
struct ExampleBatch {
    Seq2SeqBatch batch;
    std::vector<std::size_t> indices;
};

// Tokenises a split once (the backbone's Tokenizer, HF truncation; a causal LM's targets through
// Tokenizer::encodeTarget) and serves it as padded Seq2SeqBatch batches:
// inputIds (batch, longest source in the batch) int64 padded with the tokenizer's pad id (0),
// attentionMask (same shape) int64 0/1, labels (batch, longest target in the batch) int64 padded with
// -100. Dynamic padding: each batch is as long as its longest sequence. With a feature file, each batch also
// carries its examples' images (Seq2SeqBatch::visual): images x tokens visual positions per row, as many
// images as the batch's widest example (NLVR2: two), the missing ones masked. CPU tensors; move them
// yourself. Immutable after construction; const methods are thread-safe.
class Batcher {
public:
    static constexpr std::int64_t kIgnoreIndex = -100;

    // Throws ladder::Error for an option out of range (batch size < 1, bucketChunk < 1).
    Batcher(const Tokenizer& tokenizer, const std::vector<TextExample>& examples, BatcherOptions options);

    std::size_t exampleCount() const { return m_sources.size(); }
    std::size_t batchCount() const; // batches per epoch
    const BatcherOptions& options() const { return m_options; }

    // The example indices of each batch of `epoch`, in the order they are served.
    std::vector<std::vector<std::size_t>> plan(int epoch) const;
    // The padded tensors of the examples `indices` (in that order). Throws for an index out of range.
    ExampleBatch makeBatch(const std::vector<std::size_t>& indices) const;
    // All batches of `epoch` (plan + makeBatch).
    std::vector<ExampleBatch> epoch(int epoch) const;
    // The batches of `epoch` one by one, for Method::initialize's BatchSource. Holds a pointer to this
    // Batcher: keep the Batcher alive while the source is used.
    BatchSource source(int epoch) const;

    // Token ids of example i, truncated, </s> last.
    const std::vector<std::int64_t>& sourceIds(std::size_t i) const { return m_sources.at(i); }
    const std::vector<std::int64_t>& targetIds(std::size_t i) const { return m_targets.at(i); }
    // Number of ids truncation removed, over all examples (sources, targets).
    std::size_t truncatedSources() const { return m_truncatedSources; }
    std::size_t truncatedTargets() const { return m_truncatedTargets; }

    // The reference's target length for a task: the longest tokenised label (with eos) when the task
    // lists its labels (GLUE: 2 for "0"/"1" with T5's vocabulary), else `fallback`.
    static int targetLengthFor(const TaskInfo& info, const Tokenizer& tokenizer, int fallback);

private:
    VisualInput makeVisual(const std::vector<std::size_t>& indices) const;

    BatcherOptions m_options;
    std::vector<std::vector<std::int64_t>> m_sources;
    std::vector<std::vector<std::int64_t>> m_targets;
    std::vector<std::vector<std::string>> m_images; // per example, with a feature file
    std::size_t m_truncatedSources = 0;
    std::size_t m_truncatedTargets = 0;
    std::int64_t m_padId = 0;
};

} // namespace ladder
