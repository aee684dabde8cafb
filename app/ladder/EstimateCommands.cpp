// ladder estimate: the analytic peak training memory of one method (no tensor is allocated).
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "JsonOutput.h"
#include "MethodFlags.h"
#include "device/Devices.h"
#include "model/llama/LlamaShapes.h"
#include "train/MemoryEstimate.h"
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

struct EstimateFlags {
    std::string shape;
    std::string model;
    std::string method;
    std::int64_t batch = 8;
    std::int64_t srcLen = 128;
    std::int64_t tgtLen = 4;
    std::string dtype = "fp32";
    std::string optimizer = "adamw";
    std::int64_t accumulation = 1;
    std::string device = "cpu";
    bool json = false;
    MethodFlags options;
};

int runEstimate(const EstimateFlags& f)
{
    if (f.shape.empty() == f.model.empty())
        throw UsageError("give exactly one of --shape and --model");
    MemoryEstimateInput in;
    in.llama = decoderConfigFor(f.shape, f.model);
    if (!in.llama)
        in.config
            = f.model.empty() ? T5Config::preset(f.shape) : T5Config::fromJsonFile(f.model + "/config.json");
    in.method = f.options.optionsFor(f.method, true);
    in.batch = f.batch;
    in.srcLen = f.srcLen;
    in.tgtLen = f.tgtLen;
    in.dtype = f.dtype;
    in.optimizer = f.optimizer;
    in.gradientAccumulation = f.accumulation;
    in.device = f.device;
    if (f.device.rfind("cuda", 0) == 0)
        in.cudaWorkspaceBytes = cuda::cublasWorkspaceBytes(); // this machine's GPU, if it has one
    const auto e = estimateTrainingMemory(in);
    const std::string backbone = f.model.empty() ? f.shape : f.model;

    if (f.json) {
        nlohmann::json parts = nlohmann::json::array();
        for (const auto& [part, bytes] : e.activationsPerPart)
            parts.push_back({ { "part", part }, { "bytes", bytes } });
        printJson({ { "backbone", backbone }, { "method", in.method.toJson() }, { "batch", in.batch },
            { "src_len", in.srcLen }, { "tgt_len", in.tgtLen }, { "dtype", in.dtype },
            { "optimizer", in.optimizer }, { "gradient_accumulation", in.gradientAccumulation },
            { "device", in.device }, { "total_params", e.totalParams },
            { "trainable_params", e.trainableParams }, { "frozen_weight_bytes", e.frozenWeights },
            { "trainable_weight_bytes", e.trainableWeights }, { "gradient_bytes", e.gradients },
            { "optimizer_bytes", e.optimizerState }, { "batch_input_bytes", e.batchInputs },
            { "activation_bytes", e.activations }, { "gradient_bytes_at_peak", e.gradientsAtPeak },
            { "activation_bytes_at_peak", e.activationsAtPeak }, { "transient_bytes", e.transient },
            { "estimated_bytes", e.total }, { "peak_where", e.peakWhere },
            { "activations_per_part", parts } });
        return 0;
    }
    std::cout << "memory estimate: " << backbone << ", " << in.method.toJson().dump() << "\n"
              << "batch " << in.batch << ", source " << in.srcLen << ", target " << in.tgtLen << ", "
              << in.dtype << ", " << in.optimizer << ", " << in.device
              << (in.gradientAccumulation > 1
                         ? ", accumulation " + std::to_string(in.gradientAccumulation) + " (gradients live)"
                         : std::string())
              << "\n"
              << "parameters: " << withCommas(e.totalParams) << " (" << withCommas(e.trainableParams)
              << " trainable)\n\n";
    auto row = [](const std::string& name, std::uint64_t bytes, const std::string& note = "") {
        std::cout << std::left << std::setw(22) << name << std::right << std::setw(11) << mb(bytes) << " MB"
                  << (note.empty() ? "" : "   " + note) << "\n";
    };
    row("frozen weights", e.frozenWeights);
    row("trainable weights", e.trainableWeights);
    row("optimizer state", e.optimizerState, in.optimizer == "adamw" ? "AdamW exp_avg + exp_avg_sq" : "none");
    row("batch inputs", e.batchInputs);
    row("gradients", e.gradients, mb(e.gradientsAtPeak) + " MB alive at the peak");
    row("activations", e.activations,
        "saved for backward; " + mb(e.activationsAtPeak) + " MB alive at the peak");
    row("transient", e.transient, "gradient buffers in flight at the peak");
    row("estimated peak", e.total, "at " + e.peakWhere);
    std::cout << "\nactivations saved for backward, by part:\n";
    for (const auto& [part, bytes] : e.activationsPerPart)
        row("  " + part, bytes);
    return 0;
}

} // namespace

void registerEstimateCommands(CLI::App& app)
{
    auto f = std::make_shared<EstimateFlags>();
    auto* cmd = app.add_subcommand(
        "estimate", "Analytic peak training memory of a method (no tensor is allocated)");
    auto* shape = cmd->add_option("--shape", f->shape,
        "t5-small, t5-base, t5-large, t5-3b, " + llamaShapeNames() + " (published configs)");
    auto* model = cmd->add_option(
        "--model", f->model, "HuggingFace T5 or decoder (llama, mistral, qwen2) folder: its config.json");
    shape->excludes(model);
    cmd->add_option("--method", f->method, "full, bitfit, adapter, lora, prompt or ladder")->required();
    cmd->add_option("--batch", f->batch)->capture_default_str()->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--src-len", f->srcLen)->capture_default_str()->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--tgt-len", f->tgtLen)->capture_default_str()->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--dtype", f->dtype,
           "fp32, or bf16 (mixed precision: bf16 autocast, fp32 weights and AdamW state)")
        ->capture_default_str();
    cmd->add_option("--optimizer", f->optimizer, "adamw or sgd")->capture_default_str();
    cmd->add_option("--gradient-accumulation", f->accumulation,
           "micro-batches per optimizer step (above 1, earlier micro-batches' gradients stay live)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--device", f->device, "cpu or cuda[:N] (dropout masks differ)")->capture_default_str();
    cmd->add_flag("--json", f->json, "machine-readable output");
    f->options.addTo(cmd);
    cmd->callback([f] { runGuarded("estimate", [&] { return runEstimate(*f); }); });
}

} // namespace ladder::cli
