#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "model/BackboneShape.h"
#include "model/VisualInput.h"

namespace ladder {

// The seam between model/ and the code above it (docs/ARCHITECTURE.md, "Adding a backbone"): what LST
// (peft/Ladder), its activation cache (train/LadderActivationCache) and generation ask of "a backbone".
// T5ForConditionalGenerationImpl (model/T5Model.h) implements it; a second architecture is a new folder
// under model/ whose top-level module implements it as well.
//
// What stays outside the seam, on purpose:
// - The in-place methods (BitFit, Adapters, LoRA, prompt tuning: peft/Baselines.cpp) edit T5's modules
//   directly (its T5Linear projections, layer norms, feed-forward layers). A second architecture brings
//   its own in-place edits; Method (peft/Method.h) still holds a T5ForConditionalGeneration.
// - LST's side network is built of T5 blocks sized from the backbone's T5Config (LadderSideOptions), and
//   its pruning initialisation (peft/LadderInit) walks T5's parameter names: a second architecture gives
//   LST a side configuration and a pruning walk of its own. What the side network reads while running
//   (embeddings, block outputs, the LM head) goes through this interface.
// - The memory estimator (train/MemoryEstimate*) prices T5's operations one by one from a T5Config. A
//   second architecture adds its config to MemoryEstimateInput, its parameter list to the replay
//   (MemoryEstimateParams.cpp) and its block forward to MemoryEstimateOps.cpp, beside T5's.

// Keys and values of one attention layer during incremental decoding, shaped (batch, heads, time, head size).
struct AttentionCache {
    at::Tensor key;
    at::Tensor value;
};

// The caches of one decoder block: self-attention, and cross-attention (left empty without an encoder).
struct BlockCache {
    AttentionCache self;
    AttentionCache cross;
};

// A decoder's key/value cache (Backbone::makeCache()): one BlockCache per decoder block.
struct DecoderCache {
    std::vector<BlockCache> blocks;
    std::int64_t pastLength = 0;
    // Reorders the batch dimension of every cached tensor (beam search).
    void reorder(const at::Tensor& batchIndices);
};

// While alive on this thread, the block outputs a stack keeps (keepBlockOutputs of runEncoder/runDecoder) are
// converted to `dtype` as each block finishes, so the full-precision copy of one kept output at most exists
// at a time (LST's ladder_dtype bf16). The stack's own computation is unchanged.
class KeptBlockOutputDtype {
public:
    explicit KeptBlockOutputDtype(std::optional<at::ScalarType> dtype);
    ~KeptBlockOutputDtype();
    KeptBlockOutputDtype(const KeptBlockOutputDtype&) = delete;
    KeptBlockOutputDtype& operator=(const KeptBlockOutputDtype&) = delete;
    static std::optional<at::ScalarType> current();

private:
    std::optional<at::ScalarType> m_previous;
};

// Per-stack results. blockOutputs[i] is block i's output before any final norm (the LST ladder input).
struct StackOutput {
    at::Tensor embeddings; // after dropout
    std::vector<at::Tensor> blockOutputs; // one entry per block (undefined where not kept)
    at::Tensor lastHiddenState; // after the stack's final norm and dropout

    // HF's hidden_states tuple: embeddings, outputs of blocks 0..n-2, then the final normed output.
    std::vector<at::Tensor> hfHiddenStates() const;
};

// A sequence-to-sequence model seen one decoding step at a time, so that the same greedy and beam
// search (model/Generation.h) drive the plain backbone and backbone + side network with both key/value
// caches.
class Seq2SeqStepper {
public:
    virtual ~Seq2SeqStepper() = default;
    // Encodes the source once; every example is repeated `copies` times (one row per beam).
    virtual void begin(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t copies) = 0;
    // Feeds one token per row (rows, 1); returns the next-token logits (rows, vocab) in float32.
    virtual at::Tensor step(const at::Tensor& tokens) = 0;
    // Keeps row rowIndices[r] as new row r in every cache (beam search).
    virtual void reorder(const at::Tensor& rowIndices) = 0;
    // The token each of the `rows` rows (after begin(): examples x copies) feeds to its first step(), int64
    // (rows) on any device. Encoder-decoder: the decoder start token (the default). A causal stepper: each
    // row's last prompt token, the rest of the prompt having gone into the cache in begin().
    virtual at::Tensor startTokens(std::int64_t rows, std::int64_t decoderStartTokenId) const;
    // The images of the next begin()'s examples (vision-and-language, docs/VL.md), one row per example.
    // The default takes none: ladder::Error when `visual` is defined.
    virtual void setVisual(const VisualInput& visual);
};

// A decoder-only backbone is expressed as shape().encoderBlocks == 0: runEncoder() is never called (it
// throws), the source goes through runDecoder() ahead of the target with encoderHidden undefined and its
// padding mask in selfAttentionMask, and its BlockCaches leave `cross` empty.
class Backbone {
public:
    virtual ~Backbone() = default;

    // The sizes (LST's layouts, the activation cache, reports).
    virtual BackboneShape shape() const = 0;

    // Token ids (batch, length) -> input embeddings (batch, length, hiddenSize), before any dropout: what
    // the stacks consume and what LST's Down_emb reads (T5: the shared embedding).
    virtual at::Tensor embed(const at::Tensor& ids) = 0;

    // The encoder stack over embed()'s output. attentionMask: (batch, length) of 0/1, undefined = all ones.
    // keepBlockOutputs: the blocks whose outputs StackOutput::blockOutputs returns (the others are released
    // as soon as the next block has run); nullptr keeps all.
    virtual StackOutput runEncoder(const at::Tensor& embeddings, const at::Tensor& attentionMask,
        const std::vector<std::int64_t>* keepBlockOutputs)
        = 0;
    // The causal decoder stack over embed()'s output. encoderHidden/encoderMask feed cross-attention.
    // cache (optional): incremental decoding, appended to on every call (makeCache()). keepBlockOutputs:
    // as for runEncoder. selfAttentionMask: a decoder-only model's padding mask, (batch, past + length) of
    // 0/1 over the cached and the current positions (undefined = all ones); T5 requires it undefined (its
    // decoder input is never padded on the left, and padded targets are ignored by the loss).
    virtual StackOutput runDecoder(const at::Tensor& embeddings, const at::Tensor& encoderHidden,
        const at::Tensor& encoderMask, DecoderCache* cache, const std::vector<std::int64_t>* keepBlockOutputs,
        const at::Tensor& selfAttentionMask)
        = 0;
    // The decoder's final hidden states (batch, length, hiddenSize) -> logits (batch, length, vocab): the LM
    // head with the architecture's own scaling (T5: d_model^-0.5 first when the embeddings are tied).
    virtual at::Tensor lmLogits(const at::Tensor& decoderHidden) = 0;
    // Teacher forcing: labels (-100 = ignored) -> the decoder's input ids (T5: HF's _shift_right, the
    // decoder start token first, -100 replaced by pad).
    virtual at::Tensor shiftRight(const at::Tensor& labels) const = 0;
    // An empty key/value cache for runDecoder(), one BlockCache per decoder block.
    virtual DecoderCache makeCache() const = 0;
    // generate() for the backbone alone (model/Generation.h). The backbone must be owned by a module holder
    // (a shared_ptr): the stepper shares it.
    virtual std::unique_ptr<Seq2SeqStepper> makeStepper() = 0;

    // What the function it computes depends on, for the LST activation cache's key: the config as JSON
    // text (equal texts mean the same architecture and shapes), and every parameter by name, in a fixed
    // order (registration order).
    virtual std::string configJson() const = 0;
    virtual std::vector<std::pair<std::string, at::Tensor>> namedWeights() const = 0;
    // How the frozen weights are stored: "fp32" (as loaded), else e.g. "bf16", "int8", "int4 g64" (issue 18,
    // docs/PERFORMANCE.md "Frozen backbone storage"). Part of the activation cache's key.
    virtual std::string weightStorage() const { return "fp32"; }

    // The training loss on lmLogits(): mean token cross-entropy in float32 over labels != -100.
    static at::Tensor crossEntropy(const at::Tensor& logits, const at::Tensor& labels);
};

} // namespace ladder
