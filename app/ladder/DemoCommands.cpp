// ladder pretrain | demo: LadderBench's own small T5 and decoder (Llama) and WordNet tasks, made offline
// (docs/DEMO.md).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "Commands.h"
#include "Interrupt.h"
#include "JsonOutput.h"
#include "data/DemoTasks.h"
#include "data/SceneTasks.h"
#include "data/WordNet.h"
#include "train/Pretrain.h"
#include "train/PretrainCausal.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

std::string clock(double seconds)
{
    if (!std::isfinite(seconds) || seconds < 0)
        return "--:--";
    const auto s = static_cast<long>(std::lround(seconds));
    std::ostringstream out;
    if (s >= 3600)
        out << s / 3600 << ":" << std::setw(2) << std::setfill('0') << (s / 60) % 60 << ":" << std::setw(2)
            << s % 60;
    else
        out << s / 60 << ":" << std::setw(2) << std::setfill('0') << s % 60;
    return out.str();
}

// A progress bar on stderr: redrawn in place on a terminal (at most ~5 times a second), one line every
// 5% of the steps otherwise (logs, CI). Returns false (cancel) once Ctrl+C was pressed: the pretraining
// stops at its next stage or step and leaves no half-built folder.
class ProgressBar {
public:
    explicit ProgressBar(std::string command)
        : m_command(std::move(command))
        , m_tty(::isatty(STDERR_FILENO) == 1)
    {
    }

    bool operator()(const PretrainProgress& p)
    {
        if (interrupted())
            return false;
        if (p.stage != PretrainProgress::Stage::Training || p.step == 0) {
            finishLine();
            if (!p.message.empty())
                std::cerr << "ladder " << m_command << ": " << toString(p.stage) << ": " << p.message
                          << std::endl;
            return true;
        }
        const auto now = std::chrono::steady_clock::now();
        const bool last = p.step == p.totalSteps;
        const auto every = std::max<std::int64_t>(1, p.totalSteps / 20);
        if (m_tty) {
            if (!last && p.step > 1 && now - m_lastDraw < std::chrono::milliseconds(200))
                return true;
            std::cerr << "\r" << line(p) << "\x1b[K" << std::flush;
            m_open = true;
            if (last)
                finishLine();
        } else if (p.step == 1 || last || p.step % every == 0) {
            std::cerr << line(p) << std::endl;
        }
        m_lastDraw = now;
        return !interrupted();
    }

    void finishLine()
    {
        if (m_open)
            std::cerr << std::endl;
        m_open = false;
    }

private:
    static std::string line(const PretrainProgress& p)
    {
        constexpr int width = 24;
        const double fraction
            = p.totalSteps > 0 ? static_cast<double>(p.step) / static_cast<double>(p.totalSteps) : 0.0;
        const int filled = static_cast<int>(fraction * width);
        std::ostringstream out;
        out << "[" << std::string(static_cast<std::size_t>(filled), '#')
            << std::string(static_cast<std::size_t>(width - filled), '.') << "] step " << p.step << "/"
            << p.totalSteps << std::fixed << std::setprecision(3) << "  loss " << p.loss << " (avg "
            << p.smoothedLoss << ")" << std::scientific << std::setprecision(1) << "  lr " << p.learningRate
            << std::fixed << std::setprecision(0) << "  " << p.tokensPerSecond << " tok/s  elapsed "
            << clock(p.elapsedSeconds) << "  ETA " << clock(p.etaSeconds);
        return out.str();
    }

    std::string m_command;
    bool m_tty;
    bool m_open = false;
    std::chrono::steady_clock::time_point m_lastDraw {};
};

void printSummary(const PretrainResult& r)
{
    std::cerr << std::fixed << std::setprecision(3) << "ladder: pretrained " << r.parameters
              << " parameters on " << r.corpusTokens << " corpus tokens (" << r.trainedTokens
              << " trained): loss " << r.initialLoss << " -> " << r.finalLoss << ", held-out "
              << r.heldOutLossBefore << " -> " << r.heldOutLossAfter << std::setprecision(1)
              << "; vocabulary " << r.vocabularySeconds << " s, embeddings " << r.embeddingSeconds << " s ("
              << r.embeddedPieces << " pieces), training " << r.trainingSeconds << " s, wall "
              << r.wallSeconds << " s\n";
}

struct PretrainFlags {
    std::string corpus;
    std::string out;
    std::int64_t steps = PretrainOptions::demo().steps;
    int vocabSize = PretrainOptions::demo().vocabSize;
    std::uint64_t seed = PretrainOptions::demo().seed;
    int threads = 0;
    double learningRate = PretrainOptions::demo().learningRate;
    std::int64_t batchSize = PretrainOptions::demo().batchSize;
    double pretrainDropout = PretrainOptions::demo().pretrainDropoutRate;
    std::string embeddingInit = PretrainOptions::demo().embeddingInit;
    std::int64_t dModel = PretrainOptions::demo().dModel;
    std::int64_t dFf = PretrainOptions::demo().dFf;
    std::int64_t numHeads = PretrainOptions::demo().numHeads;
    std::int64_t numLayers = PretrainOptions::demo().numLayers;
    std::string wordNetDir = defaultWordNetDir();
    bool json = false;
    // --arch llama: the decoder recipe (CausalPretrainOptions); its defaults differ from T5's, so the
    // options below say whether a flag was given (CLI11 counts them).
    std::string arch = "t5";
    std::int64_t kvHeads = CausalPretrainOptions::demo().numKeyValueHeads;
    std::map<std::string, const CLI::Option*> given;
    bool has(const std::string& flag) const
    {
        const auto it = given.find(flag);
        return it != given.end() && it->second->count() > 0;
    }
};

// The figures printSummary writes, as --json prints them (with the folder).
nlohmann::json summaryJson(const PretrainResult& r)
{
    return { { "directory", r.directory }, { "parameters", r.parameters },
        { "corpus_tokens", r.corpusTokens }, { "trained_tokens", r.trainedTokens },
        { "initial_loss", jsonNumber(r.initialLoss) }, { "final_loss", jsonNumber(r.finalLoss) },
        { "held_out_loss_before", jsonNumber(r.heldOutLossBefore) },
        { "held_out_loss_after", jsonNumber(r.heldOutLossAfter) },
        { "vocabulary_seconds", jsonNumber(r.vocabularySeconds) },
        { "embedding_seconds", jsonNumber(r.embeddingSeconds) }, { "embedded_pieces", r.embeddedPieces },
        { "training_seconds", jsonNumber(r.trainingSeconds) },
        { "wall_seconds", jsonNumber(r.wallSeconds) } };
}

// `ladder pretrain --arch llama`: the decoder recipe, with the flags given replacing its defaults.
PretrainResult pretrainLlamaFromFlags(
    const PretrainFlags& f, const std::vector<std::string>& corpus, bool wordnet, ProgressBar& bar)
{
    if (f.has("--pretrain-dropout"))
        throw Error("--pretrain-dropout: the decoder recipe pretrains without dropout (Llama has none)");
    auto options = CausalPretrainOptions::demo();
    options.seed = f.seed;
    options.numThreads = f.threads;
    options.embeddingInit = f.embeddingInit;
    if (f.has("--steps")) {
        options.steps = f.steps;
        options.warmupSteps = std::min(options.warmupSteps, std::max<std::int64_t>(1, f.steps / 10));
    }
    if (f.has("--vocab-size"))
        options.vocabSize = f.vocabSize;
    if (f.has("--learning-rate"))
        options.learningRate = f.learningRate;
    if (f.has("--batch-size"))
        options.batchSize = f.batchSize;
    if (f.has("--d-model"))
        options.hiddenSize = f.dModel;
    if (f.has("--d-ff"))
        options.intermediateSize = f.dFf;
    if (f.has("--heads"))
        options.numHeads = f.numHeads;
    if (f.has("--layers"))
        options.numLayers = f.numLayers;
    options.numKeyValueHeads = f.kvHeads;
    if (options.hiddenSize % options.numHeads != 0)
        throw Error("--d-model " + std::to_string(options.hiddenSize) + " is not a multiple of --heads "
            + std::to_string(options.numHeads));
    if (options.numHeads % options.numKeyValueHeads != 0)
        throw Error("--kv-heads " + std::to_string(options.numKeyValueHeads) + " does not divide --heads "
            + std::to_string(options.numHeads));
    const bool isDemoRecipe = wordnet && options.sameRecipe(CausalPretrainOptions::demo());
    return pretrainLlama(corpus, f.out, options, std::ref(bar), isDemoRecipe ? "demo" : "custom");
}

int runPretrain(const PretrainFlags& f)
{
    const bool wordnet = f.corpus == "wordnet";
    if (f.arch == "t5" && f.has("--kv-heads"))
        throw Error("--kv-heads: T5 has no grouped-query attention (use it with --arch llama)");
    const auto corpus = wordnet ? wordNetCorpus(loadWordNet(f.wordNetDir)) : readCorpusFile(f.corpus);
    throwIfInterrupted();
    if (f.arch == "llama") {
        ProgressBar bar("pretrain");
        const auto result = pretrainLlamaFromFlags(f, corpus, wordnet, bar);
        bar.finishLine();
        if (result.cancelled)
            throw Cancelled();
        printSummary(result);
        if (f.json)
            printJson(summaryJson(result));
        else
            std::cout << result.directory << "\n";
        return 0;
    }
    auto options = PretrainOptions::demo();
    options.steps = f.steps;
    options.vocabSize = f.vocabSize;
    options.seed = f.seed;
    options.numThreads = f.threads;
    options.learningRate = f.learningRate;
    options.batchSize = f.batchSize;
    options.pretrainDropoutRate = f.pretrainDropout;
    options.embeddingInit = f.embeddingInit;
    if (f.dModel % f.numHeads != 0)
        throw Error("--d-model " + std::to_string(f.dModel) + " is not a multiple of --heads "
            + std::to_string(f.numHeads));
    options.dModel = f.dModel;
    options.dKv = f.dModel / f.numHeads;
    options.numHeads = f.numHeads;
    options.dFf = f.dFf;
    options.numLayers = f.numLayers;
    options.numDecoderLayers = f.numLayers;
    options.warmupSteps = std::min(options.warmupSteps, std::max<std::int64_t>(1, f.steps / 10));
    // The built-in demo's recipe exactly: `ladder demo` accepts the folder as its backbone.
    const bool isDemoRecipe = wordnet && options.sameRecipe(PretrainOptions::demo());
    ProgressBar bar("pretrain");
    const auto result = pretrainT5(corpus, f.out, options, std::ref(bar), isDemoRecipe ? "demo" : "custom");
    bar.finishLine();
    if (result.cancelled)
        throw Cancelled();
    printSummary(result);
    if (f.json)
        printJson(summaryJson(result));
    else
        std::cout << result.directory << "\n";
    return 0;
}

struct DemoFlags {
    std::string dir;
    bool printBackbone = false;
    bool printLlama = false;
    bool printTasks = false;
    bool printVlTasks = false;
    std::string backbones = "all"; // which backbones to build: all, t5, llama
    std::string wordNetDir = defaultWordNetDir();
    bool json = false;
};

int runDemo(const DemoFlags& f)
{
    const auto root = f.dir.empty() ? demoCacheDir() : f.dir;
    const auto tasksDir = demofs::join(root, "tasks");
    // The vision-and-language demo task (issue #22): generated scenes, seconds to build; sceneTasksDir()
    // when --dir is not given.
    const auto scenesDir = demofs::join(root, "tasks-vl/scenes");
    const auto backboneDir = demofs::join(root, "backbone");
    const auto llamaDir = demofs::join(root, "backbone-llama");
    if (!demoTasksComplete(tasksDir)) {
        std::cerr << "ladder demo: building the WordNet tasks in " << tasksDir << std::endl;
        ensureDemoTasks(tasksDir, f.wordNetDir);
    }
    if (!sceneTasksComplete(scenesDir)) {
        std::cerr << "ladder demo: building the vision-and-language scene tasks in " << scenesDir
                  << std::endl;
        ensureSceneTasks(scenesDir);
    }
    throwIfInterrupted();
    const bool buildT5 = f.backbones != "llama";
    const bool buildLlama = f.backbones != "t5";
    if (buildT5 && !demoBackboneComplete(backboneDir)) {
        std::cerr << "ladder demo: building the demo backbone in " << backboneDir
                  << " (once; a few minutes on 2 cores)" << std::endl;
        ProgressBar bar("demo");
        const auto result = ensureDemoBackbone(backboneDir, f.wordNetDir, std::ref(bar));
        bar.finishLine();
        if (result && result->cancelled)
            throw Cancelled();
        if (result)
            printSummary(*result);
    }
    throwIfInterrupted();
    // The decoder-only backbone (issue #21) after the T5, so an interrupted first build leaves the T5
    // usable; like it, a complete folder is reused and a stale or partial one rebuilt.
    if (buildLlama && !demoLlamaBackboneComplete(llamaDir)) {
        std::cerr << "ladder demo: building the demo decoder (Llama) in " << llamaDir
                  << " (once; a few minutes on 2 cores)" << std::endl;
        ProgressBar bar("demo");
        const auto result = ensureDemoLlamaBackbone(llamaDir, f.wordNetDir, std::ref(bar));
        bar.finishLine();
        if (result && result->cancelled)
            throw Cancelled();
        if (result)
            printSummary(*result);
    }
    if (f.json) { // every folder, whichever --print-* flag is given
        printJson({ { "backbone", backboneDir }, { "backbone_llama", llamaDir }, { "tasks", tasksDir },
            { "tasks_vl", scenesDir } });
        return 0;
    }
    const bool backbone = f.printBackbone || (!f.printTasks && !f.printLlama && !f.printVlTasks);
    if (backbone)
        std::cout << backboneDir << "\n";
    if (f.printLlama)
        std::cout << llamaDir << "\n";
    if (f.printTasks)
        std::cout << tasksDir << "\n";
    if (f.printVlTasks)
        std::cout << scenesDir << "\n";
    return 0;
}

} // namespace

void registerDemoCommands(CLI::App& app)
{
    {
        auto flags = std::make_shared<PretrainFlags>();
        auto* cmd = app.add_subcommand("pretrain",
            "Train a SentencePiece vocabulary and pretrain a small T5 (span corruption) or, with --arch "
            "llama, "
            "a small Llama decoder (next-token prediction) into an HF folder");
        cmd->add_option("--corpus", flags->corpus,
               "'wordnet' (WordNet's glosses and examples) or a text file, one "
               "sentence per line")
            ->required();
        cmd->add_option("--out", flags->out, "output folder (must not exist, or be empty)")->required();
        cmd->add_option("--steps", flags->steps, "optimizer steps")
            ->capture_default_str()
            ->check(CLI::Range(1, 10000000));
        cmd->add_option(
               "--vocab-size", flags->vocabSize, "SentencePiece pieces (the model adds 100 sentinels)")
            ->capture_default_str()
            ->check(CLI::Range(16, 1000000));
        cmd->add_option("--seed", flags->seed, "seed of the vocabulary, initialisation, data order and masks")
            ->capture_default_str();
        cmd->add_option("--learning-rate", flags->learningRate, "AdamW peak learning rate")
            ->capture_default_str()
            ->check(CLI::PositiveNumber);
        cmd->add_option("--batch-size", flags->batchSize, "examples per step")
            ->capture_default_str()
            ->check(CLI::Range(1, 4096));
        cmd->add_option("--pretrain-dropout", flags->pretrainDropout,
               "dropout while pretraining (config.json keeps the recipe's fine-tuning dropout, 0)")
            ->capture_default_str()
            ->check(CLI::Range(0.0, 0.99));
        cmd->add_option("--embedding-init", flags->embeddingInit,
               "token embeddings before pretraining: cooccurrence (PPMI + SVD of the corpus) or random")
            ->capture_default_str()
            ->check(CLI::IsMember({ "cooccurrence", "random" }));
        cmd->add_option("--arch", flags->arch,
               "t5 (span corruption, spiece.model) or llama (a decoder-only Llama: next-token prediction, "
               "tokenizer.model; its own defaults: 4 layers, d_ff 704, 2 kv heads, 400 steps)")
            ->capture_default_str()
            ->check(CLI::IsMember({ "t5", "llama" }));
        flags->given["--kv-heads"] = cmd->add_option("--kv-heads", flags->kvHeads,
                                            "key/value heads of grouped-query attention (--arch llama)")
                                         ->capture_default_str()
                                         ->check(CLI::Range(1, 128));
        cmd->add_option("--d-model", flags->dModel, "model width")
            ->capture_default_str()
            ->check(CLI::Range(8, 4096));
        cmd->add_option("--d-ff", flags->dFf, "feed-forward width")
            ->capture_default_str()
            ->check(CLI::Range(8, 65536));
        cmd->add_option("--heads", flags->numHeads, "attention heads (d_kv = d_model / heads)")
            ->capture_default_str()
            ->check(CLI::Range(1, 128));
        cmd->add_option("--layers", flags->numLayers, "encoder layers (and as many decoder layers)")
            ->capture_default_str()
            ->check(CLI::Range(1, 64));
        cmd->add_option("--threads", flags->threads, "CPU threads (0 = all)")
            ->capture_default_str()
            ->check(CLI::Range(0, 1024));
        cmd->add_option("--wordnet-dir", flags->wordNetDir, "folder with WordNet's data.* files")
            ->capture_default_str();
        cmd->add_flag("--json", flags->json,
            "print the figures and the folder as JSON (the summary line stays on stderr)");
        for (const char* name : { "--steps", "--vocab-size", "--learning-rate", "--batch-size",
                 "--pretrain-dropout", "--d-model", "--d-ff", "--heads", "--layers" })
            flags->given[name] = cmd->get_option(name);
        cmd->callback([flags] {
            installInterruptHandler(); // Ctrl+C stops at the next stage or step; a second one at once
            runGuarded("pretrain", [&] { return runPretrain(*flags); });
        });
    }
    {
        auto flags = std::make_shared<DemoFlags>();
        auto* cmd = app.add_subcommand("demo",
            "Build the built-in demo (WordNet tasks, a pretrained small T5 and a small Llama decoder) if "
            "missing; print the T5 backbone folder");
        cmd->add_option("--dir", flags->dir,
            "demo folder (default: $XDG_CACHE_HOME/ladderbench/" + std::string(kDemoRecipeVersion) + ")");
        cmd->add_flag(
            "--print-backbone-path", flags->printBackbone, "print the T5 backbone folder (the default)");
        cmd->add_flag("--print-llama-path", flags->printLlama,
            "print the decoder-only (Llama) backbone folder (backbone-llama; the spec name \"demo-llama\")");
        cmd->add_option("--backbones", flags->backbones, "which backbones to build: all, t5 or llama")
            ->capture_default_str()
            ->check(CLI::IsMember({ "all", "t5", "llama" }));
        cmd->add_flag("--print-tasks-path", flags->printTasks,
            "print the tasks folder (tasks/<name>/{train,validation,test}.jsonl)");
        cmd->add_flag("--print-vl-tasks-path", flags->printVlTasks,
            "print the vision-and-language scene tasks' folder (tasks-vl/scenes)");
        cmd->add_option("--wordnet-dir", flags->wordNetDir, "folder with WordNet's data.* files")
            ->capture_default_str();
        cmd->add_flag(
            "--json", flags->json, "print {backbone, backbone_llama, tasks, tasks_vl}: every folder");
        cmd->callback([flags] {
            installInterruptHandler(); // Ctrl+C stops at the next stage or step; a second one at once
            runGuarded("demo", [&] { return runDemo(*flags); });
        });
    }
}

} // namespace ladder::cli
