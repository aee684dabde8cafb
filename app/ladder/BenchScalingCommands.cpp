// ladder bench scaling: data parallelism measured on this machine (1 and 2 ranks of the real `ladder train`,
// side by side) and, on paper, what each method all-reduces per step at t5-base and t5-3b with what NCCL's
// bandwidth makes of it (docs/SCALING.md, "Scaling").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <regex>
#include <sstream>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "BenchScalingCommands.h"
#include "Commands.h"
#include "JsonOutput.h"
#include "data/DemoTasks.h"
#include "model/T5Config.h"
#include "peft/MethodOptions.h"
#include "store/ResultsStore.h"
#include "train/DemoPaths.h"
#include "train/MemoryEstimate.h"
#include "train/RunProcess.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder::cli {
namespace {

namespace fs = std::filesystem;

struct ScalingFlags {
    std::string model; // an HF folder with its tokenizer; default: the demo's backbone
    std::string task; // a run spec's task object as JSON; default: the demo's supersense task
    std::string method = "ladder";
    std::int64_t batch = 16;
    std::int64_t steps = 12;
    std::int64_t gpus = 8;
    double nvlinkBusGBs = 400.0;
    double networkBusGBs = 50.0;
    bool json = false;
};

// One measured configuration: `processes` ranks of `threads` threads each on the same global batch.
struct Measured {
    int processes = 1;
    int threads = 1;
    double stepSeconds = 0.0; // median over the steps after the first two
    double tokensPerSecond = 0.0; // median
    double allreduceMB = 0.0; // from the run's "data parallel:" log line (0 for one process)
};

double median(std::vector<double> v)
{
    if (v.empty())
        return 0.0;
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

// Runs `ladder train --config spec [--nproc P]` into a fresh store and reads its per-step figures.
Measured measure(const std::string& dir, const nlohmann::json& baseSpec, int processes, int threads)
{
    auto spec = baseSpec;
    spec["training"]["threads"] = threads;
    const auto tag = std::to_string(processes) + "x" + std::to_string(threads);
    const auto specPath = dir + "/spec-" + tag + ".json";
    const auto store = dir + "/runs-" + tag + ".sqlite";
    std::ofstream(specPath) << spec.dump(2);
    std::cerr << "bench scaling: " << processes << " rank" << (processes > 1 ? "s" : "") << " x " << threads
              << " thread" << (threads > 1 ? "s" : "") << " ..." << std::endl;
    ChildProcess child;
    ChildProcess::Options options;
    options.program = selfExecutable();
    options.args = { "train", "--config", specPath, "--store", store, "--nproc", std::to_string(processes) };
    options.setEnv = { "OMP_NUM_THREADS=" + std::to_string(threads) };
    std::string error;
    if (!child.start(options, &error))
        throw Error(error);
    std::string lastLine; // of stderr: the reason, when the run fails
    const auto exit = child.supervise([](const std::string&) {},
        [&lastLine](const std::string& line) {
            if (!line.empty())
                lastLine = line;
        });
    if (exit.signalled || exit.exitCode != 0)
        throw Error("the run on " + std::to_string(processes) + " rank" + (processes > 1 ? "s " : " ")
            + exit.describe() + (lastLine.empty() ? "" : ": " + lastLine));
    ResultsStore s;
    if (!s.open(store, ResultsStore::OpenMode::Existing, &error))
        throw Error(error);
    std::vector<MetricPoint> points;
    if (!s.getMetrics(1, 0, &points, &error))
        throw Error(error);
    Measured m;
    m.processes = processes;
    m.threads = threads;
    std::vector<double> dt, tps;
    for (std::size_t i = 1; i < points.size(); ++i) {
        if (points[i].step <= 2)
            continue; // the first steps warm up the allocator and the caches
        dt.push_back(points[i].elapsedSeconds.value_or(0.0) - points[i - 1].elapsedSeconds.value_or(0.0));
        tps.push_back(points[i].tokensPerSecond.value_or(0.0));
    }
    m.stepSeconds = median(dt);
    m.tokensPerSecond = median(tps);
    std::vector<LogLine> logs;
    if (s.getLogs(1, 0, &logs, &error)) {
        static const std::regex bytes(R"(gradients all-reduced: ([0-9.]+) MB a step)");
        for (const auto& l : logs) {
            std::smatch match;
            if (std::regex_search(l.message, match, bytes))
                m.allreduceMB = std::stod(match[1].str());
        }
    }
    return m;
}

// What a method all-reduces per step at a shape: its trainable parameters as fp32 (the estimator's count,
// no tensor allocated), plus GradientSync's presence count per tensor, which is negligible and left out.
struct OnPaper {
    std::string shape, method;
    std::int64_t trainable = 0;
    double megabytes = 0.0;
    double nvlinkMs = 0.0, networkMs = 0.0;
};

OnPaper onPaper(const std::string& shape, const std::string& method, const ScalingFlags& f)
{
    MemoryEstimateInput in;
    in.config = T5Config::preset(shape);
    in.method = MethodOptions::fromJson({ { "method", method } }, "bench scaling");
    in.batch = 1;
    in.srcLen = 8;
    in.tgtLen = 2;
    const auto e = estimateTrainingMemory(in);
    OnPaper p;
    p.shape = shape;
    p.method = method;
    p.trainable = e.trainableParams;
    p.megabytes = static_cast<double>(e.trainableParams) * 4.0 / 1e6;
    // NCCL's ring all-reduce: bus bandwidth = algorithm bandwidth x 2 (n - 1) / n (nccl-tests' definition),
    // so a buffer of S bytes takes S x 2 (n - 1) / n / busBW.
    const double factor = 2.0 * static_cast<double>(f.gpus - 1) / static_cast<double>(f.gpus);
    p.nvlinkMs = p.megabytes * 1e6 * factor / (f.nvlinkBusGBs * 1e9) * 1e3;
    p.networkMs = p.megabytes * 1e6 * factor / (f.networkBusGBs * 1e9) * 1e3;
    return p;
}

std::string fixed(double v, int digits)
{
    std::ostringstream o;
    o << std::fixed << std::setprecision(digits) << v;
    return o.str();
}

int runBenchScaling(const ScalingFlags& f)
{
    if (f.batch < 2)
        throw UsageError("--batch: expected 2 or more (the global batch that 2 ranks share)");
    if (f.steps < 5)
        throw UsageError("--steps: expected 5 or more (the first two are not timed)");
    if (f.gpus < 2)
        throw UsageError("--gpus: expected 2 or more");
    const auto backbone = f.model.empty() ? demoBackboneDirectory() : f.model;
    if (!fs::exists(backbone + "/config.json"))
        throw Error("bench scaling: no backbone at " + backbone
            + (f.model.empty() ? " (build the demo with `ladder demo`, or give --model DIR)" : ""));
    nlohmann::json task = f.task.empty()
        ? nlohmann::json { { "type", "demo" }, { "path", demoTasksDirectory() }, { "name", "supersense" } }
        : parseJson(f.task, "--task");
    const nlohmann::json spec { { "backbone", backbone }, { "task", task },
        { "method", MethodOptions::fromJson({ { "method", f.method } }, "--method").toJson() },
        { "training",
            { { "max_steps", f.steps }, { "batch_size", f.batch }, { "warmup_steps", 1 },
                { "max_source_length", 64 }, { "max_eval_examples", 16 }, { "log_every_steps", 1 } } },
        { "seed", 0 } };
    char tmpl[] = "/tmp/ladder-bench-scaling-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    if (!made)
        throw Error("bench scaling: cannot make a temporary folder");
    const std::string dir = made;
    std::vector<Measured> rows;
    try {
        rows.push_back(measure(dir, spec, 1, 1));
        rows.push_back(measure(dir, spec, 1, 2));
        rows.push_back(measure(dir, spec, 2, 1));
    } catch (...) {
        demofs::removeTree(dir);
        throw;
    }
    demofs::removeTree(dir);

    const auto& base = rows[0];
    std::vector<OnPaper> paper;
    for (const char* shape : { "t5-base", "t5-3b" })
        for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" })
            paper.push_back(onPaper(shape, m, f));

    if (f.json) {
        nlohmann::json measured = nlohmann::json::array();
        for (const auto& r : rows)
            measured.push_back({ { "processes", r.processes }, { "threads_per_process", r.threads },
                { "step_seconds", jsonNumber(r.stepSeconds) },
                { "tokens_per_second", jsonNumber(r.tokensPerSecond) },
                { "speedup", jsonNumber(base.stepSeconds / r.stepSeconds) },
                { "efficiency", jsonNumber(base.stepSeconds / r.stepSeconds / (r.processes * r.threads)) },
                { "allreduce_mb_per_step", jsonNumber(r.allreduceMB) } });
        nlohmann::json onpaper = nlohmann::json::array();
        for (const auto& p : paper)
            onpaper.push_back({ { "shape", p.shape }, { "method", p.method },
                { "trainable_params", p.trainable }, { "allreduce_mb_per_step", jsonNumber(p.megabytes) },
                { "nvlink_ms", jsonNumber(p.nvlinkMs) }, { "network_ms", jsonNumber(p.networkMs) } });
        printJson({ { "backbone", backbone }, { "method", f.method }, { "global_batch", f.batch },
            { "steps", f.steps }, { "measured", measured },
            { "on_paper",
                { { "gpus", f.gpus }, { "nvlink_bus_gb_s", f.nvlinkBusGBs },
                    { "network_bus_gb_s", f.networkBusGBs }, { "rows", onpaper } } } });
        return 0;
    }
    std::cout << "Data parallel on this machine: `ladder train --nproc P` (Gloo), " << f.method << " on "
              << backbone << ", global batch " << f.batch << ", median step of steps 3-" << f.steps << "\n\n";
    std::cout << "ranks x threads   step (s)   tokens/s   speedup   efficiency   all-reduce/step\n";
    for (const auto& r : rows) {
        const double speedup = base.stepSeconds / r.stepSeconds;
        std::cout << std::setw(7) << r.processes << " x " << std::left << std::setw(7) << r.threads
                  << std::right << std::setw(10) << fixed(r.stepSeconds, 3) << std::setw(11)
                  << fixed(r.tokensPerSecond, 0) << std::setw(9) << fixed(speedup, 2) << "x" << std::setw(12)
                  << fixed(speedup / (r.processes * r.threads), 2) << std::setw(14)
                  << (r.processes > 1 ? fixed(r.allreduceMB, 3) + " MB" : std::string("-")) << "\n";
    }
    std::cout << "(speedup and efficiency against 1 x 1; efficiency = speedup / cores used)\n\n";
    std::cout << "On paper, " << f.gpus << " GPUs: fp32 gradients all-reduced per optimizer step (NCCL ring: "
              << "S x 2(n-1)/n / bus bandwidth; NVLink " << f.nvlinkBusGBs << " GB/s, network "
              << f.networkBusGBs << " GB/s bus bandwidth assumed)\n\n";
    std::cout << "shape     method     trainable      MB/step   vs full   NVLink ms   network ms\n";
    for (const auto& p : paper) {
        double full = 0.0;
        for (const auto& q : paper)
            if (q.shape == p.shape && q.method == "full")
                full = q.megabytes;
        std::cout << std::left << std::setw(10) << p.shape << std::setw(9) << p.method << std::right
                  << std::setw(13) << p.trainable << std::setw(13) << fixed(p.megabytes, 2) << std::setw(10)
                  << fixed(p.megabytes / full, 4) << std::setw(12) << fixed(p.nvlinkMs, 3) << std::setw(13)
                  << fixed(p.networkMs, 2) << "\n";
    }
    return 0;
}

} // namespace

void registerBenchScalingCommand(CLI::App* bench)
{
    auto f = std::make_shared<ScalingFlags>();
    auto* cmd = bench->add_subcommand("scaling",
        "Data parallel: 1 and 2 ranks of ladder train measured side by side here, and each method's "
        "all-reduce per step at t5-base and t5-3b on paper");
    cmd->add_option("--model", f->model, "HF folder with its tokenizer (default: the demo's backbone)");
    cmd->add_option("--task", f->task, "a run spec's task object as JSON (default: the demo's supersense)");
    cmd->add_option("--method", f->method, "the method measured")->capture_default_str();
    cmd->add_option("--batch", f->batch, "global batch")->capture_default_str()->check(CLI::Range(2, 4096));
    cmd->add_option("--steps", f->steps, "steps per measured run")->capture_default_str();
    cmd->add_option("--gpus", f->gpus, "GPUs on paper")->capture_default_str();
    cmd->add_option("--nvlink-gbs", f->nvlinkBusGBs, "NCCL bus bandwidth within a node, GB/s")
        ->capture_default_str();
    cmd->add_option("--network-gbs", f->networkBusGBs, "NCCL bus bandwidth across nodes, GB/s")
        ->capture_default_str();
    cmd->add_flag("--json", f->json, "one JSON object");
    cmd->callback([f] { runGuarded("bench scaling", [&] { return runBenchScaling(*f); }); });
}

} // namespace ladder::cli
