#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/Task.h"

namespace ladder {

// A user's own task: JSONL, CSV or TSV with named text columns and a label column.
struct GenericTaskOptions {
    enum class LabelOrder {
        Sorted, // label strings sorted by their bytes (stable under reordering the file)
        FirstAppearance, // in the order the training file first uses them
    };

    // The data. `path` is the training file; validation and test come from their own files when given,
    // else each is carved out of `path` (see validationFraction, testFraction).
    std::string path;
    std::string validationPath;
    std::string testPath;
    // "auto" (by extension: .jsonl / .json / .ndjson, .csv, .tsv / .tab / .txt), "jsonl", "csv" or "tsv".
    // JSONL: one JSON object per line (a .json file holding one array of objects also works). CSV:
    // RFC 4180 with a header line. TSV: a header line, fields split at tabs, no quoting.
    std::string format = "auto";
    // Columns whose text goes into the source, in this order (at least one).
    std::vector<std::string> textColumns;
    std::string labelColumn = "label";
    // Source prefix, as GLUE's "rte": source = "<taskName> <col1>: <text1> <col2>: <text2>". Empty: no
    // prefix. Also TaskInfo::name.
    std::string taskName = "task";
    TaskKind kind = TaskKind::Classification;

    // Classification. A fixed label list (any other label is an error); empty: every label the training
    // file uses, ordered by labelOrder. A label found only in a validation or test file is an error.
    std::vector<std::string> labels;
    LabelOrder labelOrder = LabelOrder::Sorted;
    // Targets are the label index as text ("0", "1", ..., as for GLUE); true: the label text itself.
    bool labelTextTargets = false;

    // Regression: targets are the number rounded to this many decimals (STS-B: 1).
    int targetDecimals = 1;

    // Splits carved out of `path` when their file is not given: the file is shuffled with `seed`
    // (randomPermutation), validation takes the first round(n * validationFraction), test the next
    // round(n * testFraction), train the rest (in shuffled order). When both files are given, `path` is
    // train as it stands.
    double validationFraction = 0.1;
    double testFraction = 0.1;
    std::uint64_t seed = 42;
};

// Loads and casts a generic task. Throws ladder::Error naming the file, the line and the field for every
// malformed input: "train.csv:17: column 'label' is missing", "dev.jsonl:3: unknown label 'maybe'; the
// training file's labels are 'neg', 'pos'", "train.tsv:9: label 'high' is not a number", an empty file,
// binary data, invalid JSON, a wrong number of fields.
TaskSplits loadGenericTask(const GenericTaskOptions& options);

// One file's rows as (line, column name -> text) records, with every column the header or the JSON objects
// have. `format` as GenericTaskOptions::format.
struct GenericRecord {
    std::string location; // "train.csv:17" (the line the record starts on), "data.json: item 3"
    std::vector<std::pair<std::string, std::string>> columns; // JSON: strings as they are, numbers and
                                                              // booleans as JSON writes them, null left out
    std::vector<std::string> structured; // JSON columns that hold an array or an object (not text)
    const std::string* find(const std::string& column) const;
};
std::vector<GenericRecord> readGenericRecords(const std::string& path, const std::string& format = "auto");

} // namespace ladder
