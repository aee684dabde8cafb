// ladder bench speed: training step time per method and LST epoch time with and without the ladder
// activation cache, measured side by side in one run on the same data.
#include "BenchSpeedCommands.h"

#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "JsonOutput.h"
#include "MethodFlags.h"
#include "ProgressLine.h"
#include "train/SpeedBench.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

struct BenchSpeedFlags {
    std::string shape = "t5-small";
    std::string model;
    std::int64_t batch = 16;
    std::int64_t srcLen = 128;
    std::int64_t tgtLen = 4;
    std::int64_t examples = 256;
    std::int64_t epochs = 2;
    std::int64_t threads = 0;
    std::string methods = "full,lora,adapter,ladder";
    std::string device = "cpu";
    std::string cache = "ram";
    std::string cacheDtype = "fp32";
    std::string cacheDir;
    std::string cachePadding = "same,any";
    bool json = false;
    MethodFlags options;
};

std::string fixed(double v, int digits)
{
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << v;
    return s.str();
}

int runBenchSpeed(const BenchSpeedFlags& f)
{
    SpeedBenchSpec spec;
    spec.config
        = f.model.empty() ? T5Config::preset(f.shape) : T5Config::fromJsonFile(f.model + "/config.json");
    spec.config.dropoutRate = 0.1;
    spec.batch = f.batch;
    spec.sourceLength = f.srcLen;
    spec.targetLength = f.tgtLen;
    spec.examples = f.examples;
    spec.epochs = f.epochs;
    spec.cacheMode = f.cache;
    spec.cacheDtype = f.cacheDtype;
    spec.cacheDir = f.cacheDir;
    spec.cachePaddings.clear();
    {
        std::stringstream in(f.cachePadding);
        std::string p;
        while (std::getline(in, p, ','))
            if (p == "same" || p == "any")
                spec.cachePaddings.push_back(p);
            else if (!p.empty())
                throw Error("--cache-padding: expected same, any or both (same,any), got '" + p + "'");
    }
    if (f.cache == "disk" && f.cacheDir.empty())
        throw Error("--cache disk needs --cache-dir");
    try {
        spec.device = c10::Device(f.device);
    } catch (const std::exception&) {
        throw Error("--device: expected cpu or cuda[:N], got '" + f.device + "'");
    }
    if (spec.device.is_cuda() && !at::hasCUDA())
        throw Error("--device " + f.device + ": no CUDA device is available");
    if (f.threads > 0)
        at::set_num_threads(static_cast<int>(f.threads));

    // Entries as bench memory takes them: "ladder:side_checkpoint:backbone_dtype=int4", lst-memory.
    const auto labels = methodEntries(f.methods);
    std::vector<MethodOptions> methods;
    for (const auto& m : labels)
        methods.push_back(methodEntryOptions(m, f.options));
    if (methods.empty())
        throw Error("--methods: expected a comma list of methods");
    if (methods.front().method != "full")
        throw Error("--methods: the list must start with full (the ratios are to full fine-tuning)");

    ProgressLine progress(!f.json);
    const auto r = measureSpeed(spec, methods, [&](const std::string& line) { progress.show(line); });
    progress.clear();
    const auto* full = r.find("full");
    const auto* lst = r.find("ladder");
    const double fullEpoch = full->epochSeconds;
    double uncachedTotal = 0.0;
    for (auto s : r.lstEpochSeconds)
        uncachedTotal += s;
    // Later epochs (2..): where the cache pays.
    auto laterMean = [](const std::vector<double>& epochs) {
        double sum = 0.0;
        for (std::size_t e = 1; e < epochs.size(); ++e)
            sum += epochs[e];
        return epochs.size() > 1 ? sum / static_cast<double>(epochs.size() - 1) : 0.0;
    };
    auto total = [](const std::vector<double>& epochs) {
        double sum = 0.0;
        for (auto s : epochs)
            sum += s;
        return sum;
    };

    if (f.json) {
        nlohmann::json out { { "shape", f.model.empty() ? f.shape : f.model }, { "batch", f.batch },
            { "src_len", f.srcLen }, { "tgt_len", f.tgtLen }, { "examples", f.examples },
            { "epochs", f.epochs }, { "batches_per_epoch", r.batchesPerEpoch }, { "device", f.device },
            { "threads", at::get_num_threads() }, { "methods", nlohmann::json::object() } };
        for (std::size_t i = 0; i < r.methods.size(); ++i) {
            const auto& m = r.methods[i];
            out["methods"][labels[i]] = { { "seconds_per_step", jsonNumber(m.secondsPerStep) },
                { "epoch_seconds", jsonNumber(m.epochSeconds) },
                { "step_ratio_to_full", jsonNumber(m.secondsPerStep / full->secondsPerStep) },
                { "trainable_params", m.trainableParams }, { "options", m.options.toJson() } };
        }
        // Without ladder in --methods there is no LST figure: null, as every missing value.
        out["ladder_uncached_epoch_seconds"] = nullptr;
        out["ladder_cache"] = nullptr;
        if (lst) {
            out["ladder_uncached_epoch_seconds"] = r.lstEpochSeconds;
            out["ladder_cache"] = nlohmann::json::array();
            for (const auto& c : r.cached)
                out["ladder_cache"].push_back({ { "mode", f.cache }, { "dtype", f.cacheDtype },
                    { "padding", c.padding }, { "bytes", r.cacheBytes }, { "epoch_seconds", c.epochSeconds },
                    { "hits", c.hits }, { "misses", c.misses },
                    { "later_epoch_ratio_to_full", jsonNumber(laterMean(c.epochSeconds) / fullEpoch) },
                    { "speedup_later_epochs",
                        jsonNumber(laterMean(r.lstEpochSeconds) / laterMean(c.epochSeconds)) },
                    { "speedup_total", jsonNumber(uncachedTotal / total(c.epochSeconds)) },
                    { "max_loss_difference", jsonNumber(c.maxLossDifference) } });
        }
        printJson(out);
        return 0;
    }

    std::cout << "training speed: " << (f.model.empty() ? f.shape : f.model) << " (random weights), "
              << f.examples << " examples, batch " << f.batch << ", source "
              << std::max<std::int64_t>(2, f.srcLen / 2) << "-" << f.srcLen
              << " tokens (dynamic padding), target " << f.tgtLen << ", fp32 AdamW on " << f.device << ", "
              << at::get_num_threads() << " threads\n"
              << r.batchesPerEpoch << " steps per epoch; one untimed warm-up step per method first\n\n";
    std::size_t width = 34;
    for (const auto& l : labels)
        width = std::max(width, l.size() + 2);
    std::cout << std::left << std::setw(static_cast<int>(width)) << "method" << std::right << std::setw(10)
              << "s/step" << std::setw(9) << "ratio" << std::setw(12) << "epoch s" << std::setw(9) << "ratio"
              << "\n";
    auto line = [&](const std::string& label, double epochSeconds) {
        const double step = epochSeconds / static_cast<double>(r.batchesPerEpoch);
        std::cout << std::left << std::setw(static_cast<int>(width)) << label << std::right << std::setw(10)
                  << fixed(step, 3) << std::setw(9) << fixed(step / full->secondsPerStep, 2) << std::setw(12)
                  << fixed(epochSeconds, 1) << std::setw(9) << fixed(epochSeconds / fullEpoch, 2) << "\n";
    };
    for (std::size_t i = 0; i < r.methods.size(); ++i)
        line(labels[i] == "ladder" && !r.cached.empty() ? "ladder (no cache)" : labels[i],
            r.methods[i].epochSeconds);
    for (const auto& c : r.cached)
        for (std::size_t e = 0; e < c.epochSeconds.size(); ++e)
            line("ladder, cache " + c.padding + ", epoch " + std::to_string(e + 1), c.epochSeconds[e]);
    if (lst) {
        std::cout << "\nLST without the cache, epoch by epoch (s):";
        for (auto s : r.lstEpochSeconds)
            std::cout << " " << fixed(s, 1);
        std::cout << "\nladder activation cache: " << r.cacheDescription << "\n";
        bool fisherAsked = false; // init fisher, the default: measureSpeed builds LST with init random
        for (const auto& m : methods)
            fisherAsked = fisherAsked || (m.method == "ladder" && m.init == "fisher");
        if (fisherAsked)
            std::cout << "LST was built with init random: step times do not depend on the side network's "
                         "initial values, and a Fisher pass needs task data\n";
        for (const auto& c : r.cached)
            std::cout << "cache padding " << c.padding << ": later epochs "
                      << fixed(laterMean(r.lstEpochSeconds) / laterMean(c.epochSeconds), 2)
                      << "x faster, all " << f.epochs << " epochs "
                      << fixed(uncachedTotal / total(c.epochSeconds), 2) << "x; " << c.hits
                      << " batches from the cache, " << c.misses
                      << " ran the backbone; largest |loss - uncached loss| " << c.maxLossDifference << "\n";
    }
    return 0;
}

} // namespace

void registerBenchSpeedCommand(CLI::App* bench)
{
    auto f = std::make_shared<BenchSpeedFlags>();
    auto* cmd = bench->add_subcommand("speed",
        "Step time per method and LST epoch time with and without the ladder "
        "activation cache, as ratios to full fine-tuning");
    auto* shape = cmd->add_option("--shape", f->shape, "backbone shape")->capture_default_str();
    cmd->add_option("--model", f->model, "use the config.json of a HF folder as the shape (random weights)")
        ->excludes(shape);
    cmd->add_option("--batch", f->batch)->capture_default_str()->check(CLI::Range(1, 4096));
    cmd->add_option("--src-len", f->srcLen, "longest source; lengths spread over [L/2, L]")
        ->capture_default_str()
        ->check(CLI::Range(2, 8192));
    cmd->add_option("--tgt-len", f->tgtLen)->capture_default_str()->check(CLI::Range(1, 8192));
    cmd->add_option("--examples", f->examples, "training examples")
        ->capture_default_str()
        ->check(CLI::Range(1, 10000000));
    cmd->add_option("--epochs", f->epochs, "LST epochs with and without the cache (>= 2)")
        ->capture_default_str()
        ->check(CLI::Range(2, 1000));
    cmd->add_option("--methods", f->methods,
           "comma list, full first; entries as bench memory's (method:field=value..., lst-memory)")
        ->capture_default_str();
    cmd->add_option("--device", f->device, "cpu or cuda[:N]")->capture_default_str();
    cmd->add_option("--threads", f->threads, "CPU threads (0: LibTorch's default)")->capture_default_str();
    cmd->add_option(
           "--cache", f->cache, "where the cached LST run keeps the activations (none: no cached run)")
        ->capture_default_str()
        ->check(CLI::IsMember({ "ram", "disk", "none" }));
    cmd->add_option("--cache-dtype", f->cacheDtype, "fp32 or bf16")
        ->capture_default_str()
        ->check(CLI::IsMember({ "fp32", "bf16" }));
    cmd->add_option("--cache-padding", f->cachePadding, "cached LST runs: same, any or same,any")
        ->capture_default_str();
    cmd->add_option("--cache-dir", f->cacheDir, "folder for --cache disk (the file is removed afterwards)");
    cmd->add_flag("--json", f->json, "one JSON object");
    f->options.addTo(cmd);
    cmd->callback([f] { runGuarded("bench speed", [&] { return runBenchSpeed(*f); }); });
}

} // namespace ladder::cli
