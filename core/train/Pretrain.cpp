#include "train/Pretrain.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>
#include <unordered_map>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "data/DemoTasks.h"
#include "data/WordNet.h"
#include "device/Devices.h"
#include "ladder/Version.h"
#include "model/Safetensors.h"
#include "model/SentencePiece.h"
#include "model/T5Checkpoint.h"
#include "model/T5Tokenizer.h"
#include "train/CooccurrenceEmbeddings.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/SplitMix64.h"

namespace ladder {

namespace {

// Salts that keep the generators of one seed independent.
constexpr std::uint64_t kChunkOrderSalt = 0x6368756e6b73ull; // "chunks"
constexpr std::uint64_t kMaskSalt = 0x6d61736b73ull; // "masks"
constexpr std::uint64_t kHeldOutSalt = 0x68656c646f7574ull; // "heldout"
constexpr std::uint64_t kInitSalt = 0x696e6974ull; // "init"
constexpr std::uint64_t kEmbeddingSalt = 0x656d626564ull; // "embed"
constexpr double kLossEma = 0.9;

template <typename T> void shuffleInPlace(std::vector<T>& items, SplitMix64& rng)
{
    for (std::size_t i = items.size(); i > 1; --i)
        std::swap(items[i - 1], items[rng.uniform(i)]);
}

// numpy's round (half to even) for the lengths of random_spans_noise_mask.
std::int64_t roundHalfEven(double x)
{
    return static_cast<std::int64_t>(std::nearbyint(x));
}

// _random_segmentation: num_items split into num_segments non-empty runs, lengths returned in order.
std::vector<std::int64_t> randomSegmentation(
    std::int64_t items, std::int64_t segments, const std::function<std::uint64_t(std::uint64_t)>& uniform)
{
    std::vector<bool> firstInSegment(static_cast<std::size_t>(items - 1), false);
    for (std::int64_t i = 0; i < segments - 1; ++i)
        firstInSegment[static_cast<std::size_t>(i)] = true;
    for (std::size_t i = firstInSegment.size(); i > 1; --i) {
        const auto j = static_cast<std::size_t>(uniform(i));
        const bool t = firstInSegment[i - 1];
        firstInSegment[i - 1] = firstInSegment[j];
        firstInSegment[j] = t;
    }
    std::vector<std::int64_t> lengths(1, 1);
    for (const bool first : firstInSegment) {
        if (first)
            lengths.push_back(1);
        else
            ++lengths.back();
    }
    return lengths;
}

void writeTextFile(const std::string& path, const std::string& bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out)
        throw Error(path + ": write failed");
}

double secondsSince(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Batch {
    at::Tensor inputs; // (batch, input length) int64
    at::Tensor targets; // (batch, target length) int64
};

// Corrupted examples have the same lengths for a fixed raw length (the mask's counts depend on the
// length only), so a batch needs no padding.
Batch makeBatch(const std::vector<SpanCorrupted>& examples)
{
    const auto rows = static_cast<std::int64_t>(examples.size());
    const auto inLen = static_cast<std::int64_t>(examples.front().inputs.size());
    const auto tgtLen = static_cast<std::int64_t>(examples.front().targets.size());
    Batch b { at::empty({ rows, inLen }, at::kLong), at::empty({ rows, tgtLen }, at::kLong) };
    auto* in = b.inputs.data_ptr<std::int64_t>();
    auto* tg = b.targets.data_ptr<std::int64_t>();
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto& e = examples[static_cast<std::size_t>(r)];
        if (static_cast<std::int64_t>(e.inputs.size()) != inLen
            || static_cast<std::int64_t>(e.targets.size()) != tgtLen)
            throw Error("span corruption produced examples of different lengths");
        std::copy(e.inputs.begin(), e.inputs.end(), in + r * inLen);
        std::copy(e.targets.begin(), e.targets.end(), tg + r * tgtLen);
    }
    return b;
}

bool hasSuffix(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

double meanOf(const std::vector<double>& v, std::size_t begin, std::size_t end)
{
    if (begin >= end)
        return 0.0;
    double sum = 0.0;
    for (auto i = begin; i < end; ++i)
        sum += v[i];
    return sum / static_cast<double>(end - begin);
}

double rounded(double x, int digits)
{
    const double scale = std::pow(10.0, digits);
    return std::round(x * scale) / scale;
}

// Every option that changes the weights (not the thread count): a cache is valid only for equal options.
nlohmann::json recipeOptions(const PretrainOptions& o)
{
    return { { "vocab_size", o.vocabSize }, { "extra_ids", o.extraIds }, { "d_model", o.dModel },
        { "d_kv", o.dKv }, { "num_heads", o.numHeads }, { "d_ff", o.dFf }, { "num_layers", o.numLayers },
        { "num_decoder_layers", o.numDecoderLayers }, { "dropout_rate", o.dropoutRate },
        { "pretrain_dropout_rate", o.pretrainDropoutRate }, { "noise_density", o.noiseDensity },
        { "mean_noise_span_length", o.meanNoiseSpanLength }, { "raw_length", o.rawLength },
        { "steps", o.steps }, { "batch_size", o.batchSize }, { "learning_rate", o.learningRate },
        { "warmup_steps", o.warmupSteps }, { "weight_decay", o.weightDecay },
        { "max_grad_norm", o.maxGradNorm }, { "held_out_examples", o.heldOutExamples }, { "seed", o.seed },
        { "embedding_init", o.embeddingInit }, { "cooccurrence_window", o.cooccurrenceWindow } };
}

} // namespace

const char* toString(PretrainProgress::Stage stage)
{
    switch (stage) {
    case PretrainProgress::Stage::Vocabulary:
        return "vocabulary";
    case PretrainProgress::Stage::Tokenising:
        return "tokenising";
    case PretrainProgress::Stage::Embeddings:
        return "embeddings";
    case PretrainProgress::Stage::Training:
        return "pretraining";
    case PretrainProgress::Stage::Writing:
        return "writing";
    }
    return "?";
}

PretrainOptions PretrainOptions::tiny()
{
    PretrainOptions o;
    o.vocabSize = 320;
    o.dModel = 64;
    o.dKv = 16;
    o.numHeads = 4;
    o.dFf = 128;
    o.numLayers = 2;
    o.numDecoderLayers = 2;
    o.rawLength = 40;
    o.steps = 30;
    o.batchSize = 8;
    o.learningRate = 3e-3;
    o.warmupSteps = 3;
    o.heldOutExamples = 16;
    return o;
}

void PretrainOptions::validate() const
{
    auto require = [](bool ok, const std::string& message) {
        if (!ok)
            throw Error("pretraining recipe: " + message);
    };
    require(vocabSize >= 16, "vocab_size must be at least 16, got " + std::to_string(vocabSize));
    require(extraIds >= 1 && extraIds <= 1000, "extra_ids must be in 1..1000");
    require(dModel > 0 && dKv > 0 && numHeads > 0 && dFf > 0,
        "d_model, d_kv, num_heads and d_ff must be positive");
    require(numLayers > 0 && numDecoderLayers > 0, "the encoder and the decoder need at least one layer");
    require(dropoutRate >= 0.0 && dropoutRate < 1.0, "dropout_rate must be in [0, 1)");
    require(
        pretrainDropoutRate >= 0.0 && pretrainDropoutRate < 1.0, "pretrain_dropout_rate must be in [0, 1)");
    require(noiseDensity > 0.0 && noiseDensity < 1.0, "noise_density must be in (0, 1)");
    require(meanNoiseSpanLength >= 1.0, "mean_noise_span_length must be at least 1");
    require(rawLength >= 4, "raw_length must be at least 4 tokens");
    require(steps >= 1, "steps must be at least 1, got " + std::to_string(steps));
    require(batchSize >= 1, "batch_size must be at least 1");
    require(learningRate > 0.0 && std::isfinite(learningRate), "learning_rate must be positive");
    require(warmupSteps >= 0, "warmup_steps must not be negative");
    require(weightDecay >= 0.0, "weight_decay must not be negative");
    require(maxGradNorm > 0.0, "max_grad_norm must be positive");
    require(heldOutExamples >= 1, "held_out_examples must be at least 1");
    require(numThreads >= 0, "threads must not be negative");
    require(embeddingInit == "cooccurrence" || embeddingInit == "random",
        "embedding_init must be \"cooccurrence\" or \"random\", got \"" + embeddingInit + "\"");
    require(cooccurrenceWindow >= 1, "cooccurrence_window must be at least 1");
    require(embeddingInit != "cooccurrence" || dModel <= static_cast<std::int64_t>(vocabSize),
        "co-occurrence embeddings need d_model <= vocab_size");
}

bool PretrainOptions::sameRecipe(const PretrainOptions& other) const
{
    return recipeOptions(*this) == recipeOptions(other);
}

T5Config PretrainOptions::t5Config(std::int64_t pieces) const
{
    T5Config c;
    c.vocabSize = pieces + extraIds;
    c.dModel = dModel;
    c.dKv = dKv;
    c.dFf = dFf;
    c.numHeads = numHeads;
    c.numLayers = numLayers;
    c.numDecoderLayers = numDecoderLayers;
    c.dropoutRate = dropoutRate;
    c.feedForwardProj = "relu";
    c.tieWordEmbeddings = true;
    c.padTokenId = 0;
    c.eosTokenId = 1;
    c.decoderStartTokenId = 0;
    c.validate();
    return c;
}

std::string trainT5SentencePiece(const std::vector<std::string>& sentences, int vocabSize, std::uint64_t seed)
{
    if (sentences.empty())
        throw Error("SentencePiece training: the corpus is empty");
    const std::unordered_map<std::string, std::string> args = {
        { "model_type", "unigram" },
        { "vocab_size", std::to_string(vocabSize) },
        // T5's special ids: pad 0, eos 1, unk 2, no bos.
        { "pad_id", "0" },
        { "eos_id", "1" },
        { "unk_id", "2" },
        { "bos_id", "-1" },
        // Determinism: one thread, every sentence in the given order, no sampling or shuffling.
        { "num_threads", "1" },
        { "input_sentence_size", "0" },
        { "shuffle_input_sentence", "false" },
        { "character_coverage", "0.9995" },
        { "minloglevel", "1" },
    };
    const auto model = trainSentencePiece(args, sentences, static_cast<unsigned>(seed & 0xffffffffu));
    if (model.empty())
        throw Error("SentencePiece training produced an empty model");
    return model;
}

void initT5WeightsLikeHF(T5ForConditionalGenerationImpl& model, std::uint64_t seed, double factor)
{
    const auto& c = model.config();
    auto generator = at::detail::createCPUGenerator(seed);
    c10::NoGradGuard noGrad;
    const double dModel = static_cast<double>(c.dModel);
    for (const auto& item : model.named_parameters(/*recurse=*/true)) {
        const auto& name = item.key();
        auto tensor = item.value();
        double std = -1.0;
        if (hasSuffix(name, "layer_norm.weight")) { // layer_norm and final_layer_norm
            tensor.fill_(1.0);
            continue;
        }
        if (name == "shared.weight" || name == "lm_head.weight")
            std = factor * 1.0;
        else if (hasSuffix(name, "Attention.q.weight"))
            std = factor * std::pow(dModel * static_cast<double>(c.dKv), -0.5);
        else if (hasSuffix(name, "Attention.k.weight") || hasSuffix(name, "Attention.v.weight"))
            std = factor * std::pow(dModel, -0.5);
        else if (hasSuffix(name, "Attention.o.weight"))
            std = factor * std::pow(static_cast<double>(c.numHeads * c.dKv), -0.5);
        else if (hasSuffix(name, "relative_attention_bias.weight"))
            std = factor * std::pow(dModel, -0.5);
        else if (hasSuffix(name, "DenseReluDense.wi.weight") || hasSuffix(name, "DenseReluDense.wi_0.weight")
            || hasSuffix(name, "DenseReluDense.wi_1.weight"))
            std = factor * std::pow(dModel, -0.5);
        else if (hasSuffix(name, "DenseReluDense.wo.weight"))
            std = factor * std::pow(static_cast<double>(c.dFf), -0.5);
        else
            throw Error("initialising T5 weights: no HF initialisation rule for parameter " + name);
        if (tensor.is_cpu()) {
            tensor.normal_(0.0, std, generator);
        } else {
            auto cpu = at::empty(tensor.sizes(), tensor.options().device(at::kCPU));
            cpu.normal_(0.0, std, generator);
            tensor.copy_(cpu);
        }
    }
}

std::vector<bool> randomSpansNoiseMask(std::int64_t length, double noiseDensity, double meanNoiseSpanLength,
    const std::function<std::uint64_t(std::uint64_t)>& uniform)
{
    if (length < 2)
        throw Error("span corruption needs at least 2 tokens, got " + std::to_string(length));
    auto noise = roundHalfEven(static_cast<double>(length) * noiseDensity);
    noise = std::min(std::max<std::int64_t>(noise, 1), length - 1);
    const auto spans
        = std::max<std::int64_t>(roundHalfEven(static_cast<double>(noise) / meanNoiseSpanLength), 1);
    const auto nonNoise = length - noise;
    if (nonNoise < spans || noise < spans)
        throw Error("span corruption: " + std::to_string(length) + " tokens cannot hold "
            + std::to_string(spans) + " noise spans");
    const auto noiseLengths = randomSegmentation(noise, spans, uniform);
    const auto nonNoiseLengths = randomSegmentation(nonNoise, spans, uniform);
    std::vector<bool> mask;
    mask.reserve(static_cast<std::size_t>(length));
    for (std::int64_t s = 0; s < spans; ++s) {
        mask.insert(
            mask.end(), static_cast<std::size_t>(nonNoiseLengths[static_cast<std::size_t>(s)]), false);
        mask.insert(mask.end(), static_cast<std::size_t>(noiseLengths[static_cast<std::size_t>(s)]), true);
    }
    return mask;
}

SpanCorrupted applySpanCorruption(const std::vector<std::int64_t>& tokens, const std::vector<bool>& noiseMask,
    std::int64_t firstSentinelId, std::int64_t eosId, int maxSentinels)
{
    if (tokens.size() != noiseMask.size())
        throw Error("span corruption: " + std::to_string(tokens.size()) + " tokens but a mask of "
            + std::to_string(noiseMask.size()));
    SpanCorrupted out;
    int sentinel = 0;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (!noiseMask[i]) {
            out.inputs.push_back(tokens[i]);
            continue;
        }
        if (i == 0 || !noiseMask[i - 1]) {
            if (sentinel >= maxSentinels)
                throw Error("span corruption: more than " + std::to_string(maxSentinels)
                    + " noise spans; use shorter examples or more sentinels");
            const auto id = firstSentinelId - sentinel++;
            out.inputs.push_back(id);
            out.targets.push_back(id);
        }
        out.targets.push_back(tokens[i]);
    }
    out.inputs.push_back(eosId);
    out.targets.push_back(eosId);
    return out;
}

std::vector<std::string> readCorpusFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(path + ": cannot open the corpus file");
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.find_first_not_of(" \t\v\f") != std::string::npos)
            lines.push_back(line);
    }
    if (in.bad())
        throw Error(path + ": read error");
    if (lines.empty())
        throw Error(path + ": the corpus has no text (one sentence per line is expected)");
    return lines;
}

PretrainResult pretrainT5(const std::vector<std::string>& corpus, const std::string& outDir,
    const PretrainOptions& options, const PretrainCallback& callback, const std::string& recipeName)
{
    options.validate();
    const auto start = std::chrono::steady_clock::now();
    {
        if (demofs::exists(outDir) && !demofs::isEmptyDirectory(outDir))
            throw Error(outDir + " already exists; remove it or choose another output folder");
    }
    // The training thread's own settings (docs/PITFALLS.md: at::set_num_threads is per thread).
    const int threads = options.numThreads > 0
        ? options.numThreads
        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(threads);
    // Dropout draws from the default CPU generator; weights, data order and masks use their own.
    at::manual_seed(options.seed);

    PretrainResult result;
    result.corpusSentences = static_cast<std::int64_t>(corpus.size());
    PretrainProgress progress;
    progress.totalSteps = options.steps;
    auto report = [&](PretrainProgress::Stage stage, const std::string& message) {
        progress.stage = stage;
        progress.message = message;
        progress.elapsedSeconds = secondsSince(start);
        return !callback || callback(progress);
    };

    const auto staging = makeStagingDir(outDir);
    auto cancelled = [&]() {
        demofs::removeTree(staging);
        result.cancelled = true;
        return result;
    };
    try {
        // 1. Vocabulary.
        if (!report(PretrainProgress::Stage::Vocabulary,
                "SentencePiece unigram, " + std::to_string(options.vocabSize) + " pieces, on "
                    + std::to_string(corpus.size()) + " sentences"))
            return cancelled();
        const auto vocabStart = std::chrono::steady_clock::now();
        writeTextFile(demofs::join(staging, "spiece.model"),
            trainT5SentencePiece(corpus, options.vocabSize, options.seed));
        result.vocabularySeconds = secondsSince(vocabStart);
        const T5Tokenizer tokenizer(demofs::join(staging, "spiece.model"), options.extraIds);
        result.pieces = tokenizer.vocabSize() - options.extraIds;

        // 2. The packed token stream (each sentence ends with </s>, as HF's run_t5_mlm_flax.py packs).
        if (!report(PretrainProgress::Stage::Tokenising,
                "packing the corpus into chunks of " + std::to_string(options.rawLength) + " tokens"))
            return cancelled();
        const bool cooccurrence = options.embeddingInit == "cooccurrence";
        std::vector<std::int64_t> stream;
        std::vector<std::vector<std::int64_t>> sentenceIds; // for the co-occurrence embeddings
        if (cooccurrence)
            sentenceIds.reserve(corpus.size());
        for (const auto& sentence : corpus) {
            auto ids = tokenizer.encode(sentence, /*addEos=*/true);
            stream.insert(stream.end(), ids.begin(), ids.end());
            if (cooccurrence) {
                ids.pop_back(); // </s> is a separator, not a neighbour
                sentenceIds.push_back(std::move(ids));
            }
        }
        result.corpusTokens = static_cast<std::int64_t>(stream.size());
        const auto chunkCount = static_cast<std::int64_t>(stream.size()) / options.rawLength;
        if (chunkCount < options.heldOutExamples + options.batchSize)
            throw Error("the corpus is too small: " + std::to_string(stream.size()) + " tokens make "
                + std::to_string(chunkCount) + " chunks of " + std::to_string(options.rawLength) + ", but "
                + std::to_string(options.heldOutExamples + options.batchSize)
                + " are needed (held-out examples + one batch)");
        std::vector<std::int64_t> chunks(static_cast<std::size_t>(chunkCount));
        for (std::int64_t i = 0; i < chunkCount; ++i)
            chunks[static_cast<std::size_t>(i)] = i;
        SplitMix64 orderRng(options.seed ^ kChunkOrderSalt);
        shuffleInPlace(chunks, orderRng);
        const std::vector<std::int64_t> heldOutChunks(
            chunks.begin(), chunks.begin() + options.heldOutExamples);
        std::vector<std::int64_t> trainChunks(chunks.begin() + options.heldOutExamples, chunks.end());

        const auto firstSentinel = tokenizer.sentinelId(0);
        auto corrupt = [&](std::int64_t chunk, SplitMix64& rng) {
            const auto begin = stream.begin() + chunk * options.rawLength;
            const std::vector<std::int64_t> tokens(begin, begin + options.rawLength);
            const auto mask = randomSpansNoiseMask(options.rawLength, options.noiseDensity,
                options.meanNoiseSpanLength, [&](std::uint64_t n) { return rng.uniform(n); });
            return applySpanCorruption(tokens, mask, firstSentinel, tokenizer.eosId(), options.extraIds);
        };

        // 3. The model.
        const auto config = options.t5Config(result.pieces);
        if (config.vocabSize != tokenizer.vocabSize())
            throw Error("internal: model vocabulary " + std::to_string(config.vocabSize) + " != tokenizer "
                + std::to_string(tokenizer.vocabSize()));
        // The network pretrains with its own dropout; config.json keeps the fine-tuning dropout.
        auto trainingConfig = config;
        trainingConfig.dropoutRate = options.pretrainDropoutRate;
        T5ForConditionalGeneration model(trainingConfig);
        initT5WeightsLikeHF(*model, options.seed ^ kInitSalt);
        if (cooccurrence) {
            if (!report(PretrainProgress::Stage::Embeddings,
                    "co-occurrence embeddings: PPMI of a +-" + std::to_string(options.cooccurrenceWindow)
                        + " window, randomised SVD to " + std::to_string(options.dModel) + " dimensions"))
                return cancelled();
            CooccurrenceOptions co;
            co.dims = options.dModel;
            co.window = options.cooccurrenceWindow;
            co.seed = options.seed ^ kEmbeddingSalt;
            const auto embeddings = cooccurrenceEmbeddings(sentenceIds, result.pieces, co);
            sentenceIds.clear();
            sentenceIds.shrink_to_fit();
            c10::NoGradGuard noGrad;
            auto weight = model->shared->weight;
            for (std::int64_t i = 0; i < result.pieces; ++i)
                if (embeddings.seen[static_cast<std::size_t>(i)]) {
                    weight[i].copy_(embeddings.vectors[i]);
                    ++result.embeddedPieces;
                }
            result.embeddingSeconds = embeddings.seconds;
        }
        result.parameters = countParameters(*model);
        torch::optim::AdamW optimizer(model->parameters(),
            torch::optim::AdamWOptions(options.learningRate)
                .betas({ 0.9, 0.999 })
                .eps(1e-8)
                .weight_decay(options.weightDecay));

        // Held-out examples: fixed corruption, evaluated without dropout.
        std::vector<Batch> heldOut;
        {
            SplitMix64 rng(options.seed ^ kHeldOutSalt);
            std::vector<SpanCorrupted> examples;
            for (const auto chunk : heldOutChunks) {
                examples.push_back(corrupt(chunk, rng));
                if (static_cast<std::int64_t>(examples.size()) == options.batchSize) {
                    heldOut.push_back(makeBatch(examples));
                    examples.clear();
                }
            }
            if (!examples.empty())
                heldOut.push_back(makeBatch(examples));
        }
        auto heldOutLoss = [&]() {
            c10::NoGradGuard noGrad;
            model->eval();
            double sum = 0.0;
            std::int64_t rows = 0;
            for (const auto& b : heldOut) {
                const auto out = model->forward(b.inputs, at::ones_like(b.inputs), b.targets);
                sum += out.loss.item<double>() * static_cast<double>(b.inputs.size(0));
                rows += b.inputs.size(0);
            }
            model->train();
            return sum / static_cast<double>(rows);
        };

        // 4. Pretraining.
        if (!report(PretrainProgress::Stage::Training, "measuring the held-out loss"))
            return cancelled();
        result.heldOutLossBefore = heldOutLoss();
        model->train();
        SplitMix64 maskRng(options.seed ^ kMaskSalt);
        std::size_t nextChunk = 0;
        std::int64_t epoch = 0;
        const auto trainStart = std::chrono::steady_clock::now();
        for (std::int64_t step = 1; step <= options.steps; ++step) {
            std::vector<SpanCorrupted> examples;
            examples.reserve(static_cast<std::size_t>(options.batchSize));
            while (static_cast<std::int64_t>(examples.size()) < options.batchSize) {
                if (nextChunk == trainChunks.size()) {
                    // A new epoch: a new order, from a generator of its own.
                    SplitMix64 epochRng(options.seed ^ kChunkOrderSalt ^ static_cast<std::uint64_t>(++epoch));
                    shuffleInPlace(trainChunks, epochRng);
                    nextChunk = 0;
                }
                examples.push_back(corrupt(trainChunks[nextChunk++], maskRng));
            }
            const auto batch = makeBatch(examples);

            // Linear warm-up, then linear decay to 0 at the last step.
            double lr = options.learningRate;
            if (step <= options.warmupSteps)
                lr *= static_cast<double>(step) / static_cast<double>(options.warmupSteps);
            else
                lr *= static_cast<double>(options.steps - step + 1)
                    / static_cast<double>(std::max<std::int64_t>(1, options.steps - options.warmupSteps));
            for (auto& group : optimizer.param_groups())
                static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

            optimizer.zero_grad();
            const auto out = model->forward(batch.inputs, at::ones_like(batch.inputs), batch.targets);
            const double loss = out.loss.item<double>();
            if (!std::isfinite(loss))
                throw Error("pretraining diverged: the loss is " + std::to_string(loss) + " at step "
                    + std::to_string(step) + "; lower the learning rate");
            out.loss.backward();
            torch::nn::utils::clip_grad_norm_(model->parameters(), options.maxGradNorm);
            optimizer.step();

            result.losses.push_back(loss);
            result.trainedTokens += batch.inputs.numel() + batch.targets.numel();
            const double trainSeconds = secondsSince(trainStart);
            progress.step = step;
            progress.loss = loss;
            progress.smoothedLoss
                = step == 1 ? loss : kLossEma * progress.smoothedLoss + (1.0 - kLossEma) * loss;
            progress.learningRate = lr;
            progress.tokensPerSecond
                = static_cast<double>(result.trainedTokens) / std::max(trainSeconds, 1e-9);
            progress.etaSeconds
                = trainSeconds / static_cast<double>(step) * static_cast<double>(options.steps - step);
            if (!report(PretrainProgress::Stage::Training, {}))
                return cancelled();
        }
        result.trainingSeconds = secondsSince(trainStart);
        result.heldOutLossAfter = heldOutLoss();
        const auto n = result.losses.size();
        result.initialLoss = meanOf(result.losses, 0, std::min<std::size_t>(10, n));
        result.finalLoss = meanOf(result.losses, n - std::max<std::size_t>(1, n / 10), n);

        // 5. The HF folder.
        if (!report(PretrainProgress::Stage::Writing, "config.json, model.safetensors, spiece.model"))
            return cancelled();
        model->eval();
        writeTextFile(demofs::join(staging, "config.json"), config.toJson().dump(2) + "\n");
        TensorMap tensors;
        for (const auto& item : model->named_parameters(/*recurse=*/true))
            tensors[item.key()] = item.value().detach().contiguous();
        writeSafetensors(demofs::join(staging, "model.safetensors"), tensors,
            { { "format", "pt" }, { "producer", std::string("LadderBench ") + kVersion + " pretrain" } });
        const nlohmann::ordered_json tokenizerConfig = { { "tokenizer_class", "T5Tokenizer" },
            { "extra_ids", options.extraIds }, { "eos_token", "</s>" }, { "unk_token", "<unk>" },
            { "pad_token", "<pad>" }, { "model_max_length", 512 } };
        writeTextFile(demofs::join(staging, "tokenizer_config.json"), tokenizerConfig.dump(2) + "\n");

        result.wallSeconds = secondsSince(start);
        std::vector<double> losses;
        for (const auto l : result.losses)
            losses.push_back(rounded(l, 4));
        nlohmann::ordered_json manifest;
        manifest["producer"] = std::string("LadderBench ") + kVersion;
        manifest["libtorch"] = torchVersion();
        manifest["recipe"] = recipeName;
        manifest["recipe_version"] = kDemoRecipeVersion;
        manifest["seed"] = options.seed;
        manifest["recipe_options"] = recipeOptions(options);
        manifest["vocabulary"] = { { "type", "sentencepiece unigram" }, { "pieces", result.pieces },
            { "extra_ids", options.extraIds }, { "seconds", rounded(result.vocabularySeconds, 2) } };
        manifest["model"] = { { "d_model", options.dModel }, { "d_kv", options.dKv },
            { "num_heads", options.numHeads }, { "d_ff", options.dFf }, { "num_layers", options.numLayers },
            { "num_decoder_layers", options.numDecoderLayers }, { "dropout_rate", options.dropoutRate },
            { "pretrain_dropout_rate", options.pretrainDropoutRate }, { "parameters", result.parameters },
            { "init",
                cooccurrence
                    ? "HF T5 _init_weights, factor 1.0; token embeddings from co-occurrence (PPMI + SVD)"
                    : "HF T5 _init_weights, factor 1.0" } };
        manifest["embeddings"] = { { "init", options.embeddingInit },
            { "window", options.cooccurrenceWindow }, { "pieces_from_cooccurrence", result.embeddedPieces },
            { "seconds", rounded(result.embeddingSeconds, 2) } };
        manifest["objective"] = { { "type", "span corruption" }, { "noise_density", options.noiseDensity },
            { "mean_noise_span_length", options.meanNoiseSpanLength }, { "raw_length", options.rawLength },
            { "input_length", heldOut.front().inputs.size(1) },
            { "target_length", heldOut.front().targets.size(1) } };
        manifest["optimizer"] = { { "type", "AdamW" }, { "learning_rate", options.learningRate },
            { "schedule", "linear warm-up, linear decay to 0" }, { "warmup_steps", options.warmupSteps },
            { "weight_decay", options.weightDecay }, { "max_grad_norm", options.maxGradNorm },
            { "batch_size", options.batchSize } };
        manifest["steps"] = options.steps;
        manifest["threads"] = threads;
        manifest["corpus"] = { { "sentences", result.corpusSentences }, { "tokens", result.corpusTokens },
            { "chunks", chunkCount }, { "held_out_chunks", options.heldOutExamples } };
        manifest["trained_tokens"] = result.trainedTokens;
        manifest["initial_loss"] = rounded(result.initialLoss, 4);
        manifest["final_loss"] = rounded(result.finalLoss, 4);
        manifest["held_out_loss_before"] = rounded(result.heldOutLossBefore, 4);
        manifest["held_out_loss_after"] = rounded(result.heldOutLossAfter, 4);
        manifest["training_seconds"] = rounded(result.trainingSeconds, 2);
        manifest["wall_seconds"] = rounded(result.wallSeconds, 2);
        manifest["losses"] = losses;
        // Written last: its presence marks the folder complete.
        writeTextFile(demofs::join(staging, "ladderbench.json"), manifest.dump(2) + "\n");

        publishStagingDir(staging, outDir, &backboneComplete);
        result.directory = outDir;
        result.wallSeconds = secondsSince(start);
        return result;
    } catch (...) {
        try {
            demofs::removeTree(staging);
        } catch (const Error&) {
        }
        throw;
    }
}

namespace {
// The demo's manifest, or null when it is missing or unreadable (the demo is then rebuilt).
nlohmann::json readManifest(const std::string& path)
{
    try {
        return readJsonFile(path, "the demo's ladderbench.json");
    } catch (const Error&) {
        return nullptr;
    }
}
} // namespace

bool backboneComplete(const std::string& dir)
{
    for (const char* file : { "config.json", "model.safetensors", "spiece.model", "ladderbench.json" })
        if (!demofs::isFile(demofs::join(dir, file)))
            return false;
    const auto manifest = readManifest(demofs::join(dir, "ladderbench.json"));
    return manifest.is_object() && manifest.value("recipe_version", "") == kDemoRecipeVersion;
}

bool demoBackboneComplete(const std::string& dir)
{
    if (!backboneComplete(dir))
        return false;
    const auto manifest = readManifest(demofs::join(dir, "ladderbench.json"));
    return manifest.is_object() && manifest.value("recipe", "") == "demo"
        && manifest.contains("recipe_options")
        && manifest["recipe_options"] == recipeOptions(PretrainOptions::demo());
}

std::optional<PretrainResult> ensureDemoBackbone(
    const std::string& backboneDir, const std::string& wordNetDir, const PretrainCallback& callback)
{
    if (demoBackboneComplete(backboneDir))
        return std::nullopt;
    demofs::removeTree(backboneDir); // stale or partial
    const auto corpus = wordNetCorpus(loadWordNet(wordNetDir));
    return pretrainT5(corpus, backboneDir, PretrainOptions::demo(), callback, "demo");
}

} // namespace ladder
