#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model/T5Model.h"
#include "peft/Method.h"
#include "train/RunSpec.h"

namespace ladder {

class ResultsStore;
class Tokenizer;

// A trained run loaded for use (export, predict, eval): the spec's backbone with the run's method built on
// it and its trained weights loaded, in eval mode on `device`.
struct LoadedRun {
    RunSpec spec; // the run's spec (spec.device is the device the run was trained on)
    std::int64_t runId = 0; // 0 when loaded from a spec and a file (a bundle)
    std::string backboneDirectory; // the folder the backbone was read from ("demo" resolved)
    std::string checkpointPath; // the trainable weights loaded
    std::string device; // where the model now is ("cpu", "cuda:0")
    BackboneModel backbone; // the backbone module; the in-place methods modify it
    std::shared_ptr<Tokenizer> tokenizer;
    std::unique_ptr<Method> method;
};

// The run's backbone as T5, for what only T5 runs have so far (HF and PEFT exports: issue #21 left them
// T5-only). `what` names the caller in the error a decoder run gets ("export --format hf").
T5ForConditionalGenerationImpl& t5Of(const LoadedRun& run, const std::string& what);

// The identity of a backbone folder: SHA-256 over its config.json and weight files (model.safetensors, the
// shards an index names with the index itself, or pytorch_model.bin), each as "NAME SHA256\n" in name
// order, so that renaming the folder keeps it and changing any weight changes it. `files` lists the names.
struct BackboneIdentity {
    std::string sha256; // 64 lower-case hex digits
    std::vector<std::string> files;
    std::int64_t bytes = 0; // the files' sizes together
};
// Reads every file whole (t5-base: about 1 GB, a few seconds). Throws Error naming the folder or file.
BackboneIdentity backboneIdentity(const std::string& directory);

// Loads `spec`'s backbone as the trainer does (loadBackboneInputs: "demo" or a HF folder, with its
// tokenizer), builds the spec's method on it (LST's Fisher initialisation is not repeated: the weights
// replace it), loads the trainable weights of `checkpointPath` (Method::loadTrainable: names, shapes and the
// method options checked) and puts everything in eval mode on `device` (empty: "cpu"). When
// `expectedBackboneSha256` is given, the backbone folder's backboneIdentity() must equal it, else an Error
// says that the backbone folder changed since (naming it and both hashes).
LoadedRun loadTrainedModel(const RunSpec& spec, const std::string& checkpointPath, const std::string& device,
    const std::string& expectedBackboneSha256 = {});

// A finished run of `store`: its spec, and its best trainable weights (ResultsStore::verifyCheckpoint: the
// file's size and SHA-256 equal the recorded ones). Errors: "run 7 is not in the store", "run 7 is
// cancelled, not finished: only a finished run is loaded (it has a best checkpoint of step 40; ...)",
// "run 7 is cancelled: it has no best checkpoint", and verifyCheckpoint's. The store records no hash of the
// backbone a run trained on, so the backbone folder is checked only as loading checks any folder (config
// against weights, names and shapes against the method's).
LoadedRun loadFinishedRun(ResultsStore& store, std::int64_t runId, const std::string& device);

// Any run of `store` with a recorded checkpoint (a cancelled run's best so far too), checked by
// ResultsStore::verifyCheckpoint, then loadTrainedModel: `ladder eval`'s load. Errors as verifyCheckpoint's.
LoadedRun loadStoredRun(ResultsStore& store, std::int64_t runId, const std::string& device);

// The spec stored with run `runId` (RunSpec::fromJson of its spec_json; errors name "run 7 spec").
RunSpec runSpecOf(ResultsStore& store, std::int64_t runId);

} // namespace ladder
