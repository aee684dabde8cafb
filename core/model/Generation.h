#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "model/T5Model.h"

namespace ladder {

// Seq2SeqStepper, the step-by-step view that generate() drives, is declared in model/Backbone.h.

// The T5 backbone alone (T5ForConditionalGenerationImpl::makeStepper()), with a decoder key/value cache.
// An optional encoder function replaces the backbone's own encoding (prompt tuning prepends its prompts
// there); it returns the encoder output and the attention mask that cross-attention must use.
class T5Stepper : public Seq2SeqStepper {
public:
    using EncodeFn = std::function<std::pair<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&)>;
    explicit T5Stepper(T5ForConditionalGeneration model, EncodeFn encode = {})
        : m_model(std::move(model))
        , m_encode(std::move(encode))
    {
    }
    void begin(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t copies) override;
    at::Tensor step(const at::Tensor& tokens) override;
    void reorder(const at::Tensor& rowIndices) override;

private:
    T5ForConditionalGeneration m_model;
    EncodeFn m_encode;
    at::Tensor m_encoderHidden;
    at::Tensor m_encoderMask;
    DecoderCache m_cache;
};

// HF generate() defaults: decoder start token first, eos stops a row, length penalty 1.0, no
// early stopping, no logits processors.
struct GenerationOptions {
    std::int64_t numBeams = 1;
    std::int64_t maxNewTokens = 20;
    double lengthPenalty = 1.0;
    bool earlyStopping = false;
    std::int64_t decoderStartTokenId = 0;
    std::int64_t eosTokenId = 1;
    std::int64_t padTokenId = 0;
    // Greedy decoding also scores each row: GenerationResult::sequenceScores gets the sum of the
    // log-probabilities (log_softmax of the step's logits) of the tokens it generated, </s> included and
    // the padding after it left out: HF's compute_transition_scores(..., normalize_logits=True) summed over
    // the generated tokens. Beam search always scores.
    bool outputScores = false;

    static GenerationOptions forConfig(const T5Config& config);
};

struct GenerationResult {
    at::Tensor sequences; // (batch, length) int64 on the CPU, decoder start token first
    // Beam search: the best hypothesis' length-normalised score (HF's sequences_scores); greedy with
    // GenerationOptions::outputScores: the sum of the generated tokens' log-probabilities; else empty.
    std::vector<double> sequenceScores;
};

// Greedy decoding (numBeams == 1) or beam search (numBeams > 1), under no_grad.
GenerationResult generate(Seq2SeqStepper& stepper, const at::Tensor& inputIds,
    const at::Tensor& attentionMask, const GenerationOptions& options);

// Convenience for the plain backbone (its makeStepper()).
GenerationResult generate(T5ForConditionalGeneration& model, const at::Tensor& inputIds,
    const at::Tensor& attentionMask, const GenerationOptions& options);

} // namespace ladder
