#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/WordNet.h"

namespace ladder {

// The built-in demo's two tasks, made from WordNet with real labels (docs/DEMO.md):
// - "supersense": a noun or verb synset's definition -> its lexicographer file ("noun.animal",
//   "verb.motion"), over the most frequent noun and verb lexicographer files, class-balanced;
// - "definition-match": a word and a definition -> "yes" when the word is the synset's first lemma,
//   "no" when the definition is that of another synset of the same part of speech; balanced.
// Splits are fixed by a stable hash of the synset id, so they never change across platforms or runs.
// Each task is written as plain JSONL that the generic task reader consumes, plus a task.json manifest.

// The demo recipe (tasks and backbone). Bump it whenever any output would change: the cache folder is
// named after it, so old caches are never mistaken for new ones.
constexpr const char* kDemoRecipeVersion = "demo-v2";

// 64-bit FNV-1a of the bytes of `text` (offset basis 14695981039346656037, prime 1099511628211).
std::uint64_t fnv1a64(const std::string& text);

enum class DemoSplit { Train, Validation, Test };
const char* toString(DemoSplit split); // "train", "validation", "test"
// fnv1a64(synset id) % 10: 0-7 train, 8 validation, 9 test.
DemoSplit demoSplitOf(const std::string& synsetId);

struct DemoExample {
    std::string id; // "n02084071", "n02084071-v01831531"
    std::vector<std::pair<std::string, std::string>> fields; // text columns, in task order
    std::string label;
};

struct DemoTask {
    std::string name;
    std::string description;
    std::vector<std::string> textColumns;
    std::string labelColumn = "label";
    std::vector<std::string> labels; // sorted by bytes (the generic reader's default label order)
    std::vector<DemoExample> train;
    std::vector<DemoExample> validation;
    std::vector<DemoExample> test;

    const std::vector<DemoExample>& split(DemoSplit which) const;
};

struct DemoTaskOptions {
    // Supersense classes: the most frequent noun and verb lexicographer files (ties: lower lex_filenum).
    int nounClasses = 8;
    int verbClasses = 4;
    std::size_t supersenseTrain = 4000;
    std::size_t supersenseValidation = 500;
    std::size_t supersenseTest = 500;
    // Definition-match sizes (even: one positive and one negative per anchor synset).
    std::size_t matchTrain = 4000;
    std::size_t matchValidation = 500;
    std::size_t matchTest = 500;
    // Seeds the choice of negative definitions.
    std::uint64_t seed = 20221128;

    static DemoTaskOptions defaults() { return {}; }
};

// Throws ladder::Error when WordNet holds too few synsets for the requested sizes.
DemoTask buildSupersenseTask(const std::vector<Synset>& synsets, const DemoTaskOptions& options = {});
DemoTask buildDefinitionMatchTask(const std::vector<Synset>& synsets, const DemoTaskOptions& options = {});

// Writes tasksDir/<name>/{train,validation,test}.jsonl (one JSON object per line: "id", the text
// columns, "label") and tasksDir/<name>/task.json: {name, description, text_columns, label_column,
// kind: "classification", labels, metric: "accuracy", chance_accuracy, splits: {train: {file, size,
// label_counts}, ...}, source, recipe_version}.
void writeDemoTask(const DemoTask& task, const std::string& tasksDir);

// The names of the demo tasks, in the order they are built.
std::vector<std::string> demoTaskNames();

// The demo cache, holding backbone/ and tasks/: $LADDER_DEMO_DIR when set (tests, shared installations),
// else $XDG_CACHE_HOME/ladderbench/<kDemoRecipeVersion> (fallback ~/.cache/ladderbench/...).
std::string demoCacheDir();

// Whether every demo task in tasksDir has its three files and a task.json of this recipe version.
bool demoTasksComplete(const std::string& tasksDir);

// Builds the demo tasks into tasksDir unless they are complete. The tasks are written into a temporary
// folder beside tasksDir and renamed into place, so an interrupted build never leaves a partial folder.
// Returns true when it built them.
bool ensureDemoTasks(const std::string& tasksDir, const std::string& wordNetDir = defaultWordNetDir());

// Small POSIX folder helpers for the demo builders. They avoid std::filesystem on purpose: the LibTorch
// wheel's libtorch.so exports its own copies of std::filesystem's functions, and the dynamic linker binds
// calls to them; its std::filesystem::remove_all(path, error_code&) crashed (a call through a null
// pointer) in this project's build.
namespace demofs {
bool exists(const std::string& path);
bool isFile(const std::string& path);
bool isDirectory(const std::string& path);
bool isEmptyDirectory(const std::string& path);
// mkdir -p. Throws ladder::Error naming the folder.
void makeDirectories(const std::string& path);
// rm -r (does not follow symbolic links). A missing path is not an error; a failure throws ladder::Error.
void removeTree(const std::string& path);
// "a" + "/" + "b" (no doubled separator).
std::string join(const std::string& a, const std::string& b);
// The folder that holds `path` ("." for a bare name) and the last component, trailing '/' ignored.
std::string parentOf(const std::string& path);
std::string fileNameOf(const std::string& path);
} // namespace demofs

// Atomic folder builds, shared by the demo builders. makeStagingDir creates a fresh empty folder beside
// `target` ("<target>.partial-<pid>-<n>"), first removing the staging folders of processes that no
// longer run (a build killed half-way); publishStagingDir removes a stale `target` (if any) and renames
// the staging folder onto it. When another process published a complete `target` in the meantime
// (`isComplete` says so), the staging folder is removed instead. Errors throw ladder::Error.
std::string makeStagingDir(const std::string& target);
void publishStagingDir(
    const std::string& staging, const std::string& target, bool (*isComplete)(const std::string&));

} // namespace ladder
