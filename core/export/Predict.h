#pragma once

// Predictions of a trained run on new inputs (`ladder predict`, docs/EXPORT.md "ladder predict"): inputs
// read from JSONL, TSV or CSV, formatted as the run's task formats its sources, generated in batches with
// the method's own generation (greedy or beam search), written one JSON line per input as it goes.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "export/TaskFormat.h"

namespace ladder {

struct LoadedRun;

// One input: its id (the input's "id" field or column when it has one, as written: a JSON string or
// number; else its 1-based line number) and the model's source built from its text fields.
struct PredictInput {
    nlohmann::json id;
    std::string source;
    std::size_t line = 0; // where it starts in the file (1-based)
};

// The inputs of a file, up to its first bad line. Formats by extension: .jsonl / .ndjson / .json (one
// JSON object per line), .tsv / .tab (a header row, tab-separated, no quoting), .csv (a header row,
// RFC 4180). The text: the task's field names (a GLUE pair task's sentence1 and sentence2, a generic task's
// text_columns); a task of one field takes `textColumn` when given, else the first of its field's own name,
// "input" and "text" that the input has. Blank lines are skipped.
struct PredictInputs {
    std::vector<PredictInput> inputs; // the good lines before the first bad one
    // The first bad line, "FILE:LINE: field sentence2: missing (task rte reads sentence1, sentence2)";
    // empty when every line was read. A file that cannot be read at all (missing, not UTF-8, a CSV quote
    // never closed) throws Error instead.
    std::string error;
};
PredictInputs readPredictInputs(
    const std::string& path, const TaskFormat& format, const std::string& textColumn = {});

// One prediction. score: with greedy decoding the sum of the generated tokens' log-probabilities (natural
// log, </s> included, no length normalisation); with beam search HF's sequences_scores, that sum divided
// by the hypothesis' length (the decoder start token counted, </s> not) to the power length_penalty (1.0).
struct Prediction {
    std::string text; // the generated ids decoded, special tokens left out
    double score = 0.0;
    std::vector<std::int64_t>
        ids; // the generated ids after the decoder start token, through </s> when reached
};

// Generates for `sources` in one batch (cut at format.maxSourceLength tokens, at most format.maxNewTokens
// new tokens), with `numBeams` beams (0: the run's evaluation setting, format.numBeams), under the run's
// bf16 autocast when it trained so.
std::vector<Prediction> predictBatch(LoadedRun& run, const TaskFormat& format,
    const std::vector<std::string>& sources, std::int64_t numBeams = 0);

struct PredictOptions {
    std::string inputsPath;
    std::string textColumn; // empty: the default rule (readPredictInputs)
    std::string outPath;
    std::int64_t batchSize = 32;
    std::int64_t numBeams = 0; // 0: the run's evaluation setting
};

// The output line of one input: {"id", "input" (the source the model read, before truncation),
// "prediction", "score"}.
nlohmann::json predictionLine(const PredictInput& input, const Prediction& prediction);

// Reads the inputs, then predicts them batch by batch, writing each batch's lines to outPath (created or
// truncated) and flushing it before the next batch. progress(done, total) is called after each batch;
// returning false stops (the lines written stay). When the file has a bad line, the lines before it are
// predicted and written first, then Error is thrown with readPredictInputs' message. Returns the number of
// lines written.
std::int64_t predictToFile(LoadedRun& run, const TaskFormat& format, const PredictOptions& options,
    const std::function<bool(std::int64_t done, std::int64_t total)>& progress = {});

} // namespace ladder
