#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peft/LadderSideNetwork.h"
#include "peft/Method.h"

namespace ladder {

// Ladder Side-Tuning (docs/LST.md, docs/LST.md): a side network beside the frozen backbone.
std::unique_ptr<Method> createLadderMethod(T5ForConditionalGeneration backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks = {});

// The side network options an LST method uses for `config` (keep lists resolved per stack, validated).
// It takes the whole T5Config, not the BackboneShape: the side network is T5 blocks derived from it.
// Errors name the field: "ladder: field keep: layer 4 does not exist in the decoder (2 layers, ...)".
LadderSideOptions ladderSideOptions(const T5Config& config, const MethodOptions& options);

// What the backbone encoder hands to the side network and the decoders: computed without gradients.
struct LadderEncoderState {
    at::Tensor attentionMask; // (batch, source length) or undefined
    // Vision-and-language (docs/VL.md): the side encoder's mask over text then visual positions (what the
    // side decoder's cross-attention reads); undefined on a text run (attentionMask serves both).
    at::Tensor sideAttentionMask;
    at::Tensor backboneHidden; // backbone encoder output (after its final norm); undefined without backbone
    at::Tensor sideHidden; // side encoder output (d/r); undefined without a side encoder

    // Keeps row rowIndices[r] as row r (beam expansion and reordering).
    void select(const at::Tensor& rowIndices);
};

// What the frozen backbone hands to the side network for one batch: the outputs of the kept backbone
// blocks, indexed by layer (undefined elsewhere), and the backbone decoder's final output when the side
// network merges it. Computed without gradients; what the ladder activation cache stores per example
// (train/LadderActivationCache.h, docs/PERFORMANCE.md).
struct LadderBackboneOutputs {
    std::vector<at::Tensor> encoder; // (batch, source length, d) per kept encoder layer
    std::vector<at::Tensor> decoder; // (batch, target length, d) per kept decoder layer
    at::Tensor decoderFinal; // (batch, target length, d) or undefined
};

// Backbone + side network, shared between the method and its steppers. It reads the backbone only through
// the Backbone interface (model/Backbone.h).
class LadderModel {
public:
    LadderModel(std::shared_ptr<Backbone> backbone, LadderSideNetwork side);

    // The backbone encoder under NoGradGuard (when the ablation needs it), then the side encoder.
    // cached: take the backbone's outputs from there instead of running it (the activation cache);
    // record: also hand out what the backbone computed.
    // visualEmbeds/visualMask (vision-and-language, docs/VL.md): (batch, V, d_model) and (batch, V) 0/1. The
    // backbone sees the text only; the side encoder reads the text embeddings then the visual ones, and the
    // ladders reach its text positions only.
    LadderEncoderState encode(const at::Tensor& inputIds, const at::Tensor& attentionMask,
        const LadderBackboneOutputs* cached = nullptr, LadderBackboneOutputs* record = nullptr,
        const at::Tensor& visualEmbeds = {}, const at::Tensor& visualMask = {});
    // Backbone decoder under NoGradGuard, side decoder with grad, head; returns the d_model hidden states
    // that the backbone's LM head (lmLogits) turns into logits. With caches: incremental decoding.
    // cached/record: as for encode (teacher-forced training only, no key/value caches).
    at::Tensor decode(const at::Tensor& decoderInputIds, const LadderEncoderState& encoded,
        DecoderCache* backboneCache = nullptr, LadderSideCache* sideCache = nullptr,
        const LadderBackboneOutputs* cached = nullptr, LadderBackboneOutputs* record = nullptr);
    at::Tensor logits(const at::Tensor& decoderHidden);

    Backbone& backbone() const { return *m_backbone; }
    LadderSideNetwork side() const { return m_side; }

private:
    std::shared_ptr<Backbone> m_backbone;
    LadderSideNetwork m_side;
};

// The method around LadderModel. It still holds the T5 (Method's backbone()) for what is T5's own: freezing,
// train/eval and moving its modules, and the pruning initialisation (peft/LadderInit).
class LadderMethod : public Method {
public:
    // Freezes the backbone (requires_grad false), builds the side network, initialises it (options.init;
    // "fisher" draws examples from `data`, reporting to and cancelled by `hooks`), and leaves everything in
    // eval mode (call train(true)).
    LadderMethod(T5ForConditionalGeneration backbone, const MethodOptions& options, const BatchSource& data,
        const MethodInitHooks& hooks = {});

    MethodOutput forward(const Seq2SeqBatch& batch) override;
    // The same forward with the ladder activation cache is train/LadderActivationCache.h's forwardWithCache.
    std::unique_ptr<Seq2SeqStepper> makeStepper() override;
    // Side network train/eval; the backbone stays in eval mode unless options.backboneTrainMode.
    void train(bool on) override;
    void to(c10::Device device, c10::ScalarType dtype) override;
    std::vector<std::pair<std::string, at::Tensor>> namedTrainableParameters() const override;
    // Backbone + side network.
    std::int64_t totalParameterCount() const override;

    LadderSideNetwork sideNetwork() const { return m_model.side(); }
    LadderModel& model() { return m_model; }

private:
    LadderModel m_model;
};

// generate() for LST: the backbone decoder and the side decoder step by step, each with its key/value cache.
class LadderStepper : public Seq2SeqStepper {
public:
    // Visual input -> (batch, V, d_model) embeddings: the method's visual projection (a VL run).
    using VisualEmbedFn = std::function<at::Tensor(const VisualInput&)>;
    explicit LadderStepper(LadderModel model, VisualEmbedFn embedVisual = {})
        : m_model(std::move(model))
        , m_embedVisual(std::move(embedVisual))
    {
    }
    void setVisual(const VisualInput& visual) override;
    void begin(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t copies) override;
    at::Tensor step(const at::Tensor& tokens) override;
    void reorder(const at::Tensor& rowIndices) override;

private:
    LadderModel m_model;
    VisualEmbedFn m_embedVisual;
    VisualInput m_visual;
    LadderEncoderState m_encoded;
    DecoderCache m_backboneCache;
    LadderSideCache m_sideCache;
};

} // namespace ladder
