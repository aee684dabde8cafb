#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "data/Seq2SeqBatch.h"
#include "model/Generation.h"
#include "model/T5Model.h"
#include "model/VisualEmbedding.h"
#include "peft/MethodOptions.h"
#include "util/Error.h"

namespace ladder {

// Progress of a data-driven initialisation: examples done so far and the most it will use (LST's Fisher
// pass: after every example; when the data runs out early, a last call with done == total == the number
// used).
using InitProgress = std::function<void(std::int64_t done, std::int64_t total)>;
// Polled before every example of a data-driven initialisation; true stops it with InitCancelled.
using InitCancelCheck = std::function<bool()>;

// What a method's initialisation reports to, and asks whether to stop (both optional). core/peft knows
// nothing of the trainer: the trainer wraps its observer in these.
struct MethodInitHooks {
    InitProgress progress;
    InitCancelCheck cancelRequested;
};

// Thrown by an initialisation whose cancel check returned true; the backbone is left as before it (frozen,
// undefined gradients). An Error, so that a caller that never cancels reports it like any other.
class InitCancelled : public Error {
public:
    explicit InitCancelled(const std::string& message)
        : Error(message)
    {
    }
};

struct MethodOutput {
    at::Tensor loss; // scalar
    at::Tensor logits; // (batch, target length, vocab)
};

// A fine-tuning method over a frozen (or, for full, trainable) backbone: what it adds, what trains, a
// training forward and generation. Created by createMethod().
class Method {
public:
    virtual ~Method() = default;

    const MethodOptions& options() const { return m_options; }
    // The backbone module, whatever its architecture (model/BackboneModel.h).
    BackboneModel backbone() const { return m_backbone; }
    // The backbone as T5, for what is T5's own (LST's side network, T5 exports); ladder::Error when the
    // backbone is another architecture.
    T5ForConditionalGeneration t5() const;

    // Teacher-forced forward with the loss.
    virtual MethodOutput forward(const Seq2SeqBatch& batch) = 0;
    // Step-by-step decoding for generate() (greedy or beam).
    virtual std::unique_ptr<Seq2SeqStepper> makeStepper() = 0;
    // Training mode: dropout on where the method trains; LST keeps the backbone in eval mode by default.
    virtual void train(bool on) = 0;
    // Moves everything the method owns (backbone included).
    virtual void to(c10::Device device, c10::ScalarType dtype) = 0;

    // Trainable parameters by stable name (the names of trainable-weight checkpoints).
    virtual std::vector<std::pair<std::string, at::Tensor>> namedTrainableParameters() const = 0;
    std::vector<at::Tensor> trainableParameters() const;
    std::int64_t trainableParameterCount() const;
    // Parameters of the pretrained backbone alone (the paper's denominator).
    std::int64_t backboneParameterCount() const;
    // Every parameter that takes memory: backbone + added modules (tied weights once).
    virtual std::int64_t totalParameterCount() const;

    // Vision-and-language (docs/VL.md): the visual projection every method trains on a VL run
    // (options().visualDim > 0; createMethod adds it), undefined on a text run. Its parameters are trainable
    // and named "visual_embedding.<name>".
    VisualEmbedding visualEmbedding() const { return m_visual; }
    // Adds the visual projection for options().visualDim (createMethod calls it; T5 backbones only).
    void addVisualEmbedding();

    // Trainable weights and their options: save as safetensors (options JSON in the metadata) and load
    // back bit for bit. Loading checks names, shapes and the method; errors name the file and tensor.
    void saveTrainable(const std::string& path) const;
    void loadTrainable(const std::string& path);

protected:
    Method(BackboneModel backbone, MethodOptions options);

    // (batch, V, d_model) visual embeddings of `visual` (model/VisualEmbedding.h; the object order reads the
    // backbone's token embeddings). ladder::Error when the batch has images and the method no visual
    // projection, or the other way round.
    at::Tensor embedVisual(const VisualInput& visual);
    // Appends the visual projection's parameters ("visual_embedding.<name>") when there is one.
    void appendVisualParameters(std::vector<std::pair<std::string, at::Tensor>>& out) const;
    // train() and to() of the visual projection, when there is one.
    void trainVisual(bool on);
    void moveVisual(c10::Device device, c10::ScalarType dtype);

    VisualEmbedding m_visual { nullptr };

    BackboneModel m_backbone;
    MethodOptions m_options;
    std::int64_t m_backboneParameters = 0;
};

// Builds a method on `backbone` (which it modifies for the in-place methods: bitfit, adapter, lora,
// prompt). `data` feeds the Fisher initialisation of LST (init fisher, the default: without data that is an
// error naming the field init) and may be empty otherwise; `hooks` report its progress and cancel it.
std::unique_ptr<Method> createMethod(BackboneModel backbone, const MethodOptions& options,
    const BatchSource& data = {}, const MethodInitHooks& hooks = {});
inline std::unique_ptr<Method> createMethod(T5ForConditionalGeneration backbone, const MethodOptions& options,
    const BatchSource& data = {}, const MethodInitHooks& hooks = {})
{
    return createMethod(BackboneModel(backbone.ptr()), options, data, hooks);
}

} // namespace ladder
