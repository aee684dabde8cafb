// ladder runs list | show | export: the runs of a results store, read only (a missing store is an error,
// never created); ladder runs import: other stores merged into one (created when missing).
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "JsonOutput.h"
#include "store/ResultsStore.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder::cli {
namespace {

// Text output's missing value: "-".
std::string cell(const std::optional<double>& v, int precision, double scale = 1.0)
{
    if (!v || !std::isfinite(*v))
        return "-";
    std::ostringstream s;
    s << std::fixed << std::setprecision(precision) << *v * scale;
    return s.str();
}

std::string mbCell(const std::optional<std::int64_t>& bytes)
{
    return bytes ? mb(static_cast<double>(*bytes)) + " MB" : "-";
}

// `ladder runs` only reads (docs/STORE.md, "Opening"): read-only, so it lists a store it cannot write (a
// read-only mount, another user's 0444 file in a 0555 folder) and never migrates or marks anything.
void openExisting(ResultsStore& store, const std::string& path)
{
    std::string error;
    if (!store.open(requireExistingStore(path), ResultsStore::OpenMode::ReadOnly, &error))
        throw Error(error);
}

int runsList(const std::string& storePath, bool asJson)
{
    ResultsStore store;
    openExisting(store, storePath);
    std::vector<RunRecord> runs;
    std::string error;
    if (!store.listRuns({}, &runs, &error))
        throw Error(error);
    if (asJson) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& r : runs)
            out.push_back(runJson(r));
        printJson(out);
        return kExitDone;
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
    return kExitDone;
}

void printRunText(const RunRecord& r, const std::vector<Evaluation>& evals, const std::vector<LogLine>& logs)
{
    const auto& f = r.figures;
    auto row = [](const std::string& name, const std::string& value) {
        std::cout << "  " << std::left << std::setw(15) << name << value << "\n";
    };
    auto orDash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
    std::cout << "run " << r.id << ": " << orDash(r.name) << " (" << toString(r.status) << ")\n";
    row("method", r.method + " " + (r.methodOptionsJson.empty() ? std::string("{}") : r.methodOptionsJson));
    row("backbone", orDash(r.backbone));
    row("task", orDash(r.task));
    row("seed", r.seed ? std::to_string(*r.seed) : "-");
    row("device", orDash(r.device));
    row("created", orDash(r.createdAt));
    row("started", orDash(r.startedAt));
    row("finished", orDash(r.finishedAt));
    row("steps", std::to_string(r.step) + " of " + (r.totalSteps > 0 ? std::to_string(r.totalSteps) : "-"));
    if (!r.errorMessage.empty())
        row("message", r.errorMessage);
    row("trainable",
        (f.trainableParams ? std::to_string(*f.trainableParams) : "-") + " of "
            + (f.backboneParams ? std::to_string(*f.backboneParams) : "-") + " backbone parameters ("
            + cell(r.trainablePercent(), 3) + "%)");
    row("peak memory", mbCell(f.peakAllocatedBytes) + " allocated, training steps");
    row("peak reserved", mbCell(f.peakReservedBytes));
    row("init peak", mbCell(f.initPeakAllocatedBytes));
    row("eval peak", mbCell(f.evalPeakAllocatedBytes));
    row("static",
        "weights " + mbCell(f.weightBytes) + ", gradients " + mbCell(f.gradientBytes) + ", optimizer "
            + mbCell(f.optimizerBytes));
    const auto metric = orDash(f.mainMetricName);
    row("validation",
        metric + " " + cell(f.bestValidationMetric, 4) + " (best"
            + (f.bestStep ? ", step " + std::to_string(*f.bestStep) : std::string()) + "), last "
            + cell(f.lastMetric, 4));
    row("test", metric + " " + cell(f.testMetric, 4));
    row("wall time", cell(f.wallSeconds, 1) + " s");
    row("tokens/s", cell(f.tokensPerSecond, 0));

    std::cout << "\nevaluations (" << evals.size() << ")\n";
    if (!evals.empty())
        std::cout << "  " << std::left << std::setw(8) << "step" << std::setw(12) << "split" << std::right
                  << std::setw(9) << "main"
                  << "  metrics\n";
    for (const auto& e : evals) {
        std::cout << "  " << std::left << std::setw(8) << e.step << std::setw(12) << e.split << std::right
                  << std::setw(9) << cell(e.mainMetric, 4) << " ";
        for (const auto& [k, v] : e.metrics)
            std::cout << " " << k << " " << cell(v, 4);
        std::cout << "\n";
    }
    std::cout << "\nlog (" << logs.size() << " lines)\n";
    for (const auto& l : logs)
        std::cout << "  " << l.time << " " << std::left << std::setw(8) << toString(l.level) << l.message
                  << "\n";
    std::cout << "\nspec (ladder train --config accepts it)\n";
    const auto spec = tryParseJson(r.specJson);
    std::cout << (spec ? spec->dump(2, ' ', false, nlohmann::json::error_handler_t::replace) : r.specJson)
              << "\n";
}

int runsShow(const std::string& storePath, std::int64_t id, bool asJson)
{
    ResultsStore store;
    openExisting(store, storePath);
    RunRecord r;
    std::vector<Evaluation> evals;
    std::vector<LogLine> logs;
    std::string error;
    if (!store.getRun(id, &r, &error) || !store.getEvaluations(id, &evals, &error)
        || !store.getLogs(id, 0, &logs, &error))
        throw Error(error);
    if (!asJson) {
        printRunText(r, evals, logs);
        return kExitDone;
    }
    auto j = runJson(r);
    j["spec"] = tryParseJson(r.specJson).value_or(nlohmann::json(nullptr));
    const auto& f = r.figures;
    j["memory"] = { { "weight_bytes", jsonOptional(f.weightBytes) },
        { "gradient_bytes", jsonOptional(f.gradientBytes) },
        { "optimizer_bytes", jsonOptional(f.optimizerBytes) },
        { "peak_allocated_bytes", jsonOptional(f.peakAllocatedBytes) },
        { "peak_reserved_bytes", jsonOptional(f.peakReservedBytes) },
        { "init_peak_allocated_bytes", jsonOptional(f.initPeakAllocatedBytes) },
        { "eval_peak_allocated_bytes", jsonOptional(f.evalPeakAllocatedBytes) } };
    j["evaluations"] = nlohmann::json::array();
    for (const auto& e : evals) {
        nlohmann::json metrics = nlohmann::json::object();
        for (const auto& [k, v] : e.metrics)
            metrics[k] = jsonNumber(v);
        j["evaluations"].push_back({ { "step", e.step }, { "epoch", jsonOptional(e.epoch) },
            { "split", e.split }, { "metrics", metrics }, { "main_metric", jsonText(e.mainMetricName) },
            { "main", jsonOptional(e.mainMetric) } });
    }
    j["log"] = nlohmann::json::array();
    for (const auto& l : logs)
        j["log"].push_back(l.time + " " + toString(l.level) + " " + l.message);
    printJson(j);
    return kExitDone;
}

int runsExport(const std::string& storePath, const std::string& csv)
{
    ResultsStore store;
    openExisting(store, storePath);
    std::string error;
    if (!store.exportRunsCsv(csv, {}, &error))
        throw Error(error);
    std::cout << "wrote " << csv << "\n";
    return kExitDone;
}

// "imported 3 runs from FILE (1 already present)"; a store skipped: "imported 0 runs from FILE (4 skipped:
// half-finished: run 2 is still running ...)".
std::string importLine(const StoreImport& r)
{
    std::string line = "imported " + std::to_string(r.imported) + (r.imported == 1 ? " run" : " runs")
        + " from " + r.source + " (";
    if (r.skipReason.empty())
        return line + std::to_string(r.alreadyPresent) + " already present)";
    if (r.runsInSource > 0)
        line += std::to_string(r.runsInSource) + " ";
    return line + "skipped: " + r.skipReason + ")";
}

// ladder runs import STORE... [--store MAIN]: each store in a transaction of its own (ResultsStore::
// importStore); a store that cannot be imported is reported and skipped, the others go on. Exit 1 when
// any was skipped.
int runsImport(const std::string& mainPath, const std::vector<std::string>& sources, bool asJson)
{
    const std::string path = mainPath.empty() ? ResultsStore::defaultPath() : mainPath;
    ResultsStore store;
    std::string error;
    if (!store.open(path, &error)) // the main store is created when missing: a fresh one to merge into
        throw Error(error);
    int imported = 0, present = 0, skipped = 0;
    nlohmann::json out = nlohmann::json::array();
    for (const auto& source : sources) {
        StoreImport result;
        store.importStore(source, &result, &error);
        imported += result.imported;
        present += result.alreadyPresent;
        skipped += result.skipReason.empty() ? 0 : 1;
        if (asJson)
            out.push_back({ { "file", source }, { "runs", result.runsInSource },
                { "imported", result.imported }, { "already_present", result.alreadyPresent },
                { "run_ids", result.importedIds }, { "skipped", jsonText(result.skipReason) } });
        else
            (result.skipReason.empty() ? std::cout : std::cerr) << importLine(result) << std::endl;
    }
    if (asJson)
        printJson({ { "store", path }, { "stores", out } });
    else
        std::cout << "runs import: " << imported << (imported == 1 ? " run" : " runs") << " imported from "
                  << sources.size() - static_cast<std::size_t>(skipped) << " of " << sources.size()
                  << (sources.size() == 1 ? " store" : " stores") << " into " << path << " (" << present
                  << " already present, " << skipped << (skipped == 1 ? " store" : " stores")
                  << " skipped)\n";
    return skipped == 0 ? kExitDone : kExitError;
}

// --store belongs to the group and to each subcommand, so that `runs --store X list` and
// `runs list --store X` both work; given twice, the two must agree.
struct StoreFlags {
    std::string group;
    std::string own;
    std::string path() const
    {
        if (!group.empty() && !own.empty() && group != own)
            throw UsageError("--store given twice with different files (" + group + ", " + own + ")");
        return own.empty() ? group : own;
    }
};

} // namespace

void registerRunsCommands(CLI::App& app)
{
    auto store = std::make_shared<StoreFlags>();
    auto json = std::make_shared<bool>(false);
    auto id = std::make_shared<std::int64_t>(0);
    auto csv = std::make_shared<std::string>();
    const std::string storeHelp
        = "results store (default: " + ResultsStore::defaultPath() + "; never created)";
    auto* runs = app.add_subcommand("runs", "List, show, export and import the runs of results stores");
    runs->require_subcommand(1);
    runs->add_option("--store", store->group, storeHelp);
    auto* list = runs->add_subcommand("list", "One line per run");
    list->add_option("--store", store->own, storeHelp);
    list->add_flag("--json", *json, "machine-readable output: an array of runs");
    list->callback(
        [store, json] { runGuarded("runs list", [&] { return runsList(store->path(), *json); }); });
    auto* show = runs->add_subcommand("show", "Everything about one run: figures, evaluations, log, spec");
    show->add_option("id", *id, "run id")->required();
    show->add_option("--store", store->own, storeHelp);
    show->add_flag("--json", *json, "machine-readable output");
    show->callback(
        [store, id, json] { runGuarded("runs show", [&] { return runsShow(store->path(), *id, *json); }); });
    auto* exp = runs->add_subcommand("export", "Runs and their final figures as CSV");
    exp->add_option("--csv", *csv, "output file")->required();
    exp->add_option("--store", store->own, storeHelp);
    exp->callback(
        [store, csv] { runGuarded("runs export", [&] { return runsExport(store->path(), *csv); }); });
    auto sources = std::make_shared<std::vector<std::string>>();
    auto* imp = runs->add_subcommand("import",
        "Merge other results stores into this one: runs, metrics, evaluations, logs and checkpoints; runs "
        "already present (same spec and seed) are skipped; a half-finished or corrupt store is reported and "
        "skipped (exit 1)");
    imp->add_option(
           "stores", *sources, "store files to import, e.g. DIR/run-*.sqlite of `sweep --emit slurm`")
        ->required();
    imp->add_option("--store", store->own,
        "the results store to import into (default: " + ResultsStore::defaultPath()
            + "; created when missing)");
    imp->add_flag("--json", *json,
        "machine-readable output: {store, stores: [{file, runs, imported, already_present, run_ids, "
        "skipped}]}");
    imp->callback([store, sources, json] {
        runGuarded("runs import", [&] { return runsImport(store->path(), *sources, *json); });
    });
}

} // namespace ladder::cli
