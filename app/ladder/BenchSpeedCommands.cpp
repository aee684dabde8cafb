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
#include "MethodFlags.h"
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
    spec.config = f.model.empty() ? T5Config::preset(f.shape) : T5Config::fromJsonFile(f.model + "/config.json");
    spec.config.dropoutRate = 0.1;
    spec.batch = f.batch;
    spec.sourceLength = f.srcLen;
    spec.targetLength = f.tgtLen;
    spec.examples = f.examples;
    spec.epochs = f.epochs;
    spec.cacheMode = f.cache;
    spec.cacheDtype = f.cacheDtype;
    spec.cacheDir = f.cacheDir;
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

    std::vector<MethodOptions> methods;
    {
        std::stringstream in(f.methods);
        std::string m;
        while (std::getline(in, m, ','))
            if (!m.empty())
                methods.push_back(f.options.optionsFor(m, false));
    }
    if (methods.empty())
        throw Error("--methods: expected a comma list of methods");
    if (methods.front().method != "full")
        throw Error("--methods: the list must start with full (the ratios are to full fine-tuning)");

    const auto r = measureSpeed(spec, methods, [&](const std::string& line) {
        if (!f.json)
            std::cerr << "\r" << std::left << std::setw(40) << line << std::flush;
    });
    if (!f.json)
        std::cerr << "\r" << std::string(40, ' ') << "\r";
    const auto* full = r.find("full");
    const auto* lst = r.find("ladder");
    const double fullEpoch = full->epochSeconds;
    double cachedLater = 0.0;
    for (std::size_t e = 1; e < r.lstCachedEpochSeconds.size(); ++e)
        cachedLater += r.lstCachedEpochSeconds[e] / static_cast<double>(r.lstCachedEpochSeconds.size() - 1);
    double uncachedTotal = 0.0, cachedTotal = 0.0;
    for (auto s : r.lstEpochSeconds)
        uncachedTotal += s;
    for (auto s : r.lstCachedEpochSeconds)
        cachedTotal += s;

    if (f.json) {
        nlohmann::json out{{"shape", f.model.empty() ? f.shape : f.model},
                           {"batch", f.batch},
                           {"src_len", f.srcLen},
                           {"tgt_len", f.tgtLen},
                           {"examples", f.examples},
                           {"epochs", f.epochs},
                           {"batches_per_epoch", r.batchesPerEpoch},
                           {"device", f.device},
                           {"threads", at::get_num_threads()},
                           {"methods", nlohmann::json::object()}};
        for (const auto& m : r.methods)
            out["methods"][m.method] = {{"seconds_per_step", m.secondsPerStep},
                                        {"epoch_seconds", m.epochSeconds},
                                        {"step_ratio_to_full", m.secondsPerStep / full->secondsPerStep},
                                        {"trainable_params", m.trainableParams},
                                        {"options", m.options.toJson()}};
        if (lst) {
            out["ladder_cache"] = {{"mode", f.cache},
                                   {"dtype", f.cacheDtype},
                                   {"bytes", r.cacheBytes},
                                   {"uncached_epoch_seconds", r.lstEpochSeconds},
                                   {"cached_epoch_seconds", r.lstCachedEpochSeconds},
                                   {"cached_later_epoch_ratio_to_full", cachedLater / fullEpoch},
                                   {"speedup_later_epochs", lst->epochSeconds / cachedLater},
                                   {"speedup_total", uncachedTotal / cachedTotal},
                                   {"max_loss_difference", r.maxLossDifference}};
        }
        std::cout << out.dump(2) << "\n";
        return 0;
    }

    std::cout << "training speed: " << (f.model.empty() ? f.shape : f.model) << " (random weights), " << f.examples
              << " examples, batch " << f.batch << ", source " << f.srcLen / 2 << "-" << f.srcLen
              << " tokens (dynamic padding), target " << f.tgtLen << ", fp32 AdamW on " << f.device << ", "
              << at::get_num_threads() << " threads\n"
              << r.batchesPerEpoch << " steps per epoch; one untimed warm-up step per method first\n\n";
    std::cout << std::left << std::setw(30) << "method" << std::right << std::setw(10) << "s/step" << std::setw(9)
              << "ratio" << std::setw(12) << "epoch s" << std::setw(9) << "ratio" << "\n";
    for (const auto& m : r.methods)
        std::cout << std::left << std::setw(30) << (m.method == "ladder" ? "ladder (no cache)" : m.method)
                  << std::right << std::setw(10) << fixed(m.secondsPerStep, 3) << std::setw(9)
                  << fixed(m.secondsPerStep / full->secondsPerStep, 2) << std::setw(12) << fixed(m.epochSeconds, 1)
                  << std::setw(9) << fixed(m.epochSeconds / fullEpoch, 2) << "\n";
    if (lst) {
        for (std::size_t e = 0; e < r.lstCachedEpochSeconds.size(); ++e) {
            const auto s = r.lstCachedEpochSeconds[e];
            const auto label = "ladder, cache, epoch " + std::to_string(e + 1) + (e == 0 ? " (fill)" : "");
            std::cout << std::left << std::setw(30) << label << std::right << std::setw(10)
                      << fixed(s / static_cast<double>(r.batchesPerEpoch), 3) << std::setw(9)
                      << fixed(s / static_cast<double>(r.batchesPerEpoch) / full->secondsPerStep, 2) << std::setw(12)
                      << fixed(s, 1) << std::setw(9) << fixed(s / fullEpoch, 2) << "\n";
        }
        std::cout << "\nLST uncached epochs (s):";
        for (auto s : r.lstEpochSeconds)
            std::cout << " " << fixed(s, 1);
        std::cout << "\nladder activation cache: " << r.cacheDescription << "\n"
                  << "cache speed-up: later epochs " << fixed(lst->epochSeconds / cachedLater, 2) << "x, all "
                  << f.epochs << " epochs " << fixed(uncachedTotal / cachedTotal, 2) << "x\n"
                  << "largest |loss difference| cached vs uncached over every step: " << r.maxLossDifference << "\n";
    }
    return 0;
}

} // namespace

void registerBenchSpeedCommand(CLI::App* bench)
{
    auto f = std::make_shared<BenchSpeedFlags>();
    auto* cmd = bench->add_subcommand("speed", "Step time per method and LST epoch time with and without the ladder "
                                               "activation cache, as ratios to full fine-tuning");
    auto* shape = cmd->add_option("--shape", f->shape, "backbone shape")->capture_default_str();
    cmd->add_option("--model", f->model, "use the config.json of a HF folder as the shape (random weights)")
        ->excludes(shape);
    cmd->add_option("--batch", f->batch)->capture_default_str()->check(CLI::Range(1, 4096));
    cmd->add_option("--src-len", f->srcLen, "longest source; lengths spread over [L/2, L]")
        ->capture_default_str()
        ->check(CLI::Range(2, 8192));
    cmd->add_option("--tgt-len", f->tgtLen)->capture_default_str()->check(CLI::Range(1, 8192));
    cmd->add_option("--examples", f->examples, "training examples")->capture_default_str()->check(CLI::Range(1, 10000000));
    cmd->add_option("--epochs", f->epochs, "LST epochs with and without the cache (>= 2)")
        ->capture_default_str()
        ->check(CLI::Range(2, 1000));
    cmd->add_option("--methods", f->methods, "comma list, full first")->capture_default_str();
    cmd->add_option("--device", f->device, "cpu or cuda[:N]")->capture_default_str();
    cmd->add_option("--threads", f->threads, "CPU threads (0: LibTorch's default)")->capture_default_str();
    cmd->add_option("--cache", f->cache, "where the cached LST run keeps the activations")
        ->capture_default_str()
        ->check(CLI::IsMember({"ram", "disk"}));
    cmd->add_option("--cache-dtype", f->cacheDtype, "fp32 or bf16")->capture_default_str()->check(CLI::IsMember({"fp32", "bf16"}));
    cmd->add_option("--cache-dir", f->cacheDir, "folder for --cache disk (the file is removed afterwards)");
    cmd->add_flag("--json", f->json, "one JSON object");
    f->options.addTo(cmd);
    cmd->callback([f] { runGuarded("bench speed", [&] { return runBenchSpeed(*f); }); });
}

} // namespace ladder::cli
