#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "model/BackboneModel.h"
#include "model/T5Model.h"
#include "model/llama/LlamaConfig.h"

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

// A decoder-only backbone (shape().encoderBlocks == 0) seen one step at a time with its key/value cache:
// begin() left-pads the prompt (leftPad, model/CausalJoin.h: HF's generate() expects decoder prompts padded
// on the left), runs all but its last column into the cache under the padding mask, and startTokens() returns
// each row's last prompt token, so generate() feeds it first as it feeds T5's decoder start token. Every
// step appends a 1 to the mask, as HF's generate() does (also for rows that finished).
//
// A method on a decoder (prompt tuning, LST: peft/DecoderMethods.cpp, peft/DecoderLadder.cpp) decodes the
// same way and overrides what it changes: the columns before the start token (headEmbeddings), the hidden
// states the LM head reads (hidden), and caches of its own (resetCaches, reorderCaches).
class CausalStepper : public Seq2SeqStepper {
public:
    explicit CausalStepper(BackboneModel model, std::int64_t padTokenId = 0)
        : m_model(std::move(model))
        , m_padTokenId(padTokenId)
    {
    }
    void begin(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t copies) final;
    at::Tensor step(const at::Tensor& tokens) final;
    void reorder(const at::Tensor& rowIndices) final;
    at::Tensor startTokens(std::int64_t rows, std::int64_t decoderStartTokenId) const final;

protected:
    // The embeddings of the left-padded prompt's columns before the start token (rows, n, d) and their
    // (rows, n) mask: the backbone's embeddings of `ids` by default.
    virtual std::pair<at::Tensor, at::Tensor> headEmbeddings(const at::Tensor& ids, const at::Tensor& mask);
    // The hidden states (rows, n, d) the LM head reads, for embeddings (rows, n, d) under the (rows, past +
    // n) mask, appended to the caches: the backbone's last hidden state with cache() by default.
    virtual at::Tensor hidden(const at::Tensor& embeddings, const at::Tensor& mask);
    // Fresh caches before a prompt (the backbone's cache() by default), and rows kept in beam search.
    virtual void resetCaches();
    virtual void reorderCaches(const at::Tensor& rowIndices);

    BackboneModel& model() { return m_model; }
    DecoderCache& cache() { return m_cache; }

private:
    BackboneModel m_model;
    std::int64_t m_padTokenId;
    DecoderCache m_cache;
    at::Tensor m_mask; // (rows, cached columns)
    at::Tensor m_start; // (rows) each row's last prompt token
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
    // When not empty, the ids that stop a row instead of eosTokenId alone (HF configs whose eos_token_id is
    // a list, Llama 3's); beam search then keeps max(2, 1 + count) x num_beams candidates per step, as HF.
    std::vector<std::int64_t> eosTokenIds;
    std::int64_t padTokenId = 0;
    // Beam scoring as HF 5 does it for a decoder-only model: a hypothesis that reaches max_new_tokens is
    // normalised by its generated tokens (cur_len - prompt length; the prompt's last token, which starts the
    // hypothesis here, does not count), and the stopping heuristic reads the best open beam's score. Off
    // (T5): the scoring T5's fixtures were made with, unchanged.
    bool decoderOnly = false;
    // Greedy decoding also scores each row: GenerationResult::sequenceScores gets the sum of the
    // log-probabilities (log_softmax of the step's logits) of the tokens it generated, </s> included and
    // the padding after it left out: HF's compute_transition_scores(..., normalize_logits=True) summed over
    // the generated tokens. Beam search always scores.
    bool outputScores = false;

    static GenerationOptions forConfig(const T5Config& config);
    // A decoder: eos ids from config.json (pad: pad_token_id, else the first eos, as HF), decoderOnly on.
    static GenerationOptions forConfig(const LlamaConfig& config);
    // eosTokenIds when set, else { eosTokenId }.
    std::vector<std::int64_t> stopIds() const;
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

// HF generate() of a decoder-only model as HF returns it: the prompt (left-padded as leftPad() makes it; a
// left-padded prompt is unchanged) followed by the generated tokens, one row per example. `stepper`
// (default: model's makeStepper()) runs the steps; sequenceScores as generate().
GenerationResult generateCausal(BackboneModelImpl& model, const at::Tensor& inputIds,
    const at::Tensor& attentionMask, const GenerationOptions& options, Seq2SeqStepper* stepper = nullptr);

} // namespace ladder
