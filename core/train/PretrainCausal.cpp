// The demo's decoder-only backbone (PretrainCausal.h). Its special ids are Llama's: unk 0, bos 1, eos 2.
// Llama has no pad token; this folder pads with unk (pad_token "<unk>" in tokenizer_config.json and
// pad_token_id 0 in config.json) rather than adding a pad piece, because
// - HF's LlamaTokenizer then reads the folder as LadderBench does (with pad_token_id alone in config.json
//   HF's tokenizer would have no pad token and refuse padding=True);
// - the vocabulary stays Llama's layout (3 specials, 256 bytes, merges), which an added piece would break;
// - unk never occurs in the data (byte fallback spells every unknown character), so a padded position can
//   never be mistaken for text; padding is masked and its labels are -100 anyway. It is also what Llama 2
//   fine-tuning recipes commonly do (tokenizer.pad_token = tokenizer.unk_token).
#include "train/PretrainCausal.h"

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
#include "model/Tokenizer.h"
#include "model/TokenizerLoad.h"
#include "model/llama/LlamaModel.h"
#include "train/CooccurrenceEmbeddings.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/SplitMix64.h"

namespace ladder {

namespace {

// Salts that keep the generators of one seed independent (the T5 recipe's values, other streams).
constexpr std::uint64_t kChunkOrderSalt = 0x6368756e6b73ull; // "chunks"
constexpr std::uint64_t kInitSalt = 0x696e6974ull; // "init"
constexpr std::uint64_t kEmbeddingSalt = 0x656d626564ull; // "embed"
constexpr double kLossEma = 0.9;
constexpr std::int64_t kUnkId = 0, kBosId = 1, kEosId = 2;

void writeFile(const std::string& path, const std::string& bytes)
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

bool hasSuffix(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every option that changes the weights; "architecture" keeps a T5 manifest from ever matching.
nlohmann::json recipeOptions(const CausalPretrainOptions& o)
{
    return { { "architecture", "llama" }, { "vocab_size", o.vocabSize }, { "hidden_size", o.hiddenSize },
        { "intermediate_size", o.intermediateSize }, { "num_hidden_layers", o.numLayers },
        { "num_attention_heads", o.numHeads }, { "num_key_value_heads", o.numKeyValueHeads },
        { "max_position_embeddings", o.maxPositionEmbeddings }, { "rope_theta", o.ropeTheta },
        { "rms_norm_eps", o.rmsNormEps }, { "tie_word_embeddings", o.tieWordEmbeddings },
        { "initializer_range", o.initializerRange }, { "embedding_init", o.embeddingInit },
        { "cooccurrence_std", o.cooccurrenceStd }, { "cooccurrence_window", o.cooccurrenceWindow },
        { "sequence_length", o.sequenceLength }, { "steps", o.steps }, { "batch_size", o.batchSize },
        { "learning_rate", o.learningRate }, { "warmup_steps", o.warmupSteps },
        { "weight_decay", o.weightDecay }, { "max_grad_norm", o.maxGradNorm },
        { "held_out_examples", o.heldOutExamples }, { "seed", o.seed } };
}

// HF's added_tokens_decoder entry for a special token, as Llama 2's tokenizer_config.json writes it.
nlohmann::ordered_json addedToken(const std::string& content)
{
    return { { "content", content }, { "lstrip", false }, { "normalized", false }, { "rstrip", false },
        { "single_word", false }, { "special", true } };
}

// HF's LlamaTokenizer settings: <s> first, no </s>, legacy false (transformers 5's Metaspace rule),
// pad = unk (the file's header says why).
nlohmann::ordered_json tokenizerConfigJson(std::int64_t maxLength)
{
    nlohmann::ordered_json j;
    j["tokenizer_class"] = "LlamaTokenizer";
    j["add_bos_token"] = true;
    j["add_eos_token"] = false;
    j["added_tokens_decoder"]
        = { { "0", addedToken("<unk>") }, { "1", addedToken("<s>") }, { "2", addedToken("</s>") } };
    j["bos_token"] = "<s>";
    j["eos_token"] = "</s>";
    j["unk_token"] = "<unk>";
    j["pad_token"] = "<unk>";
    j["legacy"] = false;
    j["clean_up_tokenization_spaces"] = false;
    j["model_max_length"] = maxLength;
    j["sp_model_kwargs"] = nlohmann::ordered_json::object();
    return j;
}

// config.json as HF writes a LlamaForCausalLM's: LlamaConfig's fields (transformers 5's rope_parameters)
// plus what transformers 4 reads (top-level rope_theta) and HF's bookkeeping fields.
nlohmann::ordered_json configJson(const LlamaConfig& config, double initializerRange)
{
    nlohmann::ordered_json j;
    j["architectures"] = { "LlamaForCausalLM" };
    const nlohmann::json fields = config.toJson(); // held: items() of a temporary would dangle
    for (const auto& [key, value] : fields.items())
        j[key] = value;
    j["rope_theta"] = config.rope.theta;
    j["rope_scaling"] = nullptr;
    j["initializer_range"] = initializerRange;
    j["attention_dropout"] = 0.0;
    j["pretraining_tp"] = 1;
    j["use_cache"] = true;
    j["torch_dtype"] = "float32";
    j["dtype"] = "float32";
    return j;
}

// Next-token batches need no padding: every chunk has the same length.
at::Tensor makeBatch(const std::vector<std::int64_t>& stream, const std::vector<std::int64_t>& chunks,
    std::size_t first, std::size_t count, std::int64_t length)
{
    auto batch = at::empty({ static_cast<std::int64_t>(count), length }, at::kLong);
    auto* out = batch.data_ptr<std::int64_t>();
    for (std::size_t r = 0; r < count; ++r) {
        const auto begin = stream.begin() + chunks[first + r] * length;
        std::copy(begin, begin + length, out + static_cast<std::int64_t>(r) * length);
    }
    return batch;
}

nlohmann::json readManifest(const std::string& path)
{
    try {
        return readJsonFile(path, "the demo's ladderbench.json");
    } catch (const Error&) {
        return nullptr;
    }
}

} // namespace

CausalPretrainOptions CausalPretrainOptions::tiny()
{
    CausalPretrainOptions o;
    o.vocabSize = 400;
    o.hiddenSize = 64;
    o.intermediateSize = 176;
    o.numLayers = 2;
    o.numHeads = 4;
    o.numKeyValueHeads = 2;
    o.sequenceLength = 48;
    o.steps = 40;
    o.batchSize = 8;
    o.learningRate = 3e-3;
    o.warmupSteps = 4;
    o.heldOutExamples = 16;
    return o;
}

void CausalPretrainOptions::validate() const
{
    auto require = [](bool ok, const std::string& message) {
        if (!ok)
            throw Error("decoder pretraining recipe: " + message);
    };
    // 3 specials + 256 bytes, and room for merges.
    require(vocabSize >= 300,
        "vocab_size must be at least 300 (259 special and byte pieces), got " + std::to_string(vocabSize));
    require(hiddenSize > 0 && intermediateSize > 0 && numLayers > 0,
        "hidden_size, intermediate_size and num_hidden_layers must be positive");
    require(numHeads > 0 && hiddenSize % numHeads == 0,
        "num_attention_heads must divide hidden_size " + std::to_string(hiddenSize));
    require(numKeyValueHeads > 0 && numHeads % numKeyValueHeads == 0,
        "num_key_value_heads must divide num_attention_heads " + std::to_string(numHeads));
    require(
        maxPositionEmbeddings >= sequenceLength, "max_position_embeddings must be at least sequence_length");
    require(ropeTheta > 0.0, "rope_theta must be positive");
    require(rmsNormEps > 0.0 && rmsNormEps < 1.0, "rms_norm_eps must be in (0, 1)");
    require(initializerRange > 0.0, "initializer_range must be positive");
    require(embeddingInit == "cooccurrence" || embeddingInit == "random",
        "embedding_init must be \"cooccurrence\" or \"random\", got \"" + embeddingInit + "\"");
    require(cooccurrenceStd > 0.0, "cooccurrence_std must be positive");
    require(cooccurrenceWindow >= 1, "cooccurrence_window must be at least 1");
    require(embeddingInit != "cooccurrence" || hiddenSize <= static_cast<std::int64_t>(vocabSize),
        "co-occurrence embeddings need hidden_size <= vocab_size");
    require(sequenceLength >= 2, "sequence_length must be at least 2 tokens");
    require(steps >= 1, "steps must be at least 1, got " + std::to_string(steps));
    require(batchSize >= 1, "batch_size must be at least 1");
    require(learningRate > 0.0 && std::isfinite(learningRate), "learning_rate must be positive");
    require(warmupSteps >= 0, "warmup_steps must not be negative");
    require(weightDecay >= 0.0, "weight_decay must not be negative");
    require(maxGradNorm > 0.0, "max_grad_norm must be positive");
    require(heldOutExamples >= 1, "held_out_examples must be at least 1");
    require(numThreads >= 0, "threads must not be negative");
}

nlohmann::json CausalPretrainOptions::recipeJson() const
{
    return recipeOptions(*this);
}

bool CausalPretrainOptions::sameRecipe(const CausalPretrainOptions& other) const
{
    return recipeOptions(*this) == recipeOptions(other);
}

LlamaConfig CausalPretrainOptions::llamaConfig(std::int64_t pieces) const
{
    LlamaConfig c;
    c.modelType = "llama";
    c.vocabSize = pieces;
    c.hiddenSize = hiddenSize;
    c.intermediateSize = intermediateSize;
    c.numHiddenLayers = numLayers;
    c.numAttentionHeads = numHeads;
    c.numKeyValueHeads = numKeyValueHeads;
    c.headDim = hiddenSize / numHeads;
    c.maxPositionEmbeddings = maxPositionEmbeddings;
    c.rmsNormEps = rmsNormEps;
    c.rope.type = "default";
    c.rope.theta = ropeTheta;
    c.tieWordEmbeddings = tieWordEmbeddings;
    c.bosTokenId = kBosId;
    c.eosTokenIds = { kEosId };
    c.padTokenId = kUnkId;
    c.validate();
    return c;
}

std::string trainLlamaSentencePiece(
    const std::vector<std::string>& sentences, int vocabSize, std::uint64_t seed)
{
    if (sentences.empty())
        throw Error("SentencePiece training: the corpus is empty");
    const std::unordered_map<std::string, std::string> args = {
        // Llama 2's tokenizer.model: BPE, byte fallback, digits split, whitespace kept as written.
        { "model_type", "bpe" },
        { "vocab_size", std::to_string(vocabSize) },
        { "unk_id", "0" },
        { "bos_id", "1" },
        { "eos_id", "2" },
        { "pad_id", "-1" },
        { "byte_fallback", "true" },
        { "split_digits", "true" },
        { "allow_whitespace_only_pieces", "true" },
        { "normalization_rule_name", "identity" },
        { "remove_extra_whitespaces", "false" },
        { "add_dummy_prefix", "true" },
        { "character_coverage", "0.9995" },
        // Determinism: one thread, every sentence in the given order (docs/DEMO.md, "Determinism").
        { "num_threads", "1" },
        { "input_sentence_size", "0" },
        { "shuffle_input_sentence", "false" },
        { "minloglevel", "1" },
    };
    const auto model = trainSentencePiece(args, sentences, static_cast<unsigned>(seed & 0xffffffffu));
    if (model.empty())
        throw Error("SentencePiece training produced an empty model");
    return model;
}

void initLlamaWeightsLikeHF(LlamaForCausalLMImpl& model, std::uint64_t seed, double initializerRange)
{
    auto generator = at::detail::createCPUGenerator(seed);
    c10::NoGradGuard noGrad;
    for (const auto& item : model.named_parameters(/*recurse=*/true)) {
        const auto& name = item.key();
        auto tensor = item.value();
        if (hasSuffix(name, "norm.weight")) { // input_layernorm, post_attention_layernorm, model.norm
            tensor.fill_(1.0);
            continue;
        }
        if (hasSuffix(name, ".bias")) {
            tensor.zero_();
            continue;
        }
        if (!hasSuffix(name, "_proj.weight") && name != "lm_head.weight"
            && name != "model.embed_tokens.weight")
            throw Error("initialising Llama weights: no HF initialisation rule for parameter " + name);
        auto cpu = at::empty(tensor.sizes(), tensor.options().device(at::kCPU));
        cpu.normal_(0.0, initializerRange, generator);
        if (name == "model.embed_tokens.weight" && model.config().padTokenId)
            cpu[*model.config().padTokenId].zero_(); // HF's padding_idx row
        tensor.copy_(cpu);
    }
}

PretrainResult pretrainLlama(const std::vector<std::string>& corpus, const std::string& outDir,
    const CausalPretrainOptions& options, const PretrainCallback& callback, const std::string& recipeName)
{
    options.validate();
    const auto start = std::chrono::steady_clock::now();
    if (demofs::exists(outDir) && !demofs::isEmptyDirectory(outDir))
        throw Error(outDir + " already exists; remove it or choose another output folder");
    // The training thread's own settings (docs/PITFALLS.md: at::set_num_threads is per thread).
    const int threads = options.numThreads > 0
        ? options.numThreads
        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(threads);
    at::manual_seed(options.seed); // nothing draws from it (no dropout); set for any kernel that might

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
        // 1. Vocabulary, and the tokenizer and model configs (they do not depend on the weights): the
        // corpus is then tokenised by loadTokenizer on this folder, exactly as fine-tuning will read it.
        if (!report(PretrainProgress::Stage::Vocabulary,
                "SentencePiece BPE with byte fallback, " + std::to_string(options.vocabSize) + " pieces, on "
                    + std::to_string(corpus.size()) + " sentences"))
            return cancelled();
        const auto vocabStart = std::chrono::steady_clock::now();
        writeFile(demofs::join(staging, "tokenizer.model"),
            trainLlamaSentencePiece(corpus, options.vocabSize, options.seed));
        result.vocabularySeconds = secondsSince(vocabStart);
        result.pieces = SentencePieceModel(demofs::join(staging, "tokenizer.model")).pieceSize();
        const auto config = options.llamaConfig(result.pieces);
        writeFile(demofs::join(staging, "config.json"),
            configJson(config, options.initializerRange).dump(2) + "\n");
        writeFile(demofs::join(staging, "tokenizer_config.json"),
            tokenizerConfigJson(options.maxPositionEmbeddings).dump(2) + "\n");
        const auto tokenizer = loadTokenizer(staging);
        if (tokenizer->vocabSize() != config.vocabSize || tokenizer->padId() != kUnkId
            || tokenizer->eosId() != kEosId || tokenizer->bosId() != std::optional<std::int64_t>(kBosId))
            throw Error("internal: the written tokenizer does not have Llama's special ids");

        // 2. The packed stream: <s> sentence </s>, as Llama's documents are packed.
        if (!report(PretrainProgress::Stage::Tokenising,
                "packing the corpus into chunks of " + std::to_string(options.sequenceLength) + " tokens"))
            return cancelled();
        const bool cooccurrence = options.embeddingInit == "cooccurrence";
        std::vector<std::int64_t> stream;
        std::vector<std::vector<std::int64_t>> sentenceIds; // for the co-occurrence embeddings
        if (cooccurrence)
            sentenceIds.reserve(corpus.size());
        for (const auto& sentence : corpus) {
            auto ids = tokenizer->encode(sentence, /*addSpecialTokens=*/false);
            stream.push_back(kBosId);
            stream.insert(stream.end(), ids.begin(), ids.end());
            stream.push_back(kEosId);
            if (cooccurrence)
                sentenceIds.push_back(std::move(ids));
        }
        result.corpusTokens = static_cast<std::int64_t>(stream.size());
        const auto chunkCount = result.corpusTokens / options.sequenceLength;
        if (chunkCount < options.heldOutExamples + options.batchSize)
            throw Error("the corpus is too small: " + std::to_string(stream.size()) + " tokens make "
                + std::to_string(chunkCount) + " chunks of " + std::to_string(options.sequenceLength)
                + ", but " + std::to_string(options.heldOutExamples + options.batchSize)
                + " are needed (held-out examples + one batch)");
        std::vector<std::int64_t> chunks(static_cast<std::size_t>(chunkCount));
        for (std::int64_t i = 0; i < chunkCount; ++i)
            chunks[static_cast<std::size_t>(i)] = i;
        SplitMix64 orderRng(options.seed ^ kChunkOrderSalt);
        for (std::size_t i = chunks.size(); i > 1; --i)
            std::swap(chunks[i - 1], chunks[orderRng.uniform(i)]);
        const std::vector<std::int64_t> heldOutChunks(
            chunks.begin(), chunks.begin() + options.heldOutExamples);
        std::vector<std::int64_t> trainChunks(chunks.begin() + options.heldOutExamples, chunks.end());

        // 3. The model.
        LlamaForCausalLM model(config);
        initLlamaWeightsLikeHF(*model, options.seed ^ kInitSalt, options.initializerRange);
        if (cooccurrence) {
            if (!report(PretrainProgress::Stage::Embeddings,
                    "co-occurrence embeddings: PPMI of a +-" + std::to_string(options.cooccurrenceWindow)
                        + " window, randomised SVD to " + std::to_string(options.hiddenSize) + " dimensions"))
                return cancelled();
            CooccurrenceOptions co;
            co.dims = options.hiddenSize;
            co.window = options.cooccurrenceWindow;
            co.seed = options.seed ^ kEmbeddingSalt;
            const auto embeddings = cooccurrenceEmbeddings(sentenceIds, result.pieces, co);
            sentenceIds.clear();
            sentenceIds.shrink_to_fit();
            c10::NoGradGuard noGrad;
            auto weight = model->model->embed_tokens->weight;
            for (std::int64_t i = 0; i < result.pieces; ++i)
                if (embeddings.seen[static_cast<std::size_t>(i)] && i != kUnkId) {
                    weight[i].copy_(embeddings.vectors[i] * options.cooccurrenceStd);
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

        auto heldOutLoss = [&]() {
            c10::NoGradGuard noGrad;
            model->eval();
            double sum = 0.0;
            for (std::size_t first = 0; first < heldOutChunks.size();
                 first += static_cast<std::size_t>(options.batchSize)) {
                const auto count
                    = std::min(heldOutChunks.size() - first, static_cast<std::size_t>(options.batchSize));
                const auto ids = makeBatch(stream, heldOutChunks, first, count, options.sequenceLength);
                sum += model->forward(ids, {}, ids).loss.item<double>() * static_cast<double>(count);
            }
            model->train();
            return sum / static_cast<double>(heldOutChunks.size());
        };

        // 4. Pretraining.
        if (!report(PretrainProgress::Stage::Training, "measuring the held-out loss"))
            return cancelled();
        result.heldOutLossBefore = heldOutLoss();
        model->train();
        std::size_t nextChunk = 0;
        std::int64_t epoch = 0;
        const auto trainStart = std::chrono::steady_clock::now();
        for (std::int64_t step = 1; step <= options.steps; ++step) {
            if (nextChunk + static_cast<std::size_t>(options.batchSize) > trainChunks.size()) {
                // A new epoch: a new order, from a generator of its own.
                SplitMix64 epochRng(options.seed ^ kChunkOrderSalt ^ static_cast<std::uint64_t>(++epoch));
                for (std::size_t i = trainChunks.size(); i > 1; --i)
                    std::swap(trainChunks[i - 1], trainChunks[epochRng.uniform(i)]);
                nextChunk = 0;
            }
            const auto ids = makeBatch(stream, trainChunks, nextChunk,
                static_cast<std::size_t>(options.batchSize), options.sequenceLength);
            nextChunk += static_cast<std::size_t>(options.batchSize);

            // Linear warm-up, then linear decay to 0 at the last step (the T5 recipe's schedule).
            double lr = options.learningRate;
            if (step <= options.warmupSteps)
                lr *= static_cast<double>(step) / static_cast<double>(options.warmupSteps);
            else
                lr *= static_cast<double>(options.steps - step + 1)
                    / static_cast<double>(std::max<std::int64_t>(1, options.steps - options.warmupSteps));
            for (auto& group : optimizer.param_groups())
                static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

            optimizer.zero_grad();
            const auto loss = model->forward(ids, {}, ids).loss;
            const double value = loss.item<double>();
            if (!std::isfinite(value))
                throw Error("decoder pretraining diverged: the loss is " + std::to_string(value) + " at step "
                    + std::to_string(step) + "; lower the learning rate");
            loss.backward();
            torch::nn::utils::clip_grad_norm_(model->parameters(), options.maxGradNorm);
            optimizer.step();

            result.losses.push_back(value);
            result.trainedTokens += ids.numel();
            const double trainSeconds = secondsSince(trainStart);
            progress.step = step;
            progress.loss = value;
            progress.smoothedLoss
                = step == 1 ? value : kLossEma * progress.smoothedLoss + (1.0 - kLossEma) * value;
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

        // 5. The weights and the manifest.
        if (!report(PretrainProgress::Stage::Writing, "model.safetensors, ladderbench.json"))
            return cancelled();
        model->eval();
        TensorMap tensors;
        for (const auto& item : model->named_parameters(/*recurse=*/true))
            tensors[item.key()] = item.value().detach().contiguous();
        writeSafetensors(demofs::join(staging, "model.safetensors"), tensors,
            { { "format", "pt" }, { "producer", std::string("LadderBench ") + kVersion + " pretrain" } });

        result.wallSeconds = secondsSince(start);
        std::vector<double> losses;
        for (const auto l : result.losses)
            losses.push_back(rounded(l, 4));
        nlohmann::ordered_json manifest;
        manifest["producer"] = std::string("LadderBench ") + kVersion;
        manifest["libtorch"] = torchVersion();
        manifest["architecture"] = "llama";
        manifest["recipe"] = recipeName;
        manifest["recipe_version"] = kDemoRecipeVersion;
        manifest["seed"] = options.seed;
        manifest["recipe_options"] = recipeOptions(options);
        manifest["vocabulary"] = { { "type", "sentencepiece bpe, byte fallback" },
            { "pieces", result.pieces },
            { "special_ids", { { "unk", kUnkId }, { "bos", kBosId }, { "eos", kEosId }, { "pad", kUnkId } } },
            { "seconds", rounded(result.vocabularySeconds, 2) } };
        manifest["model"] = { { "hidden_size", options.hiddenSize },
            { "intermediate_size", options.intermediateSize }, { "num_hidden_layers", options.numLayers },
            { "num_attention_heads", options.numHeads }, { "num_key_value_heads", options.numKeyValueHeads },
            { "tie_word_embeddings", options.tieWordEmbeddings }, { "parameters", result.parameters },
            { "init",
                cooccurrence ? "HF Llama _init_weights (initializer_range); token embeddings from "
                               "co-occurrence (PPMI + SVD)"
                             : "HF Llama _init_weights (initializer_range)" } };
        manifest["embeddings"] = { { "init", options.embeddingInit }, { "std", options.cooccurrenceStd },
            { "window", options.cooccurrenceWindow }, { "pieces_from_cooccurrence", result.embeddedPieces },
            { "seconds", rounded(result.embeddingSeconds, 2) } };
        manifest["objective"] = { { "type", "next-token prediction on packed chunks" },
            { "sequence_length", options.sequenceLength } };
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
        writeFile(demofs::join(staging, "ladderbench.json"), manifest.dump(2) + "\n");

        publishStagingDir(staging, outDir, &causalBackboneComplete);
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

bool causalBackboneComplete(const std::string& dir)
{
    for (const char* file : { "config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json",
             "ladderbench.json" })
        if (!demofs::isFile(demofs::join(dir, file)))
            return false;
    const auto manifest = readManifest(demofs::join(dir, "ladderbench.json"));
    return manifest.is_object() && manifest.value("recipe_version", "") == kDemoRecipeVersion
        && manifest.value("architecture", "") == "llama";
}

bool demoLlamaBackboneComplete(const std::string& dir)
{
    if (!causalBackboneComplete(dir))
        return false;
    const auto manifest = readManifest(demofs::join(dir, "ladderbench.json"));
    return manifest.is_object() && manifest.value("recipe", "") == "demo"
        && manifest.contains("recipe_options")
        && manifest["recipe_options"] == recipeOptions(CausalPretrainOptions::demo());
}

std::optional<PretrainResult> ensureDemoLlamaBackbone(
    const std::string& backboneDir, const std::string& wordNetDir, const PretrainCallback& callback)
{
    if (demoLlamaBackboneComplete(backboneDir))
        return std::nullopt;
    const auto corpus = wordNetCorpus(loadWordNet(wordNetDir)); // first: a missing WordNet changes nothing
    demofs::removeTree(backboneDir); // stale or partial
    return pretrainLlama(corpus, backboneDir, CausalPretrainOptions::demo(), callback, "demo");
}

} // namespace ladder
