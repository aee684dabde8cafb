// ladder predict (--run ID | --bundle DIR) --inputs FILE --out FILE.jsonl: a trained run's predictions on
// new inputs (docs/EXPORT.md, "ladder predict"; the work is export/Predict.h's).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "Commands.h"
#include "Interrupt.h"
#include "ProgressLine.h"
#include "export/LadderBundle.h"
#include "export/Predict.h"
#include "export/RunModel.h"
#include "export/TaskFormat.h"
#include "store/ResultsStore.h"
#include "util/Error.h"

namespace ladder::cli {

namespace {

struct PredictFlags {
    std::int64_t runId = 0;
    std::string bundle;
    std::string store;
    std::string backbone;
    PredictOptions options;
    std::string device = "cpu";
    bool quiet = false;
};

int runPredict(const PredictFlags& f)
{
    if (f.runId <= 0 && f.bundle.empty())
        throw UsageError("give --run ID or --bundle DIR");
    if (f.runId > 0 && !f.store.empty() && !f.bundle.empty())
        throw UsageError("--run and --bundle exclude each other");
    if (!f.bundle.empty() && !f.store.empty())
        throw UsageError("--store belongs to --run; a bundle holds its run");
    if (f.runId > 0 && !f.backbone.empty())
        throw UsageError("--backbone belongs to --bundle; a stored run's backbone is its spec's");

    const auto t0 = std::chrono::steady_clock::now();
    LoadedRun run;
    TaskFormat format;
    std::string what;
    if (!f.bundle.empty()) {
        const auto bundle = readLadderBundle(f.bundle);
        throwIfInterrupted();
        run = loadBundleModel(bundle, f.backbone, f.device);
        format = bundle.format;
        what = "bundle " + f.bundle + " (run " + std::to_string(bundle.runId) + ", " + bundle.method + ")";
    } else {
        const auto path = requireExistingStore(f.store);
        ResultsStore store;
        std::string error;
        if (!store.open(path, ResultsStore::OpenMode::ReadOnly, &error))
            throw Error(error);
        RunRecord record;
        if (!store.getRun(f.runId, &record, &error))
            throw Error(error);
        run = loadFinishedRun(store, f.runId, f.device);
        format = taskFormatFor(
            run.spec, record.task, *run.tokenizer, nullptr, run.backbone->shape().encoderBlocks == 0);
        what = "run " + std::to_string(f.runId) + " (" + record.method + ")";
    }
    throwIfInterrupted();

    ProgressLine progress(!f.quiet);
    const auto started = std::chrono::steady_clock::now();
    auto onProgress = [&](std::int64_t done, std::int64_t total) {
        const double seconds
            = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        char line[160];
        const int width = 30;
        const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
        std::snprintf(line, sizeof line, "predict [%s%s] %lld/%lld inputs, %.1f/s",
            std::string(static_cast<std::size_t>(filled), '#').c_str(),
            std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<long long>(done),
            static_cast<long long>(total), seconds > 0 ? static_cast<double>(done) / seconds : 0.0);
        progress.show(line);
        return !interrupted();
    };
    std::int64_t written = 0;
    try {
        written = predictToFile(run, format, f.options, onProgress);
    } catch (...) {
        progress.clear();
        throw;
    }
    progress.clear();
    throwIfInterrupted();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cerr << "predict: " << written << " predictions of " << what << " written to " << f.options.outPath
              << " in " << std::fixed;
    std::cerr.precision(1);
    std::cerr << seconds << " s\n";
    return kExitDone;
}

} // namespace

void registerPredictCommands(CLI::App& app)
{
    auto f = std::make_shared<PredictFlags>();
    auto* cmd = app.add_subcommand("predict",
        "Predict with a trained run (a finished run of a store, or a ladder bundle) on new inputs; one JSON "
        "line "
        "per input: {id, input, prediction, score}");
    auto* run = cmd->add_option("--run", f->runId, "a finished run of the store");
    run->option_text("ID");
    auto* bundle
        = cmd->add_option("--bundle", f->bundle, "a ladder bundle folder (ladder export --format ladder)");
    bundle->option_text("DIR");
    run->excludes(bundle);
    cmd->add_option("--store", f->store,
        "results store of --run (default: " + ResultsStore::defaultPath() + "; never created)");
    cmd->add_option("--backbone", f->backbone,
           "with --bundle: the backbone folder when the recorded one is not here (its files must hash to the "
           "bundle's backbone.sha256)")
        ->option_text("DIR");
    cmd->add_option("--inputs", f->options.inputsPath,
           "inputs: .jsonl (one object per line), .tsv or .csv (a header row); the task's text fields, or "
           "for a "
           "one-field task input/text/--text-column; an optional id")
        ->required()
        ->option_text("FILE");
    cmd->add_option("--text-column", f->options.textColumn,
           "for a task of one text field: the field or column that holds it (default: the task's own field "
           "name, then input, then text)")
        ->option_text("NAME");
    cmd->add_option("--out", f->options.outPath,
           "output JSONL, written as it goes (each batch flushed): the lines before an error are kept")
        ->required()
        ->option_text("FILE");
    cmd->add_option("--batch", f->options.batchSize, "inputs per generation batch (default 32)")
        ->check(CLI::Range(1, 65536))
        ->option_text("B");
    cmd->add_option(
           "--num-beams", f->options.numBeams, "beams (default: the run's evaluation setting; 1: greedy)")
        ->check(CLI::Range(1, 64))
        ->option_text("N");
    cmd->add_option("--device", f->device, "cpu (default), cuda or cuda:N");
    cmd->add_flag("--quiet", f->quiet, "no progress line on stderr");
    cmd->callback([f] {
        installInterruptHandler();
        runGuarded("predict", [&] { return runPredict(*f); });
    });
}

} // namespace ladder::cli
