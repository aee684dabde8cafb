#pragma once

// Vision-and-language tasks over precomputed visual features (issue 22; docs/VL.md): VQA, GQA, NLVR2 and
// COCO captioning cast to text-to-text with VL-Adapter's task prompts, one model for all (VL-Adapter's
// multi-task setting, the LST paper's CLIP-T5 experiments). A task is a folder of JSON Lines splits beside a
// visual feature file (data/VisualFeatures.h); the layout is in docs/VL.md.

#include <cstdint>
#include <string>
#include <vector>

#include "data/Metrics.h"
#include "data/Task.h"

namespace ladder {

// The metric names of the VL tasks, beside Metrics.h's. Values are fractions as the reference evaluators
// return them: VQA soft accuracy, GQA and NLVR2 accuracy in [0, 1]; BLEU-4 in [0, 1]; CIDEr-D as
// pycocoevalcap reports it (1.16 for the paper's 116). vl_average is the mean of vqa_accuracy, gqa_accuracy,
// nlvr2_accuracy and cider over the task types present: the paper's Table 3 "Avg." divided by 100.
namespace metric {
inline constexpr const char* kVqaAccuracy = "vqa_accuracy";
inline constexpr const char* kGqaAccuracy = "gqa_accuracy";
inline constexpr const char* kNlvr2Accuracy = "nlvr2_accuracy";
inline constexpr const char* kCider = "cider";
inline constexpr const char* kBleu4 = "bleu4";
inline constexpr const char* kVlAverage = "vl_average";
} // namespace metric

// The task types, as TextExample::subtask and a JSONL line's "task" name them.
namespace vltask {
inline constexpr const char* kVqa = "vqa";
inline constexpr const char* kGqa = "gqa";
inline constexpr const char* kNlvr2 = "nlvr2";
inline constexpr const char* kCaption = "caption";
} // namespace vltask

// "vqa", "gqa", "nlvr2", "caption": every task type, in this (the metrics') order.
const std::vector<std::string>& vlTaskTypes();
bool isVlTaskType(const std::string& type);
// The source prefix of a task type (VL-Adapter's task prompt): "vqa: ", "gqa: ", "nlvr: ", "caption:".
std::string vlTaskPrompt(const std::string& type);

struct VlTaskOptions {
    // The task folder: train.jsonl, validation.jsonl, test.jsonl, features.safetensors, optional task.json.
    std::string folder;
    // The visual feature file, used as given; empty: task.json's "features" (a path in the folder), else
    // <folder>/features.safetensors.
    std::string featuresPath;
    // The task types to keep (a subset of vlTaskTypes()); lines of other types are validated and left out.
    // Empty: every type the files hold. One type: lines may leave out "task".
    std::vector<std::string> tasks;
    // Visual tokens per image the model sees; 0: task.json's "visual_tokens", else the file's boxes. Must
    // equal the boxes or be a smaller square number when the boxes are a square grid (the reference's
    // --downsample: VisualFeatureFile::reduceTokens).
    std::int64_t visualTokens = 0;
    // TaskInfo::name; empty: task.json's "name", else "vl".
    std::string name;
};

// Loads a VL task folder. Every example gets source = prompt + text ("vqa: <question>", "gqa: <question>",
// "nlvr: <statement>", "caption:"), target (VQA: the most frequent human answer; GQA: the answer; NLVR2:
// "true"/"false"; captioning: a reference caption), references (what the metric scores against), images
// and subtask. Captioning's train split has one example per reference caption; validation and test one per
// image (target: the first caption). TaskInfo: kind Generation, the metrics of the types present plus
// vl_average (the main metric), visualFeatures / visualTokens / visualDim. Throws ladder::Error naming the
// file, the line and the field for every malformed input ("train.jsonl:12: field 'answers': expected a
// list of 1 to 10 answers ...", "validation.jsonl:3: image 'COCO_42' is not in features.safetensors", a
// missing or empty split, an unknown task type, NLVR2 without exactly two images, ...).
TaskSplits loadVlTask(const VlTaskOptions& options);

// Scores generated text per example by its subtask: VQA soft accuracy against the human answers (the
// official evaluation), GQA exact match, NLVR2 accuracy (the prediction stripped and lowercased equals
// "true" / "false"; anything else is wrong and counts in `invalid`), captions by corpus BLEU-4 and CIDEr-D
// (pycocoevalcap) over the caption examples. values holds every metric of info.metrics (a metric whose task
// type has no example in `references` is 0 and left out of vl_average); main = info.mainMetric. Throws
// ladder::Error when the counts differ, an example has no subtask or no references, or the task lists a
// metric this function does not know. evaluate() (Metrics.h) calls it for TaskKind::Generation.
TaskMetrics evaluateVl(const TaskInfo& info, const std::vector<std::string>& predictions,
    const std::vector<TextExample>& references);

} // namespace ladder
