#include "export/LadderBundle.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <unistd.h>

#include "data/DemoTasks.h"
#include "export/ExportFolder.h"
#include "ladder/Version.h"
#include "model/BackboneLoad.h"
#include "model/Tokenizer.h"
#include "model/TokenizerLoad.h"
#include "store/FileHash.h"
#include "store/ResultsStore.h"
#include "train/StoreRecorder.h"
#include "train/TrainerInputs.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kWeights = "weights.safetensors";
constexpr const char* kRunSpec = "run.json";
constexpr const char* kTask = "task.json";
constexpr const char* kFigures = "figures.json";
constexpr const char* kTokenizer = "spiece.model";
constexpr const char* kBackboneConfig = "backbone/config.json";
constexpr const char* kReadme = "README.md";
constexpr const char* kManifest = "bundle.json";

// The files every bundle of this format holds (the manifest lists them), besides the tokenizer's.
const std::vector<std::string>& requiredFiles()
{
    static const std::vector<std::string> files { kReadme, kRunSpec, kWeights, kTask, kFigures,
        kBackboneConfig };
    return files;
}

// The backbone's tokenizer files a bundle copies (model/TokenizerLoad.h reads them back): T5's spiece.model
// alone (T5 bundles as before), else a decoder's tokenizer.model and/or tokenizer.json with
// tokenizer_config.json (its special tokens, bos/eos flags).
std::vector<std::string> tokenizerFilesOf(const fs::path& folder)
{
    std::error_code ec;
    if (fs::is_regular_file(folder / kTokenizer, ec))
        return { kTokenizer };
    std::vector<std::string> files;
    for (const char* name : { "tokenizer.model", "tokenizer.json", "tokenizer_config.json" })
        if (fs::is_regular_file(folder / name, ec))
            files.emplace_back(name);
    return files;
}

bool isTokenizerFile(const std::string& path)
{
    return path == kTokenizer || path == "tokenizer.model" || path == "tokenizer.json";
}

// ---- Figures ------------------------------------------------------------------------------------------

template <typename T> void put(json& j, const char* key, const std::optional<T>& v)
{
    if (v && (!std::is_floating_point<T>::value || std::isfinite(static_cast<double>(*v))))
        j[key] = *v;
}

template <typename T>
void take(const json& j, const char* key, std::optional<T>* v, const std::string& source)
{
    if (!j.contains(key) || j.at(key).is_null())
        return;
    const auto& value = j.at(key);
    if (std::is_floating_point<T>::value ? !value.is_number() : !value.is_number_integer())
        throw Error(source + ": field " + key + ": expected "
            + (std::is_floating_point<T>::value ? "a number" : "an integer") + ", got " + brief(value));
    *v = value.get<T>();
}

json figuresJson(const FinalFigures& f)
{
    json j = json::object();
    put(j, "best_validation_metric", f.bestValidationMetric);
    put(j, "best_step", f.bestStep);
    put(j, "test_metric", f.testMetric);
    if (!f.mainMetricName.empty())
        j["main_metric_name"] = f.mainMetricName;
    put(j, "last_metric", f.lastMetric);
    put(j, "peak_allocated_bytes", f.peakAllocatedBytes);
    put(j, "peak_reserved_bytes", f.peakReservedBytes);
    put(j, "init_peak_allocated_bytes", f.initPeakAllocatedBytes);
    put(j, "eval_peak_allocated_bytes", f.evalPeakAllocatedBytes);
    put(j, "weight_bytes", f.weightBytes);
    put(j, "gradient_bytes", f.gradientBytes);
    put(j, "optimizer_bytes", f.optimizerBytes);
    put(j, "trainable_params", f.trainableParams);
    put(j, "total_params", f.totalParams);
    put(j, "backbone_params", f.backboneParams);
    put(j, "wall_seconds", f.wallSeconds);
    put(j, "tokens_per_second", f.tokensPerSecond);
    return j;
}

FinalFigures figuresFrom(const json& j, const std::string& source)
{
    FinalFigures f;
    take(j, "best_validation_metric", &f.bestValidationMetric, source);
    take(j, "best_step", &f.bestStep, source);
    take(j, "test_metric", &f.testMetric, source);
    if (j.contains("main_metric_name") && j.at("main_metric_name").is_string())
        f.mainMetricName = j.at("main_metric_name").get<std::string>();
    take(j, "last_metric", &f.lastMetric, source);
    take(j, "peak_allocated_bytes", &f.peakAllocatedBytes, source);
    take(j, "peak_reserved_bytes", &f.peakReservedBytes, source);
    take(j, "init_peak_allocated_bytes", &f.initPeakAllocatedBytes, source);
    take(j, "eval_peak_allocated_bytes", &f.evalPeakAllocatedBytes, source);
    take(j, "weight_bytes", &f.weightBytes, source);
    take(j, "gradient_bytes", &f.gradientBytes, source);
    take(j, "optimizer_bytes", &f.optimizerBytes, source);
    take(j, "trainable_params", &f.trainableParams, source);
    take(j, "total_params", &f.totalParams, source);
    take(j, "backbone_params", &f.backboneParams, source);
    take(j, "wall_seconds", &f.wallSeconds, source);
    take(j, "tokens_per_second", &f.tokensPerSecond, source);
    return f;
}

json evaluationsJson(const std::vector<Evaluation>& evaluations)
{
    json list = json::array();
    for (const auto& e : evaluations) {
        json metrics = json::object();
        for (const auto& [k, v] : e.metrics)
            if (std::isfinite(v))
                metrics[k] = v;
        json item { { "step", e.step }, { "split", e.split }, { "metrics", metrics },
            { "main_metric_name", e.mainMetricName }, { "time", e.time } };
        put(item, "epoch", e.epoch);
        put(item, "main_metric", e.mainMetric);
        list.push_back(item);
    }
    return list;
}

std::vector<Evaluation> evaluationsFrom(const json& list, const std::string& source)
{
    std::vector<Evaluation> out;
    if (!list.is_array())
        throw Error(source + ": field evaluations: expected an array, got " + brief(list));
    for (const auto& item : list) {
        const auto where = source + ": evaluations[" + std::to_string(out.size()) + "]";
        if (!item.is_object() || !item.contains("step") || !item["step"].is_number_integer()
            || !item.contains("split") || !item["split"].is_string() || !item.contains("metrics")
            || !item["metrics"].is_object())
            throw Error(where + ": expected {step, split, metrics, ...}, got " + brief(item));
        Evaluation e;
        e.step = item["step"].get<std::int64_t>();
        e.split = item["split"].get<std::string>();
        for (const auto& [k, v] : item["metrics"].items()) {
            if (!v.is_number())
                throw Error(where + ": metrics." + oneLine(k, 60) + ": expected a number, got " + brief(v));
            e.metrics[k] = v.get<double>();
        }
        e.mainMetricName = item.value("main_metric_name", std::string());
        take(item, "epoch", &e.epoch, where);
        take(item, "main_metric", &e.mainMetric, where);
        e.time = item.value("time", std::string());
        out.push_back(std::move(e));
    }
    return out;
}

// ---- README ---------------------------------------------------------------------------------------------

std::string number(double v)
{
    char text[32];
    std::snprintf(text, sizeof text, "%.4g", v);
    return text;
}

std::string readmeText(const RunRecord& run, const RunSpec& spec, const TaskFormat& format,
    const std::string& backboneDir, const BackboneIdentity& identity, const std::string& taskNote)
{
    std::ostringstream r;
    r << "# LadderBench bundle: run " << run.id << ", " << run.name << "\n\n"
      << "A fine-tuned model as a folder of its own, written by LadderBench " << kVersion
      << " (`ladder export --format ladder`): the trainable weights of a " << run.method
      << " run on the task " << format.name << ", with everything needed to use them except the backbone's "
      << "weights, which are named and hashed here.\n\n"
      << "## Use it\n\n"
      << "```\nladder predict --bundle THIS_FOLDER --inputs inputs.jsonl --out predictions.jsonl\n```\n\n"
      << "Each line of `inputs.jsonl` is a JSON object with the text field";
    if (format.fields.size() == 1)
        r << " `" << format.fields[0].first << "` (or `input`, `text`; `--text-column NAME` names another)";
    else
        r << "s " << format.fieldList() << " (one key each)";
    r << ", and optionally an `id`; TSV and CSV files with a header row work too. Each output line is "
      << "`{\"id\", \"input\", \"prediction\", \"score\"}`. The model's source is built as the run's task "
      << "built it: `" << format.formatSource(std::vector<std::string>(format.fields.size(), "…"))
      << "`.\n\n";
    if (!format.labels.empty()) {
        r << "The model generates one of these targets:\n\n| target | label |\n|---|---|\n";
        for (std::size_t i = 0; i < format.labels.size(); ++i)
            r << "| `" << format.labels[i] << "` | "
              << (i < format.labelNames.size() ? format.labelNames[i] : "") << " |\n";
        r << "\n";
    }
    if (!taskNote.empty())
        r << "Note: " << taskNote << ".\n\n";
    r << "In the workbench, File > Import Bundle... adds this run to the open results store.\n\n"
      << "## The backbone\n\n"
      << "The run trained on the backbone folder `" << backboneDir << "`"
      << (spec.backbone == "demo" ? " (LadderBench's built-in demo backbone, built by `ladder demo`)" : "")
      << ". `ladder predict` loads it from there; on another machine give it with `--backbone DIR`. "
      << "Its files (" <<
        [&] {
            std::string list;
            for (const auto& f : identity.files)
                list += (list.empty() ? "" : ", ") + f;
            return list;
        }()
      << ") must hash to the identity recorded in bundle.json, `backbone.sha256`:\n\n    " << identity.sha256
      << "\n\n(SHA-256 over the lines \"NAME SHA256\" of those files in name order). A backbone folder needs "
      << "its tokenizer files too.\n\n"
      << "## The run\n\n"
      << "- method: " << run.method << ", " << run.methodOptionsJson << "\n"
      << "- task: " << run.task << ", seed " << (run.seed ? std::to_string(*run.seed) : std::string("-"))
      << "\n";
    const auto& f = run.figures;
    if (f.bestValidationMetric)
        r << "- best validation " << f.mainMetricName << ": " << number(*f.bestValidationMetric) << " (step "
          << (f.bestStep ? std::to_string(*f.bestStep) : std::string("?")) << ")\n";
    if (f.testMetric)
        r << "- test " << f.mainMetricName << ": " << number(*f.testMetric) << "\n";
    if (f.peakAllocatedBytes)
        r << "- peak training memory: " << number(static_cast<double>(*f.peakAllocatedBytes) / 1e6)
          << " MB\n";
    if (f.trainableParams)
        r << "- trainable parameters: " << *f.trainableParams << "\n";
    r << "\n## Files\n\n"
      << "- `bundle.json`: the manifest (format, versions, the run, the backbone's identity, every file's "
         "size and SHA-256, checked when the bundle is read)\n"
      << "- `run.json`: the run spec (`ladder train --config run.json` trains it again)\n"
      << "- `weights.safetensors`: the trainable weights of the best checkpoint\n"
      << "- `task.json`: how inputs become the model's source, the targets, generation settings\n"
      << "- `figures.json`: the final figures and evaluations\n"
      << "- `backbone/config.json` and the tokenizer files (`spiece.model`, or `tokenizer.model` / "
         "`tokenizer.json` with `tokenizer_config.json`): the backbone's config and tokenizer\n";
    return r.str();
}

std::string requireString(const json& j, const char* key, const std::string& source)
{
    if (!j.is_object() || !j.contains(key) || !j.at(key).is_string())
        throw Error(source + ": field " + key + ": expected a string"
            + (j.is_object() && j.contains(key) ? ", got " + brief(j.at(key)) : " (missing)"));
    return j.at(key).get<std::string>();
}

bool isHex64(const std::string& s)
{
    return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// A manifest path that stays inside the bundle: relative, no "..", no empty or "." parts.
bool isSafeRelative(const std::string& path)
{
    if (path.empty() || path.front() == '/' || path.find('\\') != std::string::npos)
        return false;
    std::size_t start = 0;
    while (start <= path.size()) {
        const auto end = std::min(path.find('/', start), path.size());
        const auto part = path.substr(start, end - start);
        if (part.empty() || part == "." || part == "..")
            return false;
        start = end + 1;
    }
    return true;
}

} // namespace

// ---- Writing ----------------------------------------------------------------------------------------------

void writeLadderBundle(ResultsStore& store, std::int64_t runId, const std::string& outDir)
{
    RunRecord run;
    std::string error;
    if (!store.getRun(runId, &run, &error))
        throw Error(error);
    const auto name = "run " + std::to_string(runId);
    if (run.status != RunState::Finished)
        throw Error(name + " is " + toString(run.status) + ", not finished: only a finished run is bundled");
    std::string checkpoint;
    if (!store.verifyCheckpoint(runId, &checkpoint, &error))
        throw Error(error);
    const auto spec = runSpecOf(store, runId);
    const auto backboneDir = fs::absolute(backboneFolderOf(spec)).lexically_normal().string();
    const auto tokenizerFiles = tokenizerFilesOf(backboneDir);
    const auto tokenizer = loadTokenizer(backboneDir); // names the folder and the files it looked for
    const auto identity = backboneIdentity(backboneDir);
    bool causal = false; // a decoder-only backbone's sources were prompts (data/PromptTemplate.h)
    try {
        causal = readModelType(backboneDir) != "t5";
    } catch (const Error&) {
    }
    std::string taskNote;
    const auto format = taskFormatFor(spec, run.task, *tokenizer, &taskNote, causal);
    std::vector<Evaluation> evaluations;
    if (!store.getEvaluations(runId, &evaluations, &error))
        throw Error(error);

    std::error_code ec;
    const fs::path out = fs::path(outDir).lexically_normal();
    if (fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
        throw Error(
            outDir + ": already exists and is not an empty folder; choose a new folder for the bundle");
    if (!out.parent_path().empty())
        demofs::makeDirectories(out.parent_path().string());
    const fs::path tmp = out.string() + ".partial-" + std::to_string(::getpid());
    if (fs::exists(tmp, ec))
        throw Error(tmp.string() + ": a bundle of this process is being written there");
    demofs::makeDirectories((tmp / "backbone").string());
    try {
        // The weights: copied, then the copy checked against the store's record.
        fs::copy_file(checkpoint, tmp / kWeights, ec);
        if (ec)
            throw Error("copying " + checkpoint + " to " + (tmp / kWeights).string() + ": " + ec.message());
        if (hashFile((tmp / kWeights).string()).sha256 != run.checkpointSha256)
            throw Error((tmp / kWeights).string() + ": the copy's SHA-256 differs from " + checkpoint
                + "'s recorded " + run.checkpointSha256 + " (a read or write error)");
        for (const auto& file : tokenizerFiles) {
            fs::copy_file(fs::path(backboneDir) / file, tmp / file, ec);
            if (ec)
                throw Error("copying the backbone's " + file + " from " + backboneDir + ": " + ec.message());
        }
        fs::copy_file(fs::path(backboneDir) / "config.json", tmp / kBackboneConfig, ec);
        if (ec)
            throw Error("copying the backbone's config.json from " + backboneDir + ": " + ec.message());
        // Copies keep their source's mode: a read-only backbone's files would be read-only here.
        std::vector<std::string> copied { kBackboneConfig, kWeights };
        copied.insert(copied.end(), tokenizerFiles.begin(), tokenizerFiles.end());
        for (const auto& file : copied)
            fs::permissions(
                tmp / file, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
        writeJsonFile((tmp / kRunSpec).string(), spec.toJson());
        writeJsonFile((tmp / kTask).string(), format.toJson());
        json figures = figuresJson(run.figures);
        figures["evaluations"] = evaluationsJson(evaluations);
        writeJsonFile((tmp / kFigures).string(), figures);
        writeTextFile(
            (tmp / kReadme).string(), readmeText(run, spec, format, backboneDir, identity, taskNote));

        json files = json::array();
        auto listed = requiredFiles();
        // T5: spiece.model where it always was in the list (T5 bundles stay byte-identical).
        listed.insert(listed.begin() + 5, tokenizerFiles.begin(), tokenizerFiles.end());
        for (const auto& file : listed) {
            const auto digest = hashFile((tmp / file).string());
            files.push_back({ { "path", file }, { "bytes", digest.bytes }, { "sha256", digest.sha256 } });
        }
        json manifest { { "format", kLadderBundleFormat }, { "format_version", kLadderBundleFormatVersion },
            { "ladderbench_version", kVersion }, { "created_at", utcNowIso8601() },
            { "run",
                { { "id", run.id }, { "name", run.name }, { "method", run.method }, { "task", run.task },
                    { "seed", run.seed ? json(*run.seed) : json(nullptr) }, { "store", store.path() },
                    { "finished_at", run.finishedAt }, { "weights_sha256", run.checkpointSha256 } } },
            { "backbone",
                { { "spec", spec.backbone }, { "path", backboneDir }, { "sha256", identity.sha256 },
                    { "files", identity.files }, { "bytes", identity.bytes } } },
            { "files", files } };
        if (!taskNote.empty())
            manifest["notes"] = json::array({ taskNote });
        writeJsonFile((tmp / kManifest).string(), manifest);
        if (fs::exists(out, ec))
            fs::remove(out, ec); // an empty folder only (checked above)
        fs::rename(tmp, out, ec);
        if (ec)
            throw Error("moving " + tmp.string() + " to " + out.string() + ": " + ec.message());
    } catch (...) {
        demofs::removeTree(tmp.string()); // this function's own folder
        throw;
    }
}

// ---- Reading ----------------------------------------------------------------------------------------------

LadderBundle readLadderBundle(const std::string& dir)
{
    LadderBundle b;
    b.dir = dir;
    const fs::path root(dir);
    std::error_code ec;
    if (!fs::is_directory(root, ec))
        throw Error(dir + ": not a folder (expected a ladder bundle: a folder with bundle.json)");
    const auto manifestPath = (root / kManifest).string();
    if (!fs::exists(manifestPath, ec))
        throw Error(manifestPath + ": missing (not a ladder bundle, or an incomplete copy of one)");
    b.manifest = readJsonFile(manifestPath, "a ladder bundle's manifest");
    const auto& m = b.manifest;
    if (!m.is_object())
        throw Error(manifestPath + ": expected a JSON object");
    const auto format = requireString(m, "format", manifestPath);
    if (format != kLadderBundleFormat)
        throw Error(manifestPath + ": field format: expected \"" + kLadderBundleFormat + "\", got "
            + brief(m.at("format")));
    if (!m.contains("format_version") || !m.at("format_version").is_number_integer()
        || m.at("format_version").get<std::int64_t>() < 1)
        throw Error(manifestPath + ": field format_version: expected an integer >= 1"
            + (m.contains("format_version") ? ", got " + brief(m.at("format_version")) : " (missing)"));
    if (m.at("format_version").get<std::int64_t>() > kLadderBundleFormatVersion)
        throw Error(manifestPath + ": field format_version: " + m.at("format_version").dump()
            + " is newer than this LadderBench reads (" + std::to_string(kLadderBundleFormatVersion)
            + "); written by LadderBench " + m.value("ladderbench_version", std::string("?")));
    b.formatVersion = m.at("format_version").get<int>();
    b.ladderbenchVersion = requireString(m, "ladderbench_version", manifestPath);

    // Every listed file: present, its size and SHA-256 the recorded ones.
    if (!m.contains("files") || !m.at("files").is_array())
        throw Error(manifestPath + ": field files: expected an array of {path, bytes, sha256}");
    for (const auto& entry : m.at("files")) {
        const auto where = manifestPath + ": files[" + std::to_string(b.files.size()) + "]";
        BundleFile f;
        f.path = requireString(entry, "path", where);
        f.sha256 = requireString(entry, "sha256", where);
        if (!entry.contains("bytes") || !entry.at("bytes").is_number_integer()
            || entry.at("bytes").get<std::int64_t>() < 0)
            throw Error(where + ": field bytes: expected an integer >= 0");
        f.bytes = entry.at("bytes").get<std::int64_t>();
        if (!isSafeRelative(f.path))
            throw Error(where + ": field path: expected a relative path inside the bundle, got "
                + brief(entry.at("path")));
        if (!isHex64(f.sha256))
            throw Error(where + ": field sha256: expected 64 lower-case hex digits, got "
                + brief(entry.at("sha256")));
        const auto file = (root / f.path).string();
        if (!fs::is_regular_file(file, ec))
            throw Error(file + ": missing (bundle.json lists it, " + std::to_string(f.bytes) + " bytes)");
        const auto digest = hashFile(file);
        if (digest.bytes != f.bytes)
            throw Error(file + ": " + std::to_string(digest.bytes) + " bytes, bundle.json records "
                + std::to_string(f.bytes) + " (the file was changed or cut short)");
        if (digest.sha256 != f.sha256)
            throw Error(file + ": its SHA-256 is " + digest.sha256 + ", bundle.json records " + f.sha256
                + " (the file was changed or damaged)");
        b.files.push_back(f);
    }
    for (const auto& required : requiredFiles()) {
        bool listed = false;
        for (const auto& f : b.files)
            listed = listed || f.path == required;
        if (!listed)
            throw Error(manifestPath + ": field files: does not list " + required + " (every bundle has it)");
    }
    std::string tokenizerFile;
    for (const auto& f : b.files)
        if (tokenizerFile.empty() && isTokenizerFile(f.path))
            tokenizerFile = f.path;
    if (tokenizerFile.empty())
        throw Error(manifestPath
            + ": field files: lists no tokenizer (spiece.model, tokenizer.model or tokenizer.json)");

    const auto runSource = manifestPath + ": field run";
    if (!m.contains("run") || !m.at("run").is_object())
        throw Error(runSource + ": expected an object");
    const auto& run = m.at("run");
    if (!run.contains("id") || !run.at("id").is_number_integer())
        throw Error(runSource + ".id: expected an integer");
    b.runId = run.at("id").get<std::int64_t>();
    b.runName = requireString(run, "name", runSource);
    b.method = requireString(run, "method", runSource);
    b.task = requireString(run, "task", runSource);
    b.sourceStore = run.value("store", std::string());
    b.weightsSha256 = requireString(run, "weights_sha256", runSource);

    const auto backboneSource = manifestPath + ": field backbone";
    if (!m.contains("backbone") || !m.at("backbone").is_object())
        throw Error(backboneSource + ": expected an object");
    const auto& backbone = m.at("backbone");
    b.backbonePath = requireString(backbone, "path", backboneSource);
    b.backboneSha256 = requireString(backbone, "sha256", backboneSource);
    if (!isHex64(b.backboneSha256))
        throw Error(backboneSource + ".sha256: expected 64 lower-case hex digits, got "
            + brief(backbone.at("sha256")));
    if (backbone.contains("files") && backbone.at("files").is_array())
        for (const auto& f : backbone.at("files"))
            if (f.is_string())
                b.backboneFiles.push_back(f.get<std::string>());

    const auto specPath = (root / kRunSpec).string();
    b.spec = RunSpec::fromJson(readJsonFile(specPath, "a run spec"), specPath);
    if (b.spec.method.method != b.method)
        throw Error(specPath + ": field method.method: \"" + b.spec.method.method
            + "\", bundle.json's run says \"" + b.method + "\"");
    const auto taskPath = (root / kTask).string();
    b.format = TaskFormat::fromJson(readJsonFile(taskPath, "a task format"), taskPath);
    const auto figuresPath = (root / kFigures).string();
    b.figures = readJsonFile(figuresPath, "the run's final figures");
    if (!b.figures.is_object())
        throw Error(figuresPath + ": expected a JSON object");
    figuresFrom(b.figures, figuresPath); // checks the fields' types
    if (b.figures.contains("evaluations"))
        evaluationsFrom(b.figures.at("evaluations"), figuresPath);
    b.weightsPath = (root / kWeights).string();
    b.tokenizerPath = (root / tokenizerFile).string();
    for (const auto& f : b.files)
        if (f.path == kWeights && f.sha256 != b.weightsSha256)
            throw Error(manifestPath + ": field run.weights_sha256: " + b.weightsSha256 + ", but files lists "
                + kWeights + " with " + f.sha256);
    return b;
}

LoadedRun loadBundleModel(
    const LadderBundle& bundle, const std::string& backboneDir, const std::string& device)
{
    RunSpec spec = bundle.spec;
    std::error_code ec;
    if (backboneDir.empty()) {
        if (!fs::is_directory(bundle.backbonePath, ec))
            throw Error("the backbone folder " + bundle.backbonePath
                + " (bundle.json: backbone.path) is not here; "
                  "give the folder of that backbone with --backbone DIR (its files must hash to "
                + bundle.backboneSha256 + ")");
        spec.backbone = bundle.backbonePath;
    } else {
        if (!fs::is_directory(backboneDir, ec))
            throw Error("--backbone " + backboneDir + ": not a folder");
        spec.backbone = backboneDir;
    }
    auto loaded = loadTrainedModel(spec, bundle.weightsPath, device, bundle.backboneSha256);
    // The bundle's own tokenizer: the one the run trained with (the backbone's, by the hash above).
    const auto root = fs::path(bundle.tokenizerPath).parent_path();
    loaded.tokenizer = loadTokenizer(root.string(), modelConfigIds((root / "backbone").string()));
    loaded.spec = bundle.spec;
    return loaded;
}

// ---- Importing ----------------------------------------------------------------------------------------

std::int64_t importLadderBundle(ResultsStore& store, const std::string& dir, bool* alreadyPresent)
{
    const auto bundle = readLadderBundle(dir);
    const auto figuresPath = (fs::path(dir) / kFigures).string();
    const auto figures = figuresFrom(bundle.figures, figuresPath);
    const auto evaluations = bundle.figures.contains("evaluations")
        ? evaluationsFrom(bundle.figures.at("evaluations"), figuresPath)
        : std::vector<Evaluation> {};
    NewRun run = newRunFor(bundle.spec, RunState::Running);
    run.name = bundle.runName;
    run.task = bundle.task;

    std::string error;
    RunFilter finished;
    finished.statuses = { RunState::Finished };
    std::vector<RunRecord> runs;
    if (!store.listRuns(finished, &runs, &error))
        throw Error(error);
    for (const auto& r : runs)
        if (r.specHash == run.specHash && r.checkpointSha256 == bundle.weightsSha256) {
            if (alreadyPresent)
                *alreadyPresent = true;
            return r.id;
        }
    if (alreadyPresent)
        *alreadyPresent = false;

    std::int64_t id = 0;
    if (!store.createRun(run, &id, &error))
        throw Error(error);
    try {
        const fs::path target = store.checkpointPath(id);
        demofs::makeDirectories(target.parent_path().string());
        std::error_code ec;
        fs::copy_file(bundle.weightsPath, target, fs::copy_options::overwrite_existing, ec);
        if (ec)
            throw Error("copying " + bundle.weightsPath + " to " + target.string() + ": " + ec.message());
        if (!store.recordCheckpoint(id, &error))
            throw Error(error);
        RunRecord recorded;
        if (!store.getRun(id, &recorded, &error))
            throw Error(error);
        if (recorded.checkpointSha256 != bundle.weightsSha256)
            throw Error(target.string() + ": the copy's SHA-256 is " + recorded.checkpointSha256
                + ", the bundle's weights have " + bundle.weightsSha256);
        for (auto e : evaluations) {
            e.runId = id;
            if (!store.addEvaluation(e, nullptr, &error))
                throw Error(error);
        }
        const auto log = "imported from the ladder bundle " + fs::absolute(dir).lexically_normal().string()
            + " (run " + std::to_string(bundle.runId) + " of " + bundle.sourceStore
            + ", written by LadderBench " + bundle.ladderbenchVersion + ")";
        if (!store.addLog(id, LogLevel::Info, log, &error))
            throw Error(error);
        if (figures.bestStep && !store.setProgress(id, *figures.bestStep, *figures.bestStep, &error))
            throw Error(error);
        if (!store.finishRun(id, RunState::Finished, figures, {}, &error))
            throw Error(error);
    } catch (const std::exception& e) {
        std::string ignored;
        store.setStatus(id, RunState::Failed, std::string("import failed: ") + e.what(), &ignored);
        store.deleteRun(id, &ignored);
        throw;
    }
    return id;
}

} // namespace ladder
