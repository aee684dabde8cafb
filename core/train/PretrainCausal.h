#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/llama/LlamaConfig.h"
#include "train/Pretrain.h"

namespace ladder {

class LlamaForCausalLMImpl;

// LadderBench's own tiny decoder-only backbone (issue #21), made offline from the same corpus as the demo
// T5 (docs/DEMO.md, "The decoder backbone"): a SentencePiece BPE vocabulary with byte fallback and Llama's
// special ids, a Llama-architecture causal LM initialised as HF's LlamaPreTrainedModel._init_weights does,
// pretrained on next-token prediction over the packed corpus, written as an HF folder (config.json in
// LlamaForCausalLM's layout, model.safetensors with HF's names, tokenizer.model, tokenizer_config.json,
// ladderbench.json) that loadBackbone, loadTokenizer and HF's LlamaForCausalLM / LlamaTokenizer read.

// The recipe. Defaults are the demo's; docs/DEMO.md gives the reasons and the measured costs.
struct CausalPretrainOptions {
    // Vocabulary: SentencePiece BPE as Llama 2's tokenizer.model is made (byte fallback, digits split,
    // identity normalisation, whitespace kept): unk 0, bos 1, eos 2, then the 256 byte pieces, then merges.
    // `vocabSize` counts them all (the model's vocab_size).
    int vocabSize = 8000;
    // Model: Llama shape (RMSNorm, RoPE, SwiGLU, grouped-query attention), no biases.
    std::int64_t hiddenSize = 256;
    std::int64_t intermediateSize = 704;
    std::int64_t numLayers = 4;
    std::int64_t numHeads = 4;
    std::int64_t numKeyValueHeads = 2;
    std::int64_t maxPositionEmbeddings = 512;
    double ropeTheta = 10000.0;
    double rmsNormEps = 1e-6;
    bool tieWordEmbeddings = false;
    double initializerRange = 0.02; // HF's initializer_range: every Linear and the embeddings N(0, 0.02)
    // Token embeddings before pretraining: "cooccurrence" (CooccurrenceEmbeddings.h, scaled to standard
    // deviation `cooccurrenceStd`; unseen pieces keep HF's rows) or "random" (HF's N(0, 0.02) only).
    std::string embeddingInit = "cooccurrence";
    double cooccurrenceStd = 1.0;
    int cooccurrenceWindow = 4;
    // Next-token prediction on chunks of `sequenceLength` consecutive tokens of the packed corpus (every
    // sentence is <s> ... </s>), the loss over every position as HF's LlamaForCausalLM computes it.
    std::int64_t sequenceLength = 128;
    // Optimisation: AdamW, linear warm-up then linear decay to 0, gradient clipping.
    std::int64_t steps = 400;
    std::int64_t batchSize = 16;
    double learningRate = 2e-3;
    std::int64_t warmupSteps = 40;
    double weightDecay = 0.0;
    double maxGradNorm = 1.0;
    std::int64_t heldOutExamples = 64; // chunks never trained on, evaluated before and after
    std::uint64_t seed = 0;
    int numThreads = 0; // at::set_num_threads in the training thread; 0 = all hardware threads

    static CausalPretrainOptions demo() { return {}; }
    // A few seconds' worth, for tests: vocabulary 400, hidden 64, 2 layers, 40 steps of batch 8.
    static CausalPretrainOptions tiny();
    // Throws ladder::Error "decoder pretraining recipe: FIELD ..." for the first field out of range.
    void validate() const;
    // Whether every option that changes the weights (all but the thread count) is equal.
    bool sameRecipe(const CausalPretrainOptions& other) const;
    // The model's config for a vocabulary of `pieces`: model_type llama, bos 1, eos 2, pad 0 (= unk; the
    // header of PretrainCausal.cpp says why).
    LlamaConfig llamaConfig(std::int64_t pieces) const;
    // Every option that changes the weights, as ladderbench.json's "recipe_options" records them.
    nlohmann::json recipeJson() const;
};

// Trains Llama 2's kind of SentencePiece model (BPE, byte fallback, unk 0 / bos 1 / eos 2, no pad) on
// `sentences` and returns its bytes (a tokenizer.model). Deterministic as trainT5SentencePiece is.
std::string trainLlamaSentencePiece(
    const std::vector<std::string>& sentences, int vocabSize, std::uint64_t seed);

// HF's LlamaPreTrainedModel._init_weights: every Linear weight (and lm_head when untied) and the token
// embeddings N(0, initializerRange), the pad row of the embeddings 0 (HF's padding_idx), RMSNorm weights 1.
// Throws for a parameter it has no rule for.
void initLlamaWeightsLikeHF(LlamaForCausalLMImpl& model, std::uint64_t seed, double initializerRange);

// Trains the vocabulary, builds and pretrains the decoder and writes the HF folder `outDir`, staged and
// renamed as pretrainT5 does (a crash or a cancellation leaves nothing). `outDir` must not exist or be
// empty. `recipeName` is recorded in ladderbench.json ("demo" for the built-in demo, else "custom").
PretrainResult pretrainLlama(const std::vector<std::string>& corpus, const std::string& outDir,
    const CausalPretrainOptions& options, const PretrainCallback& callback = {},
    const std::string& recipeName = "custom");

// Whether `dir` holds config.json, model.safetensors, tokenizer.model, tokenizer_config.json and a
// ladderbench.json of this recipe version saying architecture "llama".
bool causalBackboneComplete(const std::string& dir);

// causalBackboneComplete, built with the demo recipe ("recipe": "demo") and exactly today's
// CausalPretrainOptions::demo() ("recipe_options"), so a changed recipe rebuilds the cache.
bool demoLlamaBackboneComplete(const std::string& dir);

// The demo's decoder: pretrains from WordNet with CausalPretrainOptions::demo() into backboneDir unless a
// complete one is there (a stale or partial one is replaced). Returns the result when it built one.
std::optional<PretrainResult> ensureDemoLlamaBackbone(
    const std::string& backboneDir, const std::string& wordNetDir, const PretrainCallback& callback = {});

} // namespace ladder
