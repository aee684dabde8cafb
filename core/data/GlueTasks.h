#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/Task.h"

namespace ladder {

// The GLUE tasks LadderBench reads (WNLI is not one: the paper leaves it out).
enum class GlueTask { CoLA, SST2, MRPC, QQP, STSB, MNLI, QNLI, RTE };

struct GlueLoadOptions {
    // "auto" (detect from the files, then from the folder's name) or a task name in any case, with or
    // without '-': cola, sst2 / SST-2, mrpc, qqp, stsb / STS-B, mnli, qnli, rte.
    std::string task = "auto";
    // The reference's data_seed (42): the shuffle that halves a small task's dev set and the shuffle that
    // carves a large task's 1k validation set out of train. Keep it fixed across training seeds so every
    // run is scored on the same examples.
    std::uint64_t dataSeed = 42;
    // A folder without train.tsv (QNLI in the shared fixtures is dev-only) is an error by default; with
    // false it loads with an empty train split (and, for SST-2, QNLI, QQP, an empty validation split).
    bool requireTrain = true;
    // How many training examples SST-2, QNLI and QQP give to validation (the paper: 1000).
    std::size_t largeValidationSize = 1000;
};

// Reads GLUE in its original TSV layout (as download_glue_data.py writes it) and casts it to
// text-to-text as the reference implementation (ylsung/Ladder-Side-Tuning, after Mahabadi et al.) does.
// See docs/DATA.md for the per-task table and the split rules.
class GlueTasks {
public:
    static GlueTask parseName(const std::string& name); // throws ladder::Error for an unknown name
    static const char* name(GlueTask task); // "cola", "sst2", ... (the source prefix)
    static std::vector<GlueTask> all();

    // Name, kind, target strings, label names, metrics and main metric of `task`.
    static TaskInfo info(GlueTask task);

    // How the source is built from an example's text fields: the prefix (name()), then for each field its
    // keyword and its text, joined by spaces. (field name as TextExample::fields names it, keyword) in
    // source order: rte -> (sentence1, "sentence1:"), (sentence2, "sentence2:").
    static std::vector<std::pair<std::string, std::string>> sourceFields(GlueTask task);

    // Which task a folder holds, from the first lines of dev.tsv / train.tsv (or MNLI's dev_matched.tsv),
    // else from the folder's name; throws ladder::Error naming the folder when neither tells.
    static GlueTask detect(const std::string& folder);

    // All labelled rows of one GLUE file, in file order, cast to text-to-text. `setName` ("train", "dev")
    // prefixes the ids as HF's processors do. Quirks handled here: a UTF-8 byte-order mark (MRPC), no
    // header line (CoLA's train and dev), no quoting (STS-B, MNLI, QQP hold unbalanced '"'), a missing final
    // newline (CoLA dev), \r\n line ends, blank lines. Throws ladder::Error "<path>:<line>: ..." for a
    // wrong number of fields, an unknown label, a score that is not a number, a missing header, an
    // empty file, binary or non-UTF-8 content.
    static std::vector<TextExample> readFile(
        GlueTask task, const std::string& path, const std::string& setName);

    // The task in `folder`, split as the paper does (docs/DATA.md):
    // - CoLA, RTE, MRPC, STS-B: train = train.tsv; dev.tsv shuffled with dataSeed and halved: validation =
    //   the first floor(n/2) of the shuffle, test = the rest (RTE: 138 / 139).
    // - SST-2, QNLI, QQP: train.tsv shuffled with dataSeed: validation = the first 1000, train = the rest;
    //   test = dev.tsv.
    // - MNLI: train = train.tsv, validation = dev_mismatched.tsv, test = dev_matched.tsv.
    static TaskSplits load(const std::string& folder, const GlueLoadOptions& options = {});
};

// GlueTasks::load with options {task = taskName, dataSeed}.
TaskSplits loadGlueTask(
    const std::string& folder, const std::string& taskName = "auto", std::uint64_t dataSeed = 42);

} // namespace ladder
