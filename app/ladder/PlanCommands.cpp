// ladder plan: what fits a memory budget before launch (issue 18; docs/PERFORMANCE.md, "Fit to a device:
// ladder plan"): per method, the largest batch and source length whose estimated peak fits, and the
// cheapest LST configuration that fits at the requested batch. Nothing is allocated but the estimate's
// numbers.
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
#include "train/MemoryPlan.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

constexpr std::size_t kLabelWidth = 30; // the method column of the table

struct PlanFlags {
    std::string shape;
    std::string model;
    std::string budget;
    bool budgetGiven = false; // --budget was on the command line (an empty value is an error)
    std::string device = "cpu";
    std::string methods = "full,bitfit,adapter,lora,qlora,prompt,ladder";
    std::int64_t batch = 8;
    std::int64_t srcLen = 128;
    std::int64_t tgtLen = 4;
    std::string dtype = "fp32";
    bool json = false;
    MethodFlags options;
};

// The budget: --budget, else the free memory of the device (a CUDA device's, or the CPU's MemAvailable).
std::uint64_t budgetOf(const PlanFlags& f, std::string* source)
{
    if (f.budgetGiven) {
        try {
            *source = "given";
            return parseByteSize(f.budget, "--budget");
        } catch (const Error& e) {
            throw UsageError(e.what());
        }
    }
    const std::string id = f.device == "cuda" ? std::string("cuda:0") : f.device;
    const auto devices = id == "cpu" ? std::vector<ComputeDevice> { cpuDevice() } : listComputeDevices();
    for (const auto& d : devices) {
        if (d.id != id)
            continue;
        if (d.freeBytes == 0)
            break;
        *source = d.id == "cpu" ? std::string("memory available to this machine's CPU (MemAvailable)")
                                : "free memory of " + d.id + " (" + d.name + ")";
        return d.freeBytes;
    }
    throw UsageError("--budget: not given, and " + id
        + " is not a device of this machine whose free memory can be read (give --budget, e.g. 24GiB)");
}

nlohmann::json fitJson(const FitResult& fit, bool ok)
{
    if (!ok)
        return nullptr;
    return { { "value", fit.value }, { "peak_bytes", fit.peak }, { "capped", fit.capped } };
}

nlohmann::json candidateJson(const OptionCandidate& c)
{
    return { { "method", c.options.toJson() }, { "changes", c.changes },
        { "inexact_changes", c.inexactChanges }, { "peak_bytes", c.peak }, { "fits", c.fits } };
}

std::string fitCell(const FitResult& fit)
{
    if (fit.value == 0)
        return "none";
    return (fit.capped ? ">=" : "") + std::to_string(fit.value);
}

int runPlan(const PlanFlags& f)
{
    if (f.shape.empty() == f.model.empty())
        throw UsageError("give exactly one of --shape and --model");
    if (f.dtype != "fp32" && f.dtype != "bf16")
        throw UsageError("--dtype: expected fp32 or bf16, got '" + f.dtype + "'");
    if (f.device != "cpu" && f.device.rfind("cuda", 0) != 0)
        throw UsageError("--device: expected cpu, cuda or cuda:N, got '" + f.device + "'");
    MemoryEstimateInput request;
    request.llama = decoderConfigFor(f.shape, f.model); // llama-1b, llama2-7b or a decoder folder
    if (!request.llama)
        request.config
            = f.model.empty() ? T5Config::preset(f.shape) : T5Config::fromJsonFile(f.model + "/config.json");
    request.batch = f.batch;
    request.srcLen = f.srcLen;
    request.tgtLen = f.tgtLen;
    request.dtype = f.dtype;
    request.device = f.device;
    if (f.device.rfind("cuda", 0) == 0)
        request.cudaWorkspaceBytes = cuda::cublasWorkspaceBytes(); // this machine's GPU, if it has one
    std::vector<MethodOptions> methods;
    for (const auto& m : splitCommas(f.methods)) {
        if (!isKnownMethod(m))
            throw UsageError("--methods: unknown method '" + m
                + "' (expected a comma list among full, bitfit, adapter, lora, qlora, prompt, ladder)");
        methods.push_back(f.options.optionsFor(m, false));
    }
    if (methods.empty())
        throw UsageError("--methods: expected a comma list of methods");
    std::string budgetSource;
    const auto budget = budgetOf(f, &budgetSource);
    const auto plan = planTrainingMemory(request, budget, methods);
    const std::string backbone = f.model.empty() ? f.shape : f.model;

    if (f.json) {
        nlohmann::json rows = nlohmann::json::array();
        for (const auto& r : plan.rows) {
            const bool ok = r.error.empty();
            rows.push_back({ { "label", r.label }, { "method", r.options.toJson() },
                { "error", jsonText(r.error) }, { "max_batch", fitJson(r.batch, ok) },
                { "max_src_len", fitJson(r.sourceLength, ok) },
                { "peak_bytes_at_request", ok ? nlohmann::json(r.peakAtRequest) : nlohmann::json(nullptr) },
                { "fits_at_request", ok ? nlohmann::json(r.fitsRequest) : nlohmann::json(nullptr) } });
        }
        nlohmann::json ladder = nullptr;
        if (plan.planLadder) {
            const auto& c = plan.ladder;
            ladder = { { "found", c.found },
                { "chosen", c.found ? candidateJson(c.chosen) : nlohmann::json(nullptr) },
                { "given", candidateJson(c.given) }, { "smallest", candidateJson(c.smallest) },
                { "candidates", c.candidates }, { "fitting", c.fitting }, { "why", c.why } };
        }
        printJson({ { "backbone", backbone }, { "budget_bytes", budget }, { "budget_source", budgetSource },
            { "device", request.device }, { "dtype", request.dtype }, { "batch", request.batch },
            { "src_len", request.srcLen }, { "tgt_len", request.tgtLen }, { "methods", rows },
            { "ladder", ladder } });
        return 0;
    }

    std::cout << "memory plan: " << backbone << ", budget " << formatBinaryBytes(budget) << " (" << mb(budget)
              << " MB" << (budgetSource == "given" ? std::string() : ", the " + budgetSource) << "), "
              << request.device << ", " << request.dtype << "\n"
              << "requested: batch " << request.batch << ", source " << request.srcLen << ", target "
              << request.tgtLen << " (estimated peaks: `ladder estimate`, docs/PERFORMANCE.md)\n\n";
    const std::string atBatch = "batch " + std::to_string(request.batch);
    std::cout << std::left << std::setw(kLabelWidth) << "method" << std::right << std::setw(10) << "max batch"
              << std::setw(11) << "peak MB" << std::setw(16) << (atBatch + " MB") << std::setw(6) << "fits"
              << std::setw(12) << "max source" << std::setw(11) << "peak MB"
              << "\n";
    for (const auto& r : plan.rows) {
        // A long label (a chosen LST configuration) has a line of its own, its figures on the next.
        if (r.label.size() >= kLabelWidth)
            std::cout << r.label << "\n" << std::string(kLabelWidth, ' ');
        else
            std::cout << std::left << std::setw(kLabelWidth) << r.label;
        std::cout << std::right;
        if (!r.error.empty()) {
            std::cout << "  " << r.error << "\n";
            continue;
        }
        std::cout << std::setw(10) << fitCell(r.batch) << std::setw(11) << mb(r.batch.peak) << std::setw(16)
                  << mb(r.peakAtRequest) << std::setw(6) << (r.fitsRequest ? "yes" : "no") << std::setw(12)
                  << fitCell(r.sourceLength) << std::setw(11) << mb(r.sourceLength.peak) << "\n";
    }
    std::cout << "\nmax batch: at source " << request.srcLen << "; max source: at " << atBatch
              << "; 'none': even 1 does not fit (its peak shown)\n";
    if (plan.planLadder) {
        const auto& c = plan.ladder;
        std::cout << "\nLST at " << atBatch << ": "
                  << (c.found ? (
                          c.chosen.changes.empty() ? std::string("the given options") : c.chosen.label())
                              : std::string("nothing fits"))
                  << "\n  why: " << c.why << "\n";
        if (c.found && !c.chosen.changes.empty())
            std::cout << "  spec: " << c.chosen.options.toJson().dump() << "\n";
    }
    return 0;
}

} // namespace

void registerPlanCommands(CLI::App& app)
{
    auto f = std::make_shared<PlanFlags>();
    auto* cmd = app.add_subcommand("plan",
        "What fits a memory budget: per method the largest batch and source length, and the cheapest LST "
        "configuration at the requested batch (from the estimate; nothing is allocated)");
    auto* shape = cmd->add_option(
        "--shape", f->shape, "t5-small, t5-base, t5-large, t5-3b, llama-1b, llama2-7b (published configs)");
    auto* model
        = cmd->add_option("--model", f->model, "HuggingFace T5 folder (its config.json gives the shape)");
    shape->excludes(model);
    auto* budget = cmd->add_option("--budget", f->budget,
        "memory budget: 24GiB, 24GB, 800MiB or bytes (default: the device's free memory; for the CPU, "
        "MemAvailable)");
    cmd->add_option("--device", f->device, "cpu or cuda[:N] (the estimate's CUDA terms)")
        ->capture_default_str();
    cmd->add_option("--methods", f->methods, "comma list of methods to plan")->capture_default_str();
    cmd->add_option("--batch", f->batch, "the requested batch (max source and the LST choice are at it)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--src-len", f->srcLen)->capture_default_str()->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--tgt-len", f->tgtLen)->capture_default_str()->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--dtype", f->dtype, "fp32, or bf16 (mixed precision)")->capture_default_str();
    cmd->add_flag("--json", f->json, "machine-readable output");
    f->options.addTo(cmd);
    cmd->callback([f, budget] {
        f->budgetGiven = budget->count() > 0;
        runGuarded("plan", [&] { return runPlan(*f); });
    });
}

} // namespace ladder::cli
