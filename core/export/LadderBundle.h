#pragma once

// The ladder bundle (docs/EXPORT.md, "Ladder bundles"): one finished run of any method as a folder of its
// own, for `ladder predict --bundle` and the workbench's File > Import Bundle... on another machine. It
// holds the run's trainable weights, its spec, its task's input format, its final figures, the tokenizer
// and the identity of the backbone it trained on (not the backbone's weights: predict is given the
// backbone folder, whose files must hash to the recorded identity).
//
//   bundle.json           the manifest: format, versions, the run, the backbone's identity, every other
//                         file with its size and SHA-256
//   README.md             what the folder is and how to use it
//   run.json              the run spec, as RunSpec writes it
//   weights.safetensors   the trainable weights (Method::saveTrainable), the run's best checkpoint
//   task.json             how inputs become the model's source, the labels, generation settings (TaskFormat)
//   figures.json          the final figures (metrics, peak memory, parameters) and the evaluations
//   spiece.model          the backbone's SentencePiece tokenizer (T5); a decoder's bundle holds its
//                         tokenizer.model and/or tokenizer.json with tokenizer_config.json instead
//   backbone/config.json  the backbone's config.json
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "export/RunModel.h"
#include "export/TaskFormat.h"
#include "train/RunSpec.h"

namespace ladder {

class ResultsStore;

inline constexpr const char* kLadderBundleFormat = "ladderbench-bundle";
// Bumped when a reader of the previous version could misread a new bundle; a reader refuses newer ones.
inline constexpr int kLadderBundleFormatVersion = 1;

// One file of a bundle as the manifest lists it.
struct BundleFile {
    std::string path; // relative to the bundle folder, '/'-separated
    std::int64_t bytes = 0;
    std::string sha256;
};

// A bundle read and checked by readLadderBundle().
struct LadderBundle {
    std::string dir;
    nlohmann::json manifest; // bundle.json
    int formatVersion = 0;
    std::string ladderbenchVersion; // the LadderBench that wrote it
    // The run as it was in its store.
    std::int64_t runId = 0;
    std::string runName;
    std::string method;
    std::string task; // the store's task column ("rte", "demo-supersense")
    std::string sourceStore;
    RunSpec spec; // run.json
    TaskFormat format; // task.json
    nlohmann::json figures; // figures.json
    // The backbone the run trained on: its folder there and then, and backboneIdentity() of it.
    std::string backbonePath;
    std::string backboneSha256;
    std::vector<std::string> backboneFiles;
    std::vector<BundleFile> files; // every file the manifest lists
    std::string weightsPath; // <dir>/weights.safetensors
    std::string weightsSha256;
    std::string tokenizerPath; // <dir>/spiece.model (T5), else <dir>/tokenizer.model or tokenizer.json
};

// Writes finished run `runId` of `store` as a bundle at `outDir`, which must not exist or be an empty
// folder. The run's checkpoint is checked against its recorded SHA-256 (ResultsStore::verifyCheckpoint)
// before it is copied, and the copy after; the backbone folder is hashed (backboneIdentity). The folder is
// written as "<outDir>.partial-<pid>" beside it and renamed into place at the end: a failure leaves no
// half bundle. Throws Error naming the run, file or folder.
void writeLadderBundle(ResultsStore& store, std::int64_t runId, const std::string& outDir);

// Reads and checks a bundle: bundle.json's format and version, every listed file present with its
// recorded size and SHA-256, the files a bundle needs listed, run.json a valid spec, task.json and
// figures.json well-formed. Errors name the file, the field and what was expected: "B/weights.safetensors:
// its SHA-256 is X, bundle.json records Y (the file was changed or damaged)".
LadderBundle readLadderBundle(const std::string& dir);

// The bundle's model loaded for prediction (export/RunModel.h): the backbone from `backboneDir`, or the
// recorded folder when empty, whose backboneIdentity() must equal the recorded one; the method with the
// bundle's weights; the bundle's tokenizer. A recorded folder that is not here says to give --backbone.
LoadedRun loadBundleModel(
    const LadderBundle& bundle, const std::string& backboneDir, const std::string& device);

// Adds a bundle's run to `store` as a finished run: its spec, its weights copied into the store's files
// folder and recorded with their hash (ResultsStore::recordCheckpoint), its final figures and evaluations,
// and a log line naming the bundle. A finished run of the same spec hash with the same weights already in
// the store is not copied again: *alreadyPresent (optional) is then true and its id is returned.
std::int64_t importLadderBundle(ResultsStore& store, const std::string& dir, bool* alreadyPresent = nullptr);

} // namespace ladder
