// ladder train | sweep | runs | eval: experiments from a run spec to a stored, comparable result.
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "model/T5Tokenizer.h"
#include "peft/Method.h"
#include "store/ResultsStore.h"
#include "train/StoreRecorder.h"
#include "train/Trainer.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

volatile std::sig_atomic_t g_interrupted = 0;

void onSigint(int)
{
    g_interrupted = 1;
}

std::string mb(double bytes)
{
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << bytes / 1e6;
    return s.str();
}

std::string clock(double seconds)
{
    if (!std::isfinite(seconds) || seconds < 0)
        return "--:--";
    const auto s = static_cast<long long>(seconds);
    std::ostringstream o;
    o << std::setfill('0');
    if (s >= 3600)
        o << s / 3600 << ":" << std::setw(2) << (s / 60) % 60 << ":" << std::setw(2) << s % 60;
    else
        o << std::setw(2) << s / 60 << ":" << std::setw(2) << s % 60;
    return o.str();
}

// Progress on stderr: a one-line bar redrawn in place on a terminal; elsewhere (a log file, a pipe, a batch
// job) a plain line at most every 10 seconds and at the last step. Ctrl+C cancels the run cleanly (between
// steps).
class ProgressBar : public TrainerObserver {
public:
    explicit ProgressBar(std::string label)
        : m_label(std::move(label))
        , m_terminal(isatty(STDERR_FILENO) != 0)
    {
    }
    void onStep(const TrainStep& s) override
    {
        const double frac
            = s.totalSteps ? static_cast<double>(s.step) / static_cast<double>(s.totalSteps) : 0.0;
        const int width = 24;
        const int filled = static_cast<int>(frac * width);
        const double eta = s.step
            ? s.elapsedSeconds / static_cast<double>(s.step) * static_cast<double>(s.totalSteps - s.step)
            : NAN;
        if (!m_terminal) {
            if (s.step != s.totalSteps && s.elapsedSeconds - m_lastLine < 10.0 && m_lastLine >= 0)
                return;
            m_lastLine = s.elapsedSeconds;
        }
        std::cerr << (m_terminal ? "\r" : "") << m_label;
        if (m_terminal)
            std::cerr << " [" << std::string(filled, '#') << std::string(width - filled, '.') << "]";
        std::cerr << " step " << s.step << "/" << s.totalSteps << "  loss " << std::fixed
                  << std::setprecision(4) << s.loss << "  mem " << mb(static_cast<double>(s.memory.allocated))
                  << " MB (peak " << mb(static_cast<double>(s.memory.peakAllocated)) << ")  ETA "
                  << clock(eta) << (m_terminal ? "   " : "\n") << std::flush;
    }
    void onEval(const TrainEval& e) override
    {
        std::cerr << (m_terminal ? "\r" : "") << m_label << " " << e.split << " step " << e.step << ": "
                  << e.mainName << " " << std::setprecision(4) << e.main << " (" << e.examples
                  << " examples, " << e.invalid << " unparseable)"
                  << (m_terminal ? std::string(30, ' ') : std::string()) << "\n";
    }
    void onLog(const std::string& level, const std::string& message) override
    {
        if (level == "warning" || level == "error")
            std::cerr << "\n" << level << ": " << message << "\n";
    }
    // LST's Fisher pass before the first step: redrawn in place on a terminal, else a line every 10%.
    void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) override
    {
        const auto tenths = total > 0 ? done * 10 / total : 10;
        if (done == m_initDone || (!m_terminal && tenths <= m_initTenths && done != total))
            return;
        m_initTenths = tenths;
        m_initDone = done;
        std::cerr << (m_terminal ? "\r" : "") << m_label << " " << what << " " << done << "/" << total
                  << " examples" << (m_terminal ? (done == total ? "\n" : "   ") : "\n") << std::flush;
    }
    bool cancelRequested() override { return g_interrupted != 0; }

private:
    std::string m_label;
    bool m_terminal;
    double m_lastLine = -1.0;
    std::int64_t m_initTenths = -1;
    std::int64_t m_initDone = -1;
};

bool openStore(ResultsStore& store, const std::string& path)
{
    std::string error;
    if (!store.open(path, &error))
        throw Error(error);
    return true;
}

void printSummary(std::int64_t id, const RunSummary& s)
{
    std::cout << "run " << id << ": " << toString(s.status);
    if (!s.message.empty())
        std::cout << " (" << s.message << ")";
    std::cout << "\n";
    if (s.trainableParams)
        std::cout << "  trainable      " << s.trainableParams << " of " << s.backboneParams << " ("
                  << std::setprecision(3) << std::fixed
                  << 100.0 * static_cast<double>(s.trainableParams) / static_cast<double>(s.backboneParams)
                  << "%)\n";
    std::cout << "  peak memory    " << mb(static_cast<double>(s.peakAllocatedBytes)) << " MB "
              << s.meterLabel << ", training steps\n";
    if (s.initPeakAllocatedBytes)
        std::cout << "  init peak      " << mb(static_cast<double>(s.initPeakAllocatedBytes)) << " MB\n";
    if (s.evalPeakAllocatedBytes)
        std::cout << "  eval peak      " << mb(static_cast<double>(s.evalPeakAllocatedBytes)) << " MB\n";
    if (std::isfinite(s.bestValidation))
        std::cout << "  validation     " << s.mainMetric << " " << std::setprecision(4) << s.bestValidation
                  << " (best, step " << s.bestStep << ")\n";
    if (std::isfinite(s.testMetric))
        std::cout << "  test           " << s.mainMetric << " " << std::setprecision(4) << s.testMetric
                  << "\n";
    std::cout << "  wall time      " << std::setprecision(1) << s.wallSeconds << " s\n";
}

int runTrain(const std::string& config, const std::string& storeOverride)
{
    const auto spec = RunSpec::fromFile(config);
    ResultsStore store;
    const auto path = storePathFor(spec, storeOverride);
    openStore(store, path);
    std::signal(SIGINT, onSigint);
    ProgressBar bar(spec.displayName());
    RunSummary summary;
    std::string error;
    const auto id = trainAndRecord(spec, store, bar, &summary, &error);
    if (id < 0)
        throw Error(error);
    std::cerr << "\n";
    printSummary(id, summary);
    std::cout << "  store          " << path << "\n";
    return summary.status == RunOutcome::Finished ? 0 : (summary.status == RunOutcome::Cancelled ? 130 : 1);
}

// sweep.json: {"base": <run spec>, "methods": [<method options>...], "seeds": [0, 1, 2],
//              "grid": {"training.learning_rate": [...], "method.r": [...]}} -> the cartesian product.
std::vector<nlohmann::json> expandSweep(const nlohmann::json& sweep, const std::string& path)
{
    if (!sweep.is_object() || !sweep.contains("base") || !sweep.at("base").is_object())
        throw Error(path + ": field base: expected a run spec object");
    std::vector<nlohmann::json> specs { sweep.at("base") };
    auto expand = [&](const std::string& dotted, const nlohmann::json& values) {
        if (!values.is_array() || values.empty())
            throw Error(path + ": field " + dotted + ": expected a non-empty array of values");
        std::vector<nlohmann::json> next;
        for (const auto& s : specs)
            for (const auto& v : values) {
                auto copy = s;
                nlohmann::json* node = &copy;
                std::stringstream parts(dotted);
                std::string part, last;
                std::vector<std::string> keys;
                while (std::getline(parts, part, '.'))
                    keys.push_back(part);
                for (std::size_t i = 0; i + 1 < keys.size(); ++i)
                    node = &(*node)[keys[i]];
                (*node)[keys.back()] = v;
                next.push_back(copy);
            }
        specs = next;
    };
    if (sweep.contains("methods")) {
        // An entry is a method options object ({"method": "lora", "rank": 8}) or a pair
        // {"method": {...options...}, "training": {...overrides...}}: methods want different learning rates.
        const auto& methods = sweep.at("methods");
        if (!methods.is_array() || methods.empty())
            throw Error(path + ": field methods: expected a non-empty array of method options");
        std::vector<nlohmann::json> next;
        for (const auto& s : specs)
            for (std::size_t i = 0; i < methods.size(); ++i) {
                const auto& m = methods[i];
                const std::string where = path + ": field methods[" + std::to_string(i) + "]";
                if (!m.is_object())
                    throw Error(where + ": expected a method options object");
                auto copy = s;
                if (m.contains("method") && m.at("method").is_object()) {
                    for (const auto& [k, _] : m.items())
                        if (k != "method" && k != "training")
                            throw Error(where + "." + k + ": unknown (expected method and training)");
                    copy["method"] = m.at("method");
                    if (m.contains("training")) {
                        if (!m.at("training").is_object())
                            throw Error(where + ".training: expected an object of training fields");
                        for (const auto& [k, v] : m.at("training").items())
                            copy["training"][k] = v;
                    }
                } else {
                    copy["method"] = m;
                }
                next.push_back(copy);
            }
        specs = next;
    }
    if (sweep.contains("seeds"))
        expand("seed", sweep.at("seeds"));
    if (sweep.contains("grid")) {
        if (!sweep.at("grid").is_object())
            throw Error(path + ": field grid: expected an object of \"dotted.field\": [values]");
        for (const auto& [k, v] : sweep.at("grid").items())
            expand(k, v);
    }
    for (const auto& [k, _] : sweep.items())
        if (k != "base" && k != "methods" && k != "seeds" && k != "grid" && k != "store")
            throw Error(path + ": field " + k + ": unknown (expected base, methods, seeds, grid, store)");
    return specs;
}

int runSweep(const std::string& config, const std::string& storeOverride)
{
    std::ifstream in(config);
    if (!in)
        throw Error(config + ": cannot open");
    nlohmann::json sweep;
    try {
        in >> sweep;
    } catch (const nlohmann::json::exception& e) {
        throw Error(config + ": not valid JSON: " + e.what());
    }
    const auto raw = expandSweep(sweep, config);
    std::vector<RunSpec> specs;
    for (std::size_t i = 0; i < raw.size(); ++i)
        specs.push_back(RunSpec::fromJson(raw[i], config + " (run " + std::to_string(i + 1) + ")"));
    std::string path = storeOverride;
    if (path.empty() && sweep.contains("store") && sweep.at("store").is_string())
        path = sweep.at("store").get<std::string>();
    path = storePathFor(specs.front(), path);
    ResultsStore store;
    openStore(store, path);
    std::signal(SIGINT, onSigint);
    int failed = 0, skipped = 0, done = 0;
    for (std::size_t i = 0; i < specs.size() && !g_interrupted; ++i) {
        const auto& spec = specs[i];
        std::optional<RunRecord> existing;
        std::string error;
        if (!store.findFinishedRun(runSpecHash(spec), &existing, &error))
            throw Error(error);
        const std::string label
            = "[" + std::to_string(i + 1) + "/" + std::to_string(specs.size()) + "] " + spec.displayName();
        if (existing) {
            std::cout << label << ": finished before as run " << existing->id << ", skipped\n";
            ++skipped;
            continue;
        }
        ProgressBar bar(label);
        RunSummary summary;
        const auto id = trainAndRecord(spec, store, bar, &summary, &error);
        if (id < 0)
            throw Error(error);
        std::cerr << "\n";
        printSummary(id, summary);
        (summary.status == RunOutcome::Finished ? done : failed)++;
    }
    std::cout << "sweep: " << done << " finished, " << skipped << " skipped, " << failed
              << " failed or cancelled; store " << path << "\n";
    return failed == 0 && !g_interrupted ? 0 : 1;
}

nlohmann::json runJson(const RunRecord& r)
{
    const auto& f = r.figures;
    auto opt = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    return { { "id", r.id }, { "name", r.name }, { "status", toString(r.status) }, { "method", r.method },
        { "method_options", nlohmann::json::parse(r.methodOptionsJson.empty() ? "{}" : r.methodOptionsJson) },
        { "backbone", r.backbone }, { "task", r.task }, { "seed", opt(r.seed) }, { "device", r.device },
        { "created_at", r.createdAt }, { "finished_at", r.finishedAt }, { "step", r.step },
        { "total_steps", r.totalSteps }, { "error", r.errorMessage },
        { "trainable_params", opt(f.trainableParams) }, { "backbone_params", opt(f.backboneParams) },
        { "trainable_percent", opt(r.trainablePercent()) },
        { "peak_allocated_bytes", opt(f.peakAllocatedBytes) },
        { "init_peak_allocated_bytes", opt(f.initPeakAllocatedBytes) },
        { "eval_peak_allocated_bytes", opt(f.evalPeakAllocatedBytes) }, { "main_metric", f.mainMetricName },
        { "best_validation", opt(f.bestValidationMetric) }, { "test", opt(f.testMetric) },
        { "wall_seconds", opt(f.wallSeconds) } };
}

std::string cell(const std::optional<double>& v, int precision, double scale = 1.0)
{
    if (!v)
        return "-";
    std::ostringstream s;
    s << std::fixed << std::setprecision(precision) << *v * scale;
    return s.str();
}

int runsList(const std::string& storePath, bool asJson)
{
    ResultsStore store;
    openStore(store, storePath.empty() ? ResultsStore::defaultPath() : storePath);
    std::vector<RunRecord> runs;
    std::string error;
    if (!store.listRuns({}, &runs, &error))
        throw Error(error);
    if (asJson) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& r : runs)
            out.push_back(runJson(r));
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::cout << std::left << std::setw(5) << "id" << std::setw(12) << "status" << std::setw(9) << "method"
              << std::setw(18) << "task" << std::setw(6) << "seed" << std::right << std::setw(10) << "train %"
              << std::setw(11) << "peak MB" << std::setw(10) << "best val" << std::setw(8) << "test"
              << std::setw(10) << "wall s"
              << "  backbone\n";
    for (const auto& r : runs) {
        const auto& f = r.figures;
        std::cout << std::left << std::setw(5) << r.id << std::setw(12) << toString(r.status) << std::setw(9)
                  << r.method << std::setw(18) << r.task.substr(0, 17) << std::setw(6)
                  << (r.seed ? std::to_string(*r.seed) : "-") << std::right << std::setw(10)
                  << cell(r.trainablePercent(), 3) << std::setw(11)
                  << (f.peakAllocatedBytes ? mb(static_cast<double>(*f.peakAllocatedBytes)) : "-")
                  << std::setw(10) << cell(f.bestValidationMetric, 4) << std::setw(8) << cell(f.testMetric, 4)
                  << std::setw(10) << cell(f.wallSeconds, 1) << "  " << r.backbone << "\n";
    }
    return 0;
}

int runsShow(const std::string& storePath, std::int64_t id, bool asJson)
{
    ResultsStore store;
    openStore(store, storePath.empty() ? ResultsStore::defaultPath() : storePath);
    RunRecord r;
    std::vector<Evaluation> evals;
    std::vector<LogLine> logs;
    std::string error;
    if (!store.getRun(id, &r, &error) || !store.getEvaluations(id, &evals, &error)
        || !store.getLogs(id, 0, &logs, &error))
        throw Error(error);
    auto j = runJson(r);
    j["spec"] = nlohmann::json::parse(r.specJson);
    const auto& f = r.figures;
    auto opt = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    j["memory"] = { { "weight_bytes", opt(f.weightBytes) }, { "gradient_bytes", opt(f.gradientBytes) },
        { "optimizer_bytes", opt(f.optimizerBytes) }, { "peak_allocated_bytes", opt(f.peakAllocatedBytes) },
        { "peak_reserved_bytes", opt(f.peakReservedBytes) },
        { "init_peak_allocated_bytes", opt(f.initPeakAllocatedBytes) },
        { "eval_peak_allocated_bytes", opt(f.evalPeakAllocatedBytes) } };
    j["evaluations"] = nlohmann::json::array();
    for (const auto& e : evals)
        j["evaluations"].push_back({ { "step", e.step }, { "split", e.split }, { "metrics", e.metrics },
            { "main", opt(e.mainMetric) } });
    j["log"] = nlohmann::json::array();
    for (const auto& l : logs)
        j["log"].push_back(l.time + " " + toString(l.level) + " " + l.message);
    if (asJson)
        std::cout << j.dump(2) << "\n";
    else
        std::cout << j.dump(2) << "\n"; // the full record; JSON is also the most readable form here
    return 0;
}

int runsExport(const std::string& storePath, const std::string& csv)
{
    ResultsStore store;
    openStore(store, storePath.empty() ? ResultsStore::defaultPath() : storePath);
    std::string error;
    if (!store.exportRunsCsv(csv, {}, &error))
        throw Error(error);
    std::cout << "wrote " << csv << "\n";
    return 0;
}

int runEval(const std::string& storePath, std::int64_t id)
{
    ResultsStore store;
    const auto path = storePath.empty() ? ResultsStore::defaultPath() : storePath;
    openStore(store, path);
    RunRecord r;
    std::string error;
    if (!store.getRun(id, &r, &error))
        throw Error(error);
    const auto spec
        = RunSpec::fromJson(nlohmann::json::parse(r.specJson), "run " + std::to_string(id) + " spec");
    const auto checkpoint = StoreRecorder::checkpointPath(path, id);
    auto inputs = loadTrainerInputs(spec);
    inputs.backbone->to(c10::Device(spec.device));
    // The stored weights replace the initialisation: init fisher (the run's Fisher pass) is not repeated.
    auto method = createMethod(inputs.backbone, withoutFisherInit(spec.method));
    method->loadTrainable(checkpoint);
    for (const char* split : { "validation", "test" }) {
        if ((std::string(split) == "test" ? inputs.task.test : inputs.task.validation).empty())
            continue;
        const auto e = evaluateSplit(spec, inputs, *method, split);
        std::cout << split << ": " << e.mainName << " " << std::setprecision(4) << e.main;
        for (const auto& [k, v] : e.values)
            if (k != e.mainName)
                std::cout << ", " << k << " " << v;
        std::cout << " (" << e.examples << " examples)\n";
        Evaluation ev;
        ev.runId = id;
        ev.step = r.figures.bestStep.value_or(r.step);
        ev.split = split;
        ev.metrics = e.values;
        ev.mainMetricName = e.mainName;
        ev.mainMetric = e.main;
        if (!store.addEvaluation(ev, nullptr, &error))
            throw Error(error);
    }
    return 0;
}

} // namespace

void registerTrainCommands(CLI::App& app)
{
    {
        auto config = std::make_shared<std::string>();
        auto store = std::make_shared<std::string>();
        auto* cmd
            = app.add_subcommand("train", "Train one run from a run spec and record it in the results store");
        cmd->add_option("--config", *config, "run spec JSON")->required();
        cmd->add_option("--store", *store,
            "results store (default: the spec's, else " + ResultsStore::defaultPath() + ")");
        cmd->callback([config, store] { runGuarded("train", [&] { return runTrain(*config, *store); }); });
    }
    {
        auto config = std::make_shared<std::string>();
        auto store = std::make_shared<std::string>();
        auto* cmd
            = app.add_subcommand("sweep", "Run a grid of specs one after another; finished runs are skipped");
        cmd->add_option("--config", *config, "sweep JSON: base, methods, seeds, grid")->required();
        cmd->add_option("--store", *store, "results store");
        cmd->callback([config, store] { runGuarded("sweep", [&] { return runSweep(*config, *store); }); });
    }
    {
        auto store = std::make_shared<std::string>();
        auto json = std::make_shared<bool>(false);
        auto id = std::make_shared<std::int64_t>(0);
        auto csv = std::make_shared<std::string>();
        auto* runs = app.add_subcommand("runs", "List, show and export the runs of a results store");
        runs->require_subcommand(1);
        runs->add_option("--store", *store, "results store")->capture_default_str();
        auto* list = runs->add_subcommand("list", "One line per run");
        list->add_flag("--json", *json);
        list->callback([store, json] { runGuarded("runs list", [&] { return runsList(*store, *json); }); });
        auto* show = runs->add_subcommand("show", "Everything about one run");
        show->add_option("id", *id, "run id")->required();
        show->add_flag("--json", *json);
        show->callback(
            [store, id, json] { runGuarded("runs show", [&] { return runsShow(*store, *id, *json); }); });
        auto* exp = runs->add_subcommand("export", "Runs and their final figures as CSV");
        exp->add_option("--csv", *csv, "output file")->required();
        exp->callback([store, csv] { runGuarded("runs export", [&] { return runsExport(*store, *csv); }); });
    }
    {
        auto store = std::make_shared<std::string>();
        auto id = std::make_shared<std::int64_t>(0);
        auto* cmd = app.add_subcommand("eval", "Evaluate a stored run's best weights on validation and test");
        cmd->add_option("--run", *id, "run id")->required();
        cmd->add_option("--store", *store, "results store");
        cmd->callback([store, id] { runGuarded("eval", [&] { return runEval(*store, *id); }); });
    }
}

} // namespace ladder::cli
