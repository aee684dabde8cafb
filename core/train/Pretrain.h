#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "model/T5Config.h"
#include "model/T5Model.h"

namespace ladder {

// LadderBench's own small T5, made offline from a text corpus (the built-in demo uses WordNet's glosses,
// docs/DEMO.md): a SentencePiece vocabulary trained on the corpus, a T5 initialised as HF's
// T5PreTrainedModel._init_weights does, pretrained with T5's span-corruption objective, written as an HF
// folder (config.json, model.safetensors, spiece.model, tokenizer_config.json, ladderbench.json) that
// loadT5 and T5Tokenizer load like any other.

// The recipe. Defaults are the demo's (docs/DEMO.md explains each choice and its measured cost).
struct PretrainOptions {
    // Vocabulary: SentencePiece unigram pieces, T5's ids (pad 0, eos 1, unk 2, no bos); the model's
    // vocabulary adds `extraIds` sentinels <extra_id_0..N-1> at the top.
    int vocabSize = 8000;
    int extraIds = 100;
    // Model: T5 v1.0 shape (relu FFN, tied embeddings).
    std::int64_t dModel = 256;
    std::int64_t dKv = 64;
    std::int64_t numHeads = 4;
    std::int64_t dFf = 1024;
    std::int64_t numLayers = 4;
    std::int64_t numDecoderLayers = 4;
    // Written to config.json: the dropout of fine-tuning. 0, as in pretraining: the network never saw
    // dropout, and with 0.1 the frozen backbone under LoRA and Adapters reached half the accuracy
    // (docs/DEMO.md, "Why co-occurrence embeddings, and why no dropout").
    double dropoutRate = 0.0;
    double pretrainDropoutRate = 0.0; // used while pretraining (T5 v1.1 pretrained without dropout)
    // Token embeddings before pretraining: "cooccurrence" (PPMI + randomised SVD of the corpus's windowed
    // co-occurrence counts, CooccurrenceEmbeddings.h; sentinels and unseen pieces keep the random rows)
    // or "random" (HF's N(0, 1) only).
    std::string embeddingInit = "cooccurrence";
    int cooccurrenceWindow = 4;
    // Span corruption (Raffel et al. 2020, HF run_t5_mlm_flax.py): each example is `rawLength`
    // consecutive tokens of the packed corpus (every sentence ends with </s>).
    double noiseDensity = 0.15;
    double meanNoiseSpanLength = 3.0;
    std::int64_t rawLength = 114; // -> inputs of 104 ids (with </s>), targets of 24
    // Optimisation: AdamW, linear warm-up then linear decay to 0, gradient clipping.
    std::int64_t steps = 800;
    std::int64_t batchSize = 16;
    double learningRate = 2e-3;
    std::int64_t warmupSteps = 80;
    double weightDecay = 0.0;
    double maxGradNorm = 1.0;
    // Held-out chunks (never trained on) whose loss, without dropout, is measured before and after.
    std::int64_t heldOutExamples = 64;
    std::uint64_t seed = 0;
    int numThreads = 0; // at::set_num_threads in the training thread; 0 = all hardware threads

    static PretrainOptions demo() { return {}; }
    // A few seconds' worth, for tests: vocab 320, d_model 64, 2+2 layers, 30 steps of batch 8.
    static PretrainOptions tiny();
    // Throws ladder::Error naming the first field out of range.
    void validate() const;
    // Whether every option that changes the weights (all but the thread count) is equal.
    bool sameRecipe(const PretrainOptions& other) const;
    // The T5 config for a SentencePiece model of `pieces` pieces.
    T5Config t5Config(std::int64_t pieces) const;
};

struct PretrainProgress {
    enum class Stage { Vocabulary, Tokenising, Embeddings, Training, Writing };
    Stage stage = Stage::Vocabulary;
    std::int64_t step = 0; // Training: steps done so far (1-based after the first step)
    std::int64_t totalSteps = 0;
    double loss = 0.0; // this step's training loss
    double smoothedLoss = 0.0; // exponential moving average (0.9)
    double learningRate = 0.0;
    double tokensPerSecond = 0.0; // input + target ids per second over the run so far
    double elapsedSeconds = 0.0; // since pretraining started (vocabulary included)
    double etaSeconds = 0.0; // of the training stage
    std::string message; // for the stages other than Training: what is being done
};
const char* toString(PretrainProgress::Stage stage);

// Called at each stage change and after every training step. Returning false cancels.
using PretrainCallback = std::function<bool(const PretrainProgress&)>;

struct PretrainResult {
    bool cancelled = false;
    std::string directory;
    std::vector<double> losses; // training loss of every step
    double initialLoss = 0.0; // mean of the first 10 steps
    double finalLoss = 0.0; // mean of the last 10% of steps (at least 1)
    double heldOutLossBefore = 0.0;
    double heldOutLossAfter = 0.0;
    std::int64_t pieces = 0; // SentencePiece vocabulary size
    std::int64_t parameters = 0; // model parameters (tied counted once)
    std::int64_t corpusSentences = 0;
    std::int64_t corpusTokens = 0; // packed stream length
    std::int64_t trainedTokens = 0; // input + target ids seen in training
    double vocabularySeconds = 0.0;
    double embeddingSeconds = 0.0; // co-occurrence embeddings (0 with embeddingInit "random")
    std::int64_t embeddedPieces = 0; // pieces whose row came from co-occurrence
    double trainingSeconds = 0.0;
    double wallSeconds = 0.0;
};

// Trains a SentencePiece unigram model on `sentences` with T5's special ids and returns the serialized
// model (the bytes of a spiece.model). Deterministic for the same sentences, options and library version:
// one thread, no sentence sampling, fixed seed (docs/DEMO.md). Throws ladder::Error with SentencePiece's
// message on failure.
std::string trainT5SentencePiece(
    const std::vector<std::string>& sentences, int vocabSize, std::uint64_t seed);

// HF's T5PreTrainedModel._init_weights (initializer_factor `factor`) over the model's named parameters:
// shared N(0, f), lm_head N(0, f) when untied, q N(0, f (d_model d_kv)^-1/2), k and v N(0, f d_model^-1/2),
// o N(0, f (heads d_kv)^-1/2), wi / wi_0 / wi_1 N(0, f d_model^-1/2), wo N(0, f d_ff^-1/2),
// relative_attention_bias N(0, f d_model^-1/2), layer norms 1. Throws for a parameter it has no rule for.
void initT5WeightsLikeHF(T5ForConditionalGenerationImpl& model, std::uint64_t seed, double factor = 1.0);

// T5's span corruption, as random_spans_noise_mask in HF's run_t5_mlm_flax.py: noise tokens =
// round(length * density) clamped to [1, length - 1]; spans = max(1, round(noise / meanSpan)); noise and
// non-noise lengths are random segmentations; spans alternate non-noise, noise. `uniform(n)` returns an
// integer in [0, n) (a seeded generator).
std::vector<bool> randomSpansNoiseMask(std::int64_t length, double noiseDensity, double meanNoiseSpanLength,
    const std::function<std::uint64_t(std::uint64_t)>& uniform);
struct SpanCorrupted {
    std::vector<std::int64_t> inputs; // non-noise ids, each noise span replaced by a sentinel, then </s>
    std::vector<std::int64_t> targets; // sentinel, span ids, next sentinel, ..., then </s>
};
// Sentinel k is firstSentinelId - k (<extra_id_0> is the highest id, as T5's). Throws when the mask
// has more spans than `maxSentinels`.
SpanCorrupted applySpanCorruption(const std::vector<std::int64_t>& tokens, const std::vector<bool>& noiseMask,
    std::int64_t firstSentinelId, std::int64_t eosId, int maxSentinels);

// One sentence per line; blank lines skipped; a trailing '\r' removed. Throws naming the file.
std::vector<std::string> readCorpusFile(const std::string& path);

// Trains the vocabulary, builds and pretrains the model and writes the HF folder `outDir`. Everything is
// written into a staging folder beside `outDir` and renamed at the end, so a crash or a cancellation
// never leaves a half-built folder. `outDir` must not exist or be an empty folder. `recipeName` is
// recorded in ladderbench.json ("demo" for the built-in demo, else "custom").
PretrainResult pretrainT5(const std::vector<std::string>& corpus, const std::string& outDir,
    const PretrainOptions& options, const PretrainCallback& callback = {},
    const std::string& recipeName = "custom");

// Whether `dir` holds config.json, model.safetensors, spiece.model and a ladderbench.json of this
// recipe version (kDemoRecipeVersion).
bool backboneComplete(const std::string& dir);

// backboneComplete, built with the demo recipe (ladderbench.json "recipe": "demo"), and with exactly
// today's PretrainOptions::demo() (its "recipe_options"), so changing the recipe invalidates old caches.
bool demoBackboneComplete(const std::string& dir);

// The demo backbone: pretrains from WordNet (wordNetDir) with PretrainOptions::demo() into backboneDir
// unless a complete demo backbone is there already (a stale or partial one is replaced). Returns the
// result when it built one, nothing when the cache was complete.
std::optional<PretrainResult> ensureDemoBackbone(
    const std::string& backboneDir, const std::string& wordNetDir, const PretrainCallback& callback = {});

} // namespace ladder
