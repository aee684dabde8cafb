#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace ladder {

// What a task's target is: one label out of a fixed list, a number, or free text scored against references
// (the vision-and-language tasks: VQA's answers, captions; docs/VL.md).
enum class TaskKind { Classification, Regression, Generation };

const char* toString(TaskKind kind);

// One example cast to text-to-text. `source` and `target` are what the model sees; the rest is kept for
// evaluation, display and tests.
struct TextExample {
    // Where it came from. GLUE: HF's guid ("dev-0", "train-12": the 0-based line index in the file, as
    // transformers' glue processors number them); generic files: "train.csv:17" (the line the record
    // starts on) or "data.jsonl:5".
    std::string id;
    // The text fields in source order, by the name they have in the source ("sentence1", "question"...).
    std::vector<std::pair<std::string, std::string>> fields;
    std::string source; // "rte sentence1: ... sentence2: ..."
    std::string target; // "0", "1", "2" (classification), "3.8" (regression)
    std::string label; // the label as written in the file: "entailment", "1", "2.615"
    int labelIndex = -1; // classification: index into TaskInfo::labels; regression: -1
    double score = std::numeric_limits<double>::quiet_NaN(); // regression: the gold score; else NaN
    // Vision-and-language (docs/VL.md). images: the ids, in the task's feature file, of the images the
    // example sees (one; NLVR2: two, left then right); empty for a text task. references: what a generation
    // task's metric scores against (VQA: the human answers; GQA: the answer; captioning: every reference
    // caption). subtask: the VL task type of this example ("vqa", "gqa", "nlvr2", "caption"), so that one
    // split can mix several (VL-Adapter's multi-task setting).
    std::vector<std::string> images;
    std::vector<std::string> references;
    std::string subtask;
};

// What a task is and how it is scored.
struct TaskInfo {
    std::string name; // short name, also the source prefix: "rte", "stsb", or the user's
    std::string displayName; // "RTE", "STS-B"
    TaskKind kind = TaskKind::Classification;
    // Classification: the target strings, index = label index ("0", "1"). Regression: the targets the
    // model is expected to produce (STS-B: "0.0" .. "5.0" in steps of 0.2, as the reference lists them:
    // used to size the target length), possibly empty.
    std::vector<std::string> labels;
    // Classification: a readable name per label, same order (GLUE: HF datasets' class names, such as
    // "not_equivalent", "equivalent"; generic files: the label as written in the file).
    std::vector<std::string> labelNames;
    std::vector<std::string> metrics; // names evaluate() reports (see Metrics.h)
    std::string mainMetric; // the one that selects the best checkpoint and is reported
    // Vision-and-language tasks (docs/VL.md): the visual feature file (data/VisualFeatures.h), the visual
    // tokens per image the model sees (0: the file's count), the features' width (from the file). Empty /
    // 0 for a text task.
    std::string visualFeatures;
    std::int64_t visualTokens = 0;
    std::int64_t visualDim = 0;
    bool isVisual() const { return !visualFeatures.empty(); }

    // Index of `target` in labels, or -1.
    int labelIndexOf(const std::string& target) const;
};

// A task's three splits after the split rule (docs/DATA.md, docs/DATA.md).
struct TaskSplits {
    TaskInfo info;
    std::vector<TextExample> train;
    std::vector<TextExample> validation;
    std::vector<TextExample> test;
    // Human-readable lines on where each split came from ("validation: 138 of dev.tsv (seed 42) ...").
    std::vector<std::string> notes;
};

// A regression target as text: `value` rounded half-to-even at `decimals` digits (numpy.round) and
// written with exactly that many decimals: 2.615 -> "2.6", 5 -> "5.0", 2.25 -> "2.2".
std::string formatScoreTarget(double value, int decimals = 1);

} // namespace ladder
