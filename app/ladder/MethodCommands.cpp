// ladder params | bench memory: parameter accounting and measured training memory per method.
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "BenchQuantCommands.h"
#include "BenchScalingCommands.h"
#include "BenchSpeedCommands.h"
#include "Commands.h"
#include "JsonOutput.h"
#include "MethodFlags.h"
#include "ProgressLine.h"
#include "model/T5Checkpoint.h"
#include "model/llama/LlamaShapes.h"
#include "peft/Method.h"
#include "train/MemoryBench.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

std::string withCommas(std::int64_t v)
{
    std::string s = std::to_string(v);
    for (int i = static_cast<int>(s.size()) - 3; i > (v < 0 ? 1 : 0); i -= 3)
        s.insert(static_cast<std::size_t>(i), ",");
    return s;
}

// What the activations saved for backward are, from the estimate's parts
// (MemoryEstimate::activationsPerPart): the ladders (kept backbone outputs, parts "backbone ..."), the side
// network's ("side ..."), and the rest.
struct ActivationSplit {
    std::uint64_t ladders = 0, side = 0, other = 0;
};

ActivationSplit splitActivations(const MemoryEstimate& e)
{
    ActivationSplit s;
    for (const auto& [part, bytes] : e.activationsPerPart) {
        if (part.rfind("backbone", 0) == 0)
            s.ladders += bytes;
        else if (part.rfind("side", 0) == 0)
            s.side += bytes;
        else
            s.other += bytes;
    }
    return s;
}

nlohmann::json breakdownJson(const MemoryBenchResult& r)
{
    const auto split = splitActivations(r.estimate);
    return { { "frozen_weight_bytes", r.estimate.frozenWeights },
        { "trainable_weight_bytes", r.estimate.trainableWeights }, { "gradient_bytes", r.gradientBytes },
        { "optimizer_bytes", r.optimizerBytes }, { "saved_ladder_bytes", split.ladders },
        { "saved_side_bytes", split.side }, { "saved_other_bytes", split.other },
        { "estimated_peak_where", r.estimate.peakWhere } };
}

struct ParamsFlags {
    std::string shape;
    std::string model;
    std::string method;
    bool json = false;
    bool vl = false;
    std::int64_t visualDim = 2048;
    MethodFlags options;
};

// The paper's Table 6 settings of its vision-and-language runs (CLIP-T5), the defaults of `ladder params
// --vl` (docs/VL.md); given flags win.
nlohmann::json vlTable6Defaults(const std::string& method)
{
    if (method == "adapter")
        return { { "hidden", 192 } };
    if (method == "lora")
        return { { "rank", 150 }, { "targets", { "q", "v" } }, { "bitfit", false } };
    if (method == "prompt")
        return { { "prompts", 40 } };
    if (method == "ladder")
        return { { "r", 4 } };
    return nlohmann::json::object();
}

// Table 3's "Update Param. (%)" (CLIP-T5 on T5-base, CLIP ResNet-101 features).
double vlTable3Percent(const std::string& method)
{
    if (method == "full")
        return 100.0;
    if (method == "adapter")
        return 7.98;
    if (method == "lora")
        return 7.54;
    if (method == "bitfit")
        return 0.83;
    if (method == "prompt")
        return 1.26;
    if (method == "ladder")
        return 7.46;
    return 0.0;
}

int runParams(const ParamsFlags& f)
{
    if (f.shape.empty() == f.model.empty())
        throw UsageError("give exactly one of --shape and --model");
    auto options = f.options.optionsFor(f.method, true);
    if (f.vl) {
        if (f.visualDim < 1)
            throw UsageError("--visual-dim must be at least 1");
        auto fields = vlTable6Defaults(f.method);
        const auto given = f.options.given(); // keep it alive: items() only refers to it
        for (const auto& [key, value] : given.items())
            fields[key] = value;
        fields["visual_dim"] = f.visualDim;
        options = MethodOptions::defaults(f.method).withFields(fields, "method options");
    }
    T5ForConditionalGeneration backbone { nullptr };
    if (!f.shape.empty()) {
        SkipParameterInit skip; // counting only: the weights are never read
        backbone = T5ForConditionalGeneration(T5Config::preset(f.shape));
    } else {
        backbone = loadT5(f.model).model;
    }
    std::unique_ptr<Method> method;
    {
        SkipParameterInit skip;
        // The count does not depend on the initialisation; init fisher would need task data.
        method = createMethod(backbone, withoutFisherInit(options));
    }
    const auto total = method->backboneParameterCount();
    const auto trainable = method->trainableParameterCount();
    const double pct = 100.0 * static_cast<double>(trainable) / static_cast<double>(total);
    if (f.vl) {
        // The reference's VL percentage: trainable over every parameter of the model the method builds
        // (backbone, what the method adds, the visual projection; docs/VL.md).
        const auto all = method->totalParameterCount();
        const double pctAll = 100.0 * static_cast<double>(trainable) / static_cast<double>(all);
        const auto visual = method->visualEmbedding() ? countParameters(*method->visualEmbedding()) : 0;
        if (f.json) {
            printJson({ { "backbone", f.shape.empty() ? f.model : f.shape }, { "method", options.toJson() },
                { "vl", true }, { "visual_dim", f.visualDim }, { "backbone_params", total },
                { "visual_embedding_params", visual }, { "trainable_params", trainable },
                { "all_params", all }, { "percent", jsonNumber(pctAll) },
                { "percent_of_backbone", jsonNumber(pct) },
                { "paper_percent", jsonNumber(vlTable3Percent(f.method)) } });
            return 0;
        }
        std::cout << "backbone    " << (f.shape.empty() ? f.model : f.shape)
                  << " (vision-and-language, visual_dim " << f.visualDim << ")\n"
                  << "method      " << options.toJson().dump() << "\n"
                  << "backbone    " << withCommas(total) << " parameters\n"
                  << "visual      " << withCommas(visual)
                  << " (the visual projection, trained by every method)\n"
                  << "all         " << withCommas(all) << " (backbone + what the method adds + visual)\n"
                  << "trainable   " << withCommas(trainable) << "\n"
                  << "percent     " << std::fixed << std::setprecision(2) << pctAll
                  << "% of all (the paper's Table 3: " << vlTable3Percent(f.method) << "%)\n";
        return 0;
    }
    if (f.json) {
        printJson({ { "backbone", f.shape.empty() ? f.model : f.shape }, { "method", options.toJson() },
            { "total_params", total }, { "trainable_params", trainable },
            { "all_params", method->totalParameterCount() }, { "percent", jsonNumber(pct) } });
        return 0;
    }
    std::cout << "backbone    " << (f.shape.empty() ? f.model : f.shape) << "\n"
              << "method      " << options.toJson().dump() << "\n"
              << "total       " << withCommas(total) << " (backbone parameters)\n"
              << "trainable   " << withCommas(trainable) << "\n"
              << "percent     " << std::fixed << std::setprecision(3) << pct << "%\n";
    return 0;
}

struct BenchMemoryFlags {
    std::string shape = "t5-small";
    std::string model; // a HF folder whose config.json gives the shape (weights are not read)
    std::int64_t batch = 8;
    std::int64_t srcLen = 128;
    std::int64_t tgtLen = 4;
    std::int64_t steps = 3;
    std::string methods = "full,bitfit,adapter,lora,prompt,ladder";
    std::string device = "cpu";
    std::string dtype = "fp32";
    double dropout = 0.1;
    std::int64_t inferenceRepeats = 3;
    bool json = false;
    bool vl = false;
    std::int64_t visualTokens = 36;
    std::int64_t visualDim = 2048;
    MethodFlags options;
};

// The paper's Table 3 train memory (GB) of CLIP-T5 on T5-base, batch 300 on an A6000 (docs/VL.md).
double vlTable3TrainGb(const std::string& method)
{
    if (method == "full")
        return 36.2;
    if (method == "adapter")
        return 28.4;
    if (method == "lora")
        return 27.9;
    if (method == "bitfit")
        return 22.7;
    if (method == "prompt")
        return 38.7;
    if (method == "ladder")
        return 15.3;
    return 0.0;
}

int runBenchMemory(const BenchMemoryFlags& f)
{
    MemoryBenchSpec spec;
    spec.llama = decoderConfigFor(f.shape, f.model); // a decoder has no dropout: --backbone-dropout is T5's
    if (!spec.llama) {
        spec.config
            = f.model.empty() ? T5Config::preset(f.shape) : T5Config::fromJsonFile(f.model + "/config.json");
        spec.config.dropoutRate = f.dropout;
    }
    spec.inferenceRepeats = f.inferenceRepeats;
    spec.batch = f.batch;
    spec.sourceLength = f.srcLen;
    spec.targetLength = f.tgtLen;
    spec.steps = f.steps;
    spec.dtype = f.dtype;
    if (f.vl) {
        spec.visualTokens = f.visualTokens;
        spec.visualDim = f.visualDim;
    }
    try {
        spec.device = c10::Device(f.device);
    } catch (const std::exception&) {
        throw Error("--device: expected cpu or cuda[:N], got '" + f.device + "'");
    }
    if (spec.device.is_cuda() && !at::hasCUDA())
        throw Error("--device " + f.device + ": no CUDA device is available");

    const auto methods = methodEntries(f.methods);
    std::vector<MemoryBenchResult> results;
    std::vector<std::string> labels; // the entries as given: several rows may share a method
    bool fisherReplaced = false;
    ProgressLine progress(!f.json);
    for (const auto& m : methods) {
        // Training memory does not depend on the side network's initial values, and the bench's random
        // batches are no task for a Fisher pass: LST with init fisher (the default) is built with init
        // random.
        bool replaced = false;
        auto options = withoutFisherInit(methodEntryOptions(m, f.options), &replaced);
        if (f.vl) {
            // The paper's Table 6 settings unless the entry or a flag sets them (docs/VL.md).
            auto fields = vlTable6Defaults(options.method);
            const auto given = f.options.given(); // keep it alive: items() only refers to it
            for (const auto& [key, value] : given.items())
                fields.erase(key);
            if (m.find(':') != std::string::npos)
                fields = nlohmann::json::object();
            if (!fields.empty())
                options = options.withFields(fields, "--vl");
        }
        fisherReplaced = fisherReplaced || replaced;
        if (spec.llama)
            options.validate(spec.llama->shape());
        else
            options.validate(spec.config);
        results.push_back(
            measureTrainingMemory(spec, options, [&](const std::string& line) { progress.show(line); }));
        labels.push_back(m);
    }
    std::size_t labelWidth = 9;
    for (const auto& l : labels)
        labelWidth = std::max(labelWidth, l.size() + 2);
    progress.clear();
    const MemoryBenchResult* full = nullptr;
    for (const auto& r : results)
        if (r.method == "full")
            full = &r;

    if (f.json) {
        nlohmann::json out = nlohmann::json::object();
        for (std::size_t i = 0; i < results.size(); ++i) {
            const auto& r = results[i];
            nlohmann::json row { { "peak_bytes", r.peakBytes }, { "static_bytes", r.staticBytes },
                { "trainable_params", r.trainableParams }, { "total_params", r.totalParams },
                { "backbone_params", r.backboneParams }, { "weight_bytes", r.weightBytes },
                { "gradient_bytes", r.gradientBytes }, { "optimizer_bytes", r.optimizerBytes },
                { "activation_bytes", r.activationBytes() }, { "estimated_bytes", r.estimate.total },
                { "estimate_error", jsonNumber(r.estimateError()) }, { "step_peaks", r.stepPeaks },
                { "seconds_per_step", jsonNumber(r.secondsPerStep) },
                { "inference_peak_bytes", r.inferencePeakBytes },
                { "inference_seconds_per_batch", jsonNumber(r.inferenceSecondsPerBatch) },
                { "inference_examples_per_second", jsonNumber(r.inferenceExamplesPerSecond) },
                { "dtype", r.dtype }, { "options", r.options.toJson() }, { "meter", r.meterLabel },
                // CUDA's caching allocator only; null on the CPU, as the ratio is without full in --methods
                { "peak_reserved_bytes",
                    spec.device.is_cuda() ? nlohmann::json(r.peakReservedBytes) : nlohmann::json(nullptr) },
                { "ratio_to_full",
                    full ? jsonNumber(static_cast<double>(r.peakBytes) / static_cast<double>(full->peakBytes))
                         : nlohmann::json(nullptr) } };
            row["method"] = r.method;
            row["breakdown"] = breakdownJson(r);
            if (f.vl) {
                row["estimated_bytes"] = nullptr; // the estimate does not price VL runs yet
                row["estimate_error"] = nullptr;
                row["paper_train_gb"] = jsonNumber(vlTable3TrainGb(r.method));
                row["paper_ratio_to_full"] = jsonNumber(vlTable3TrainGb(r.method) / vlTable3TrainGb("full"));
            }
            out[labels[i]] = row;
        }
        printJson(out);
        return 0;
    }
    std::cout << "training memory: " << (f.model.empty() ? f.shape : f.model) << ", batch " << f.batch
              << ", source " << f.srcLen << ", target " << f.tgtLen << ", " << f.steps << " AdamW steps, "
              << (f.dtype == "bf16" ? "bf16 mixed precision" : "fp32") << " on " << f.device
              << (f.vl ? ", vision-and-language: " + std::to_string(f.visualTokens)
                             + " visual tokens of width " + std::to_string(f.visualDim)
                             + " (no estimate for VL runs yet)"
                       : std::string())
              << "\n"
              << "measure: " << (results.empty() ? "" : results.front().meterLabel)
              << ", maximum over the steps\n\n";
    if (f.vl) {
        // Beside the paper's Table 3 (CLIP-T5, T5-base, batch 300 on an A6000): the ratios to full
        // fine-tuning compare; the bytes do not (another batch, lengths and device).
        std::cout << std::left << std::setw(static_cast<int>(labelWidth)) << "method" << std::right
                  << std::setw(12) << "peak MB" << std::setw(9) << "ratio" << std::setw(12) << "trainable"
                  << std::setw(10) << "s/step" << std::setw(12) << "paper GB" << std::setw(13)
                  << "paper ratio"
                  << "\n";
        for (std::size_t i = 0; i < results.size(); ++i) {
            const auto& r = results[i];
            std::ostringstream ratio, paper, paperRatio;
            ratio << std::fixed << std::setprecision(2);
            paper << std::fixed << std::setprecision(1);
            paperRatio << std::fixed << std::setprecision(2);
            if (full)
                ratio << static_cast<double>(r.peakBytes) / static_cast<double>(full->peakBytes);
            else
                ratio << "-";
            paper << vlTable3TrainGb(r.method);
            paperRatio << vlTable3TrainGb(r.method) / vlTable3TrainGb("full");
            std::cout << std::left << std::setw(static_cast<int>(labelWidth)) << labels[i] << std::right
                      << std::setw(12) << mb(r.peakBytes) << std::setw(9) << ratio.str() << std::setw(12)
                      << withCommas(r.trainableParams) << std::setw(10) << std::fixed << std::setprecision(2)
                      << r.secondsPerStep << std::setw(12) << paper.str() << std::setw(13) << paperRatio.str()
                      << "\n";
        }
        std::cout
            << "\nratio: peak / full fine-tuning's peak; paper: Table 3's train memory (batch 300, A6000)\n";
        return 0;
    }
    std::cout << std::left << std::setw(static_cast<int>(labelWidth)) << "method" << std::right
              << std::setw(12) << "peak MB" << std::setw(9) << "ratio" << std::setw(11) << "weights"
              << std::setw(10) << "grads" << std::setw(10) << "optim" << std::setw(13) << "activations"
              << std::setw(12) << "trainable" << std::setw(9) << "%" << std::setw(10) << "s/step"
              << std::setw(14) << "inference MB" << std::setw(10) << "est MB" << std::setw(8) << "err %"
              << "\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        std::cout << std::left << std::setw(static_cast<int>(labelWidth)) << labels[i] << std::right
                  << std::setw(12) << mb(r.peakBytes)
                  << std::setw(9)
                  << (full ? [&] {
                         std::ostringstream s;
                         s << std::fixed << std::setprecision(2)
                           << static_cast<double>(r.peakBytes) / static_cast<double>(full->peakBytes);
                         return s.str();
                     }()
                           : std::string("-"))
                  << std::setw(11) << mb(r.weightBytes) << std::setw(10) << mb(r.gradientBytes) << std::setw(10)
                  << mb(r.optimizerBytes) << std::setw(13) << mb(r.activationBytes()) << std::setw(12)
                  << withCommas(r.trainableParams) << std::setw(9) << std::fixed << std::setprecision(3)
                  << 100.0 * static_cast<double>(r.trainableParams) / static_cast<double>(r.backboneParams)
                  << std::setw(10) << std::setprecision(2) << r.secondsPerStep << std::setw(14)
                  << mb(r.inferencePeakBytes) << std::setw(10) << mb(r.estimate.total) << std::setw(8)
                  << std::showpos << std::setprecision(1) << 100.0 * r.estimateError() << std::noshowpos << "\n";
    }
    std::cout
        << "\nest MB: ladder estimate (analytic, docs/PERFORMANCE.md); err %: estimate / measured peak - 1\n";
    // Where the bytes are (the estimate's terms: docs/PERFORMANCE.md): weights, gradients and AdamW state,
    // and what is saved for backward at the end of the forward, split into ladders, side network and rest.
    std::cout << "\nbreakdown (MB; saved = kept for backward at the end of the forward, from the estimate)\n"
              << std::left << std::setw(static_cast<int>(labelWidth)) << "method" << std::right
              << std::setw(10) << "frozen" << std::setw(11) << "trainable" << std::setw(9) << "grads"
              << std::setw(9) << "AdamW" << std::setw(10) << "ladders" << std::setw(8) << "side"
              << std::setw(9) << "other"
              << "  peak at\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        const auto split = splitActivations(r.estimate);
        std::cout << std::left << std::setw(static_cast<int>(labelWidth)) << labels[i] << std::right
                  << std::setw(10) << mb(r.estimate.frozenWeights) << std::setw(11)
                  << mb(r.estimate.trainableWeights) << std::setw(9) << mb(r.gradientBytes) << std::setw(9)
                  << mb(r.optimizerBytes) << std::setw(10) << mb(split.ladders) << std::setw(8)
                  << mb(split.side) << std::setw(9) << mb(split.other) << "  " << r.estimate.peakWhere
                  << "\n";
    }
    if (fisherReplaced)
        std::cout
            << "ladder was built with init random: training memory does not depend on the side network's "
               "initial values, and a Fisher pass needs task data\n";
    return 0;
}

} // namespace

void registerMethodCommands(CLI::App& app)
{
    {
        auto f = std::make_shared<ParamsFlags>();
        auto* cmd = app.add_subcommand("params", "Total and trainable parameters of a method on a backbone");
        auto* shape
            = cmd->add_option("--shape", f->shape, "t5-small, t5-base, t5-large, t5-3b (published configs)");
        auto* model = cmd->add_option("--model", f->model, "HuggingFace T5 folder");
        shape->excludes(model);
        cmd->add_option("--method", f->method, "full, bitfit, adapter, lora, prompt or ladder")->required();
        cmd->add_flag("--json", f->json, "machine-readable output");
        cmd->add_flag("--vl", f->vl,
            "vision-and-language (CLIP-T5, docs/VL.md): add the visual projection; the paper's Table 6 "
            "settings "
            "are the defaults (adapter hidden 192, LoRA rank 150 on q,v, 40 prompts, LST r 4 with every "
            "layer)");
        cmd->add_option(
               "--visual-dim", f->visualDim, "with --vl: the image features' width (CLIP RN101: 2048)")
            ->capture_default_str();
        f->options.addTo(cmd);
        cmd->callback([f] { runGuarded("params", [&] { return runParams(*f); }); });
    }
    {
        auto* bench
            = app.add_subcommand("bench", "Benchmarks: figures and ratios measured side by side in one run");
        bench->require_subcommand(1);
        auto f = std::make_shared<BenchMemoryFlags>();
        auto* cmd = bench->add_subcommand("memory", "Peak training memory per method (real AdamW steps)");
        auto* shape = cmd->add_option("--shape", f->shape,
                             "backbone shape: t5-small, t5-base, t5-large, t5-3b, " + llamaShapeNames()
                                 + " (published configs, random weights)")
                          ->capture_default_str();
        cmd->add_flag("--vl", f->vl,
            "vision-and-language (CLIP-T5, docs/VL.md): random visual features beside the text, each method "
            "with "
            "its visual projection and the paper's Table 6 settings; rows beside Table 3's train memory");
        cmd->add_option(
               "--visual-tokens", f->visualTokens, "with --vl: visual tokens per example (the paper: 36)")
            ->capture_default_str();
        cmd->add_option("--visual-dim", f->visualDim, "with --vl: the features' width (CLIP RN101: 2048)")
            ->capture_default_str();
        cmd->add_option("--inference-repeats", f->inferenceRepeats,
               "timed no-grad forwards after the training steps (>= 1)")
            ->capture_default_str()
            ->check(CLI::Range(1, 1000));
        cmd->add_option(
               "--model", f->model, "use the config.json of a HF folder as the shape (random weights)")
            ->excludes(shape);
        cmd->add_option("--batch", f->batch)->capture_default_str()->check(CLI::Range(1, 4096));
        cmd->add_option("--src-len", f->srcLen)->capture_default_str()->check(CLI::Range(1, 8192));
        cmd->add_option("--tgt-len", f->tgtLen)->capture_default_str()->check(CLI::Range(1, 8192));
        cmd->add_option("--steps", f->steps, "AdamW steps per method (>= 2)")
            ->capture_default_str()
            ->check(CLI::Range(2, 100));
        cmd->add_option("--methods", f->methods, "comma list")->capture_default_str();
        cmd->add_option("--device", f->device, "cpu or cuda[:N]")->capture_default_str();
        cmd->add_option(
               "--backbone-dropout", f->dropout, "dropout rate of the backbone (the paper trains with 0.1)")
            ->capture_default_str()
            ->check(CLI::Range(0.0, 0.99));
        cmd->add_option("--dtype", f->dtype,
               "fp32, or bf16 (mixed precision: bf16 autocast, fp32 weights and AdamW state)")
            ->capture_default_str()
            ->check(CLI::IsMember({ "fp32", "bf16" }));
        cmd->add_flag("--json", f->json, "one JSON object keyed by method");
        f->options.addTo(cmd);
        cmd->callback([f] { runGuarded("bench memory", [&] { return runBenchMemory(*f); }); });
        registerBenchSpeedCommand(bench);
        registerBenchScalingCommand(bench);
        registerBenchQuantCommand(bench);
    }
}

} // namespace ladder::cli
