#include "export/RunModel.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "model/T5Tokenizer.h"
#include "store/FileHash.h"
#include "store/ResultsStore.h"
#include "train/TrainerInputs.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {

// The weight files of a HF folder, in the order loadT5 looks for them (model/T5Checkpoint.cpp).
std::vector<std::string> weightFiles(const fs::path& dir)
{
    if (fs::exists(dir / "model.safetensors"))
        return { "model.safetensors" };
    if (fs::exists(dir / "model.safetensors.index.json")) {
        const auto index = readJsonFile(
            (dir / "model.safetensors.index.json").string(), "a safetensors index with a weight_map");
        if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
            throw Error((dir / "model.safetensors.index.json").string() + ": no weight_map object");
        std::set<std::string> shards;
        for (const auto& [_, file] : index["weight_map"].items()) {
            if (!file.is_string())
                throw Error((dir / "model.safetensors.index.json").string()
                    + ": weight_map values must be file names, got " + brief(file));
            shards.insert(file.get<std::string>());
        }
        std::vector<std::string> out { "model.safetensors.index.json" };
        out.insert(out.end(), shards.begin(), shards.end());
        return out;
    }
    if (fs::exists(dir / "pytorch_model.bin"))
        return { "pytorch_model.bin" };
    throw Error(dir.string()
        + ": no weights found (expected model.safetensors, model.safetensors.index.json or "
          "pytorch_model.bin)");
}

std::string withoutTrailingSlash(std::string path)
{
    while (path.size() > 1 && path.back() == '/')
        path.pop_back();
    return path;
}

} // namespace

BackboneIdentity backboneIdentity(const std::string& directory)
{
    const fs::path dir(directory);
    if (!fs::is_directory(dir))
        throw Error(directory + ": not a backbone folder");
    BackboneIdentity identity;
    identity.files.push_back("config.json");
    for (auto& f : weightFiles(dir))
        identity.files.push_back(f);
    std::sort(identity.files.begin(), identity.files.end());
    std::string manifest;
    for (const auto& name : identity.files) {
        const auto digest = hashFile((dir / name).string());
        manifest += name + " " + digest.sha256 + "\n";
        identity.bytes += digest.bytes;
    }
    identity.sha256 = sha256Hex(manifest);
    return identity;
}

LoadedRun loadTrainedModel(const RunSpec& spec, const std::string& checkpointPath, const std::string& device,
    const std::string& expectedBackboneSha256)
{
    LoadedRun run;
    run.spec = spec;
    run.checkpointPath = checkpointPath;
    run.device = device.empty() ? "cpu" : device;
    run.backboneDirectory = withoutTrailingSlash(backboneFolderOf(spec));
    if (!fs::exists(checkpointPath))
        throw Error(checkpointPath + ": no such file (the run's trainable weights)");
    if (!expectedBackboneSha256.empty()) {
        const auto identity = backboneIdentity(run.backboneDirectory);
        if (identity.sha256 != expectedBackboneSha256)
            throw Error("the backbone folder " + run.backboneDirectory
                + " changed since the run was trained: its files' SHA-256 is " + identity.sha256
                + ", the run recorded " + expectedBackboneSha256
                + " (restore the backbone the run trained on, or retrain)");
    }
    c10::Device target(c10::kCPU);
    try {
        target = c10::Device(run.device);
    } catch (const std::exception&) {
        throw Error("device '" + run.device + "': expected cpu, cuda or cuda:N");
    }
    if (spec.task.type == "vl")
        throw Error("run '" + spec.displayName()
            + "' is a vision-and-language run: ladder eval, export, bundles and predict do not read images "
              "yet "
              "(docs/VL.md); its figures are in the store");
    auto inputs = loadBackboneInputs(spec);
    inputs.backbone->to(target);
    run.backbone = inputs.backbone;
    run.tokenizer = inputs.tokenizer;
    // The stored weights replace the initialisation: init fisher (the run's Fisher pass) is not repeated.
    run.method = createMethod(run.backbone, withoutFisherInit(spec.method));
    run.method->loadTrainable(checkpointPath);
    run.method->train(false);
    return run;
}

RunSpec runSpecOf(ResultsStore& store, std::int64_t runId)
{
    RunRecord record;
    std::string error;
    if (!store.getRun(runId, &record, &error))
        throw Error(error);
    const auto source = "run " + std::to_string(runId) + " spec";
    return RunSpec::fromJson(parseJson(record.specJson, source), source);
}

LoadedRun loadFinishedRun(ResultsStore& store, std::int64_t runId, const std::string& device)
{
    RunRecord record;
    std::string error;
    if (!store.getRun(runId, &record, &error))
        throw Error(error);
    const auto name = "run " + std::to_string(runId);
    if (record.status != RunState::Finished) {
        if (record.checkpointFile.empty())
            throw Error(name + " is " + toString(record.status) + ": it has no best checkpoint");
        throw Error(name + " is " + toString(record.status)
            + ", not finished: only a finished run's best weights are used (train it to the end, or resume "
              "it with `ladder train --resume "
            + std::to_string(runId) + "`)");
    }
    if (record.checkpointFile.empty())
        throw Error(name
            + " finished but has no recorded checkpoint (recorded before checkpoints were kept, "
              "or stopped before its first evaluation)");
    return loadStoredRun(store, runId, device);
}

LoadedRun loadStoredRun(ResultsStore& store, std::int64_t runId, const std::string& device)
{
    const auto spec = runSpecOf(store, runId);
    std::string checkpoint;
    std::string error;
    if (!store.verifyCheckpoint(runId, &checkpoint, &error))
        throw Error(error);
    auto loaded = loadTrainedModel(spec, checkpoint, device);
    loaded.runId = runId;
    return loaded;
}

T5ForConditionalGenerationImpl& t5Of(const LoadedRun& run, const std::string& what)
{
    auto* t5 = dynamic_cast<T5ForConditionalGenerationImpl*>(run.backbone.get());
    if (!t5)
        throw Error(what + ": run " + std::to_string(run.runId) + " trained a "
            + run.backbone->shape().architecture
            + " backbone; this export is written for T5 runs only so far (--format ladder takes every run)");
    return *t5;
}

} // namespace ladder
