// ladder bench quant: what frozen backbone storage costs in accuracy (logits against fp32 on real
// checkpoints) and what ATen's quantised kernels are worth against dequantise + mm (issue 18).
#include "BenchQuantCommands.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "JsonOutput.h"
#include "model/QuantizedWeight.h"
#include "model/T5Checkpoint.h"
#include "model/T5Quantization.h"
#include "train/DemoPaths.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

namespace fs = std::filesystem;

struct BenchQuantFlags {
    std::vector<std::string> models;
    std::string fixtures;
    bool noFixtures = false;
    bool noDemo = false;
    std::string rows = "1,4,16,32,64,128,256";
    std::int64_t batch = 4;
    std::int64_t srcLen = 32;
    std::int64_t tgtLen = 8;
    std::int64_t threads = 0;
    bool json = false;
};

struct Storage {
    std::string dtype;
    std::int64_t group;
    std::string label() const { return weightStorageLabel(dtype, group); }
};

const std::vector<Storage>& storages()
{
    static const std::vector<Storage> all { { "bf16", 64 }, { "int8", 64 }, { "int4", 32 }, { "int4", 64 },
        { "int4", 128 } };
    return all;
}

// The fixtures' checkpoints whose weights are numerically discriminative (../shared/fixtures README).
const std::vector<std::string>& fixtureModels()
{
    static const std::vector<std::string> models { "t5-synthetic-hf/t5-v1_0-relu-synth",
        "t5-synthetic-hf/t5-v1_1-gated-gelu-synth" };
    return models;
}

std::string fixed(double v, int digits)
{
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << v;
    return s.str();
}

// Why int4 with `group` cannot hold this backbone, or empty.
std::string int4Refusal(const T5Config& c, std::int64_t group)
{
    for (auto [width, name] : { std::pair<std::int64_t, const char*> { c.dModel, "d_model" },
             { c.dFf, "d_ff" }, { c.innerDim(), "heads x d_kv" } })
        if (width % group)
            return "group " + std::to_string(group) + " does not divide " + name + " "
                + std::to_string(width);
    return {};
}

struct ErrorRow {
    Storage storage;
    std::string skipped; // why not measured
    double maxRel = 0.0; // max |q - ref| / max |ref|
    double meanRel = 0.0; // mean |q - ref| / mean |ref|
    double top1 = 0.0; // argmax agreement
    std::int64_t bytes = 0;
};

struct ModelReport {
    std::string name;
    std::string directory;
    std::string skipped;
    std::int64_t fp32Bytes = 0;
    std::vector<ErrorRow> rows;
};

LoadedT5 loadFrozen(const std::string& directory)
{
    auto loaded = loadT5(directory);
    for (auto& p : loaded.model->parameters())
        p.set_requires_grad(false);
    loaded.model->eval();
    return loaded;
}

ModelReport measureModel(const std::string& name, const std::string& directory, const BenchQuantFlags& f)
{
    ModelReport report;
    report.name = name;
    report.directory = directory;
    if (!fs::exists(fs::path(directory) / "config.json")) {
        report.skipped = "no config.json in " + directory;
        return report;
    }
    c10::NoGradGuard noGrad;
    auto reference = loadFrozen(directory);
    const auto& config = reference.config;
    at::manual_seed(0);
    const auto vocab = config.vocabSize;
    const auto ids = at::randint(2, vocab, { f.batch, f.srcLen }, at::kLong);
    const auto labels = at::randint(2, vocab, { f.batch, f.tgtLen }, at::kLong);
    const auto mask = at::ones_like(ids);
    const auto ref = reference.model->forward(ids, mask, labels).logits;
    report.fp32Bytes = backboneWeightBytes(*reference.model);
    const auto refMax = ref.abs().max().item<double>();
    const auto refMean = ref.abs().mean().item<double>();
    const auto refTop = ref.argmax(-1);
    for (const auto& s : storages()) {
        ErrorRow row;
        row.storage = s;
        if (s.dtype == "int4")
            row.skipped = int4Refusal(config, s.group);
        if (row.skipped.empty()) {
            auto model = loadFrozen(directory).model;
            quantizeFrozenBackbone(*model, s.dtype, s.group);
            row.bytes = backboneWeightBytes(*model);
            const auto logits = model->forward(ids, mask, labels).logits;
            const auto diff = (logits - ref).abs();
            row.maxRel = diff.max().item<double>() / refMax;
            row.meanRel = diff.mean().item<double>() / refMean;
            row.top1 = (logits.argmax(-1) == refTop).to(at::kDouble).mean().item<double>();
        }
        report.rows.push_back(row);
    }
    return report;
}

// Kernel against dequantise + mm for a t5-base feed-forward matrix (768 -> 3072), in ms: the median of
// repeated calls after one warm-up.
struct TimingRow {
    std::int64_t rows = 0;
    std::string input;
    std::string storage;
    double kernelMs = 0.0;
    double dequantMs = 0.0;
    bool autoKernel = false;
};

double medianMs(const std::function<void()>& fn)
{
    fn();
    std::vector<double> times;
    const auto start = std::chrono::steady_clock::now();
    while (times.size() < 5
        || (times.size() < 50 && std::chrono::steady_clock::now() - start < std::chrono::milliseconds(300))) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        times.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

std::vector<TimingRow> measureKernels(const std::vector<std::int64_t>& rowCounts)
{
    c10::NoGradGuard noGrad;
    at::manual_seed(1);
    const auto w = at::randn({ 3072, 768 }) * 0.05;
    std::vector<TimingRow> out;
    for (const auto& s : { Storage { "int8", 64 }, Storage { "int4", 64 } }) {
        const auto q = QuantizedWeight::quantize(w, parseQuantDtype(s.dtype), s.group);
        for (const auto* input : { "bf16", "fp32" }) {
            for (auto rows : rowCounts) {
                if (std::string(input) == "fp32" && rows > 64)
                    continue; // the kernel at fp32 is already tens of times slower at 16 rows
                auto x = at::randn({ rows, 768 });
                if (std::string(input) == "bf16")
                    x = x.to(at::kBFloat16);
                TimingRow row;
                row.rows = rows;
                row.input = input;
                row.storage = s.label();
                row.kernelMs = medianMs([&] { q.matmul(x, QuantMatmulPath::Kernel); });
                row.dequantMs = medianMs([&] { q.matmul(x, QuantMatmulPath::Dequantize); });
                row.autoKernel = q.autoPath(x) == QuantMatmulPath::Kernel;
                out.push_back(row);
            }
        }
    }
    return out;
}

std::vector<std::int64_t> parseRows(const std::string& text)
{
    std::vector<std::int64_t> rows;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        try {
            std::size_t used = 0;
            const auto v = std::stoll(item, &used);
            if (used != item.size() || v < 1 || v > 65536)
                throw std::invalid_argument(item);
            rows.push_back(v);
        } catch (const std::logic_error&) {
            throw UsageError("--rows: expected a comma list of row counts in [1, 65536], got '" + text + "'");
        }
    }
    if (rows.empty())
        throw UsageError("--rows: expected a comma list of row counts");
    return rows;
}

std::string fixturesDirectory(const BenchQuantFlags& f)
{
    if (!f.fixtures.empty())
        return f.fixtures;
    if (const char* env = std::getenv("LADDER_FIXTURES_DIR"); env && *env)
        return env;
    return "../shared/fixtures";
}

int runBenchQuant(const BenchQuantFlags& f)
{
    if (f.threads > 0)
        at::set_num_threads(static_cast<int>(f.threads));
    const auto rowCounts = parseRows(f.rows);
    std::vector<std::string> notes;
    std::vector<ModelReport> reports;
    if (!f.noFixtures) {
        const auto dir = fixturesDirectory(f);
        if (!fs::is_directory(dir))
            notes.push_back(
                "fixtures: " + dir + " not found (--fixtures DIR or LADDER_FIXTURES_DIR); skipped");
        else
            for (const auto& m : fixtureModels())
                reports.push_back(
                    measureModel(fs::path(m).filename().string(), (fs::path(dir) / m).string(), f));
    }
    if (!f.noDemo) {
        const auto dir = demoBackboneDirectory();
        if (!fs::exists(fs::path(dir) / "config.json"))
            notes.push_back("demo backbone: not built at " + dir + " (`ladder demo` builds it); skipped");
        else
            reports.push_back(measureModel("demo backbone", dir, f));
    }
    for (const auto& m : f.models)
        reports.push_back(measureModel(fs::path(m).filename().string(), m, f));
    const auto timing = measureKernels(rowCounts);

    if (f.json) {
        nlohmann::json models = nlohmann::json::array();
        for (const auto& r : reports) {
            nlohmann::json rows = nlohmann::json::array();
            for (const auto& e : r.rows)
                rows.push_back({ { "storage", e.storage.label() }, { "backbone_dtype", e.storage.dtype },
                    { "quant_group_size",
                        e.storage.dtype == "int4" ? nlohmann::json(e.storage.group) : nullptr },
                    { "skipped", jsonText(e.skipped) },
                    { "max_rel", e.skipped.empty() ? jsonNumber(e.maxRel) : nullptr },
                    { "mean_rel", e.skipped.empty() ? jsonNumber(e.meanRel) : nullptr },
                    { "top1_agreement", e.skipped.empty() ? jsonNumber(e.top1) : nullptr },
                    { "weight_bytes", e.skipped.empty() ? nlohmann::json(e.bytes) : nullptr } });
            models.push_back({ { "model", r.name }, { "directory", r.directory },
                { "skipped", jsonText(r.skipped) }, { "fp32_weight_bytes", r.fp32Bytes }, { "rows", rows } });
        }
        nlohmann::json times = nlohmann::json::array();
        for (const auto& t : timing)
            times.push_back({ { "rows", t.rows }, { "input", t.input }, { "storage", t.storage },
                { "kernel_ms", jsonNumber(t.kernelMs) }, { "dequantize_ms", jsonNumber(t.dequantMs) },
                { "auto", t.autoKernel ? "kernel" : "dequantize" } });
        printJson({ { "batch", f.batch }, { "source_length", f.srcLen }, { "target_length", f.tgtLen },
            { "threads", at::get_num_threads() }, { "models", models }, { "matmul_768x3072", times },
            { "notes", notes } });
        return 0;
    }

    std::cout
        << "Logits against fp32 (batch " << f.batch << ", source " << f.srcLen << ", target " << f.tgtLen
        << ", random ids, seed 0): max = max|q - fp32| / max|fp32|, mean = mean|q - fp32| / mean|fp32|, "
           "top-1 = argmax agreement\n";
    for (const auto& r : reports) {
        std::cout << "\n" << r.name << " (" << r.directory << ")";
        if (!r.skipped.empty()) {
            std::cout << ": skipped, " << r.skipped << "\n";
            continue;
        }
        std::cout << "\n  " << std::left << std::setw(11) << "storage" << std::right << std::setw(12)
                  << "weights MB" << std::setw(10) << "max" << std::setw(10) << "mean" << std::setw(9)
                  << "top-1"
                  << "\n  " << std::left << std::setw(11) << "fp32" << std::right << std::setw(12)
                  << mb(r.fp32Bytes) << "\n";
        for (const auto& e : r.rows) {
            std::cout << "  " << std::left << std::setw(11) << e.storage.label() << std::right;
            if (!e.skipped.empty()) {
                std::cout << "  n/a: " << e.skipped << "\n";
                continue;
            }
            std::cout << std::setw(12) << mb(e.bytes) << std::setw(10) << fixed(e.maxRel, 4) << std::setw(10)
                      << fixed(e.meanRel, 4) << std::setw(8) << fixed(100.0 * e.top1, 1) << "%\n";
        }
    }
    for (const auto& n : notes)
        std::cout << "\n" << n << "\n";
    std::cout << "\nMatmul 768 -> 3072 (t5-base's wi) on the CPU, " << at::get_num_threads()
              << " threads: ATen's kernel against dequantise + mm, ms (median); * = what Auto picks\n  "
              << std::left << std::setw(10) << "storage" << std::setw(7) << "input" << std::right
              << std::setw(6) << "rows" << std::setw(12) << "kernel" << std::setw(12) << "dequantise"
              << "\n";
    for (const auto& t : timing)
        std::cout << "  " << std::left << std::setw(10) << t.storage << std::setw(7) << t.input << std::right
                  << std::setw(6) << t.rows << std::setw(11) << fixed(t.kernelMs, 3)
                  << (t.autoKernel ? "*" : " ") << std::setw(11) << fixed(t.dequantMs, 3)
                  << (t.autoKernel ? " " : "*") << "\n";
    return 0;
}

} // namespace

void registerBenchQuantCommand(CLI::App* bench)
{
    auto f = std::make_shared<BenchQuantFlags>();
    auto* cmd = bench->add_subcommand("quant",
        "Frozen backbone storage: logits' error against fp32 for bf16, int8 and int4 on the fixtures' T5 "
        "checkpoints and the demo backbone, weight bytes, and ATen's kernels against dequantise + mm");
    cmd->add_option("--model", f->models, "also a HuggingFace T5 folder (repeatable)");
    cmd->add_option("--fixtures", f->fixtures,
        "the shared fixtures folder (default: $LADDER_FIXTURES_DIR, else ../shared/fixtures)");
    cmd->add_flag("--no-fixtures", f->noFixtures, "skip the fixtures' checkpoints");
    cmd->add_flag("--no-demo", f->noDemo, "skip the demo backbone");
    cmd->add_option("--rows", f->rows, "row counts of the matmul timing, comma list")->capture_default_str();
    cmd->add_option("--batch", f->batch)->capture_default_str()->check(CLI::Range(1, 256));
    cmd->add_option("--src-len", f->srcLen)->capture_default_str()->check(CLI::Range(1, 4096));
    cmd->add_option("--tgt-len", f->tgtLen)->capture_default_str()->check(CLI::Range(1, 4096));
    cmd->add_option("--threads", f->threads, "CPU threads (0: LibTorch's default)")->capture_default_str();
    cmd->add_flag("--json", f->json, "one JSON object");
    cmd->callback([f] { runGuarded("bench quant", [&] { return runBenchQuant(*f); }); });
}

} // namespace ladder::cli
