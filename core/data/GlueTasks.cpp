#include "data/GlueTasks.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "data/Metrics.h"
#include "data/Permutation.h"
#include "data/TextTable.h"
#include "util/Error.h"

namespace ladder {

namespace {

namespace fs = std::filesystem;

enum class SplitRule {
    HalveDev, // small sets: dev halved into validation and test
    CarveValidation, // large sets: 1k of train as validation, dev as test
    Mnli, // mismatched as validation, matched as test
};

// How one GLUE task is laid out and cast.
struct GlueSpec {
    GlueTask task;
    const char* name; // source prefix, as the reference's task names
    const char* display; // folder name in the GLUE download
    TaskKind kind;
    SplitRule rule;
    // Header files: the columns, by their header names. CoLA (no header): fixed positions.
    std::vector<std::string> header; // the header line, field by field (empty: no header)
    std::vector<std::string> textColumns; // names in the header
    std::string labelColumn;
    std::string idColumn; // HF's processors take the guid from this column; empty: the line index
    // CoLA only: field count and positions.
    std::size_t fixedFieldCount = 0;
    std::vector<std::size_t> fixedTextPositions;
    std::size_t fixedLabelPosition = 0;
    // Source: prefix, then for each text column its keyword and its text (the reference's seq2seq_format).
    std::vector<std::string> keywords;
    std::vector<std::string> fieldNames; // TextExample::fields names
    std::vector<std::string> fileLabels; // label strings in the files, in label-index order
    std::vector<std::string> labelNames; // HF datasets' class names
    std::vector<std::string> metrics;
    std::string mainMetric;
};

const std::vector<GlueSpec>& specs()
{
    using namespace metric;
    static const std::vector<GlueSpec> table = {
        { GlueTask::CoLA, "cola", "CoLA", TaskKind::Classification, SplitRule::HalveDev, {}, {}, "", "", 4,
            { 3 }, 1, { "sentence:" }, { "sentence" }, { "0", "1" }, { "unacceptable", "acceptable" },
            { kMcc }, kMcc },
        { GlueTask::SST2, "sst2", "SST-2", TaskKind::Classification, SplitRule::CarveValidation,
            { "sentence", "label" }, { "sentence" }, "label", "", 0, {}, 0, { "sentence:" }, { "sentence" },
            { "0", "1" }, { "negative", "positive" }, { kAccuracy }, kAccuracy },
        { GlueTask::MRPC, "mrpc", "MRPC", TaskKind::Classification, SplitRule::HalveDev,
            { "Quality", "#1 ID", "#2 ID", "#1 String", "#2 String" }, { "#1 String", "#2 String" },
            "Quality", "", 0, {}, 0, { "sentence1:", "sentence2:" }, { "sentence1", "sentence2" },
            { "0", "1" }, { "not_equivalent", "equivalent" }, { kAccuracy, kF1, kAccuracyF1 }, kAccuracyF1 },
        { GlueTask::QQP, "qqp", "QQP", TaskKind::Classification, SplitRule::CarveValidation,
            { "id", "qid1", "qid2", "question1", "question2", "is_duplicate" }, { "question1", "question2" },
            "is_duplicate", "id", 0, {}, 0, { "question1:", "question2:" }, { "question1", "question2" },
            { "0", "1" }, { "not_duplicate", "duplicate" }, { kAccuracy, kF1, kAccuracyF1 }, kAccuracyF1 },
        { GlueTask::STSB, "stsb", "STS-B", TaskKind::Regression, SplitRule::HalveDev,
            { "index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
                "sentence2", "score" },
            { "sentence1", "sentence2" }, "score", "index", 0, {}, 0, { "sentence1:", "sentence2:" },
            { "sentence1", "sentence2" }, {}, {}, { kPearson, kSpearman, kPearsonSpearman },
            kPearsonSpearman },
        // MNLI: the reference writes "hypothesis" without a colon; kept so inputs equal the reference's.
        { GlueTask::MNLI, "mnli", "MNLI", TaskKind::Classification, SplitRule::Mnli,
            { "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                "sentence1_parse", "sentence2_parse", "sentence1", "sentence2" },
            { "sentence1", "sentence2" }, "gold_label", "index", 0, {}, 0, { "premise:", "hypothesis" },
            { "premise", "hypothesis" }, { "entailment", "neutral", "contradiction" },
            { "entailment", "neutral", "contradiction" }, { kAccuracy }, kAccuracy },
        { GlueTask::QNLI, "qnli", "QNLI", TaskKind::Classification, SplitRule::CarveValidation,
            { "index", "question", "sentence", "label" }, { "question", "sentence" }, "label", "index", 0, {},
            0, { "question:", "sentence:" }, { "question", "sentence" }, { "entailment", "not_entailment" },
            { "entailment", "not_entailment" }, { kAccuracy }, kAccuracy },
        { GlueTask::RTE, "rte", "RTE", TaskKind::Classification, SplitRule::HalveDev,
            { "index", "sentence1", "sentence2", "label" }, { "sentence1", "sentence2" }, "label", "index", 0,
            {}, 0, { "sentence1:", "sentence2:" }, { "sentence1", "sentence2" },
            { "entailment", "not_entailment" }, { "entailment", "not_entailment" }, { kAccuracy },
            kAccuracy },
    };
    return table;
}

const GlueSpec& specOf(GlueTask task)
{
    for (const auto& spec : specs()) {
        if (spec.task == task)
            return spec;
    }
    throw Error("unknown GLUE task id");
}

// Lower case, letters and digits only: "SST-2" -> "sst2".
std::string normalized(const std::string& name)
{
    std::string out;
    for (const char c : name) {
        if (std::isalnum(static_cast<unsigned char>(c)))
            out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    return out;
}

std::string joined(const std::vector<std::string>& items, const std::string& separator)
{
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i)
        out += (i ? separator : "") + items[i];
    return out;
}

std::string quotedList(const std::vector<std::string>& items)
{
    std::vector<std::string> quoted;
    for (const auto& item : items)
        quoted.push_back("'" + item + "'");
    return joined(quoted, ", ");
}

// Up to `maxLines` rows from the start of a file (BOM removed), for detection; empty when unreadable.
std::vector<TableRow> headRows(const std::string& path, std::size_t maxLines)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return {};
    std::string text(64 * 1024, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (text.rfind("\xef\xbb\xbf", 0) == 0)
        text.erase(0, 3);
    auto rows = TextTable::splitTsv(text);
    if (rows.size() > maxLines)
        rows.resize(maxLines);
    return rows;
}

bool isBinaryLabel(const std::string& s)
{
    return s == "0" || s == "1";
}

std::string describeLine(const std::vector<std::string>& fields)
{
    std::string line = joined(fields, "\\t");
    if (line.size() > 80)
        line = line.substr(0, 77) + "...";
    return "'" + line + "'";
}

std::vector<TextExample> pick(const std::vector<TextExample>& examples, const std::vector<std::size_t>& order,
    std::size_t begin, std::size_t end)
{
    std::vector<TextExample> out;
    out.reserve(end - begin);
    for (std::size_t i = begin; i < end; ++i)
        out.push_back(examples[order[i]]);
    return out;
}

} // namespace

GlueTask GlueTasks::parseName(const std::string& name)
{
    const std::string key = normalized(name);
    for (const auto& spec : specs()) {
        if (key == spec.name)
            return spec.task;
    }
    std::vector<std::string> names;
    for (const auto& spec : specs())
        names.push_back(spec.name);
    throw Error("unknown GLUE task '" + name + "'; expected one of " + joined(names, ", ") + " or auto");
}

const char* GlueTasks::name(GlueTask task)
{
    return specOf(task).name;
}

std::vector<GlueTask> GlueTasks::all()
{
    std::vector<GlueTask> tasks;
    for (const auto& spec : specs())
        tasks.push_back(spec.task);
    return tasks;
}

std::vector<std::pair<std::string, std::string>> GlueTasks::sourceFields(GlueTask task)
{
    const auto& spec = specOf(task);
    std::vector<std::pair<std::string, std::string>> fields;
    for (std::size_t k = 0; k < spec.fieldNames.size(); ++k)
        fields.emplace_back(spec.fieldNames[k], spec.keywords[k]);
    return fields;
}

TaskInfo GlueTasks::info(GlueTask task)
{
    const auto& spec = specOf(task);
    TaskInfo info;
    info.name = spec.name;
    info.displayName = spec.display;
    info.kind = spec.kind;
    if (spec.kind == TaskKind::Classification) {
        for (std::size_t i = 0; i < spec.fileLabels.size(); ++i)
            info.labels.push_back(std::to_string(i));
        info.labelNames = spec.labelNames;
    } else {
        // The reference's STSB.labels_list: 0.0, 0.2, ..., 5.0.
        for (int i = 0; i <= 25; ++i)
            info.labels.push_back(formatScoreTarget(0.2 * i, 1));
    }
    info.metrics = spec.metrics;
    info.mainMetric = spec.mainMetric;
    return info;
}

GlueTask GlueTasks::detect(const std::string& folder)
{
    std::error_code ec;
    if (!fs::is_directory(folder, ec))
        throw Error(folder + ": not a folder; expected a GLUE task folder (train.tsv, dev.tsv)");
    const fs::path dir(folder);
    if (fs::exists(dir / "dev_matched.tsv", ec) || fs::exists(dir / "dev_mismatched.tsv", ec))
        return GlueTask::MNLI;

    std::string probe;
    for (const char* file : { "dev.tsv", "train.tsv" }) {
        if (fs::is_regular_file(dir / file, ec)) {
            probe = (dir / file).string();
            break;
        }
    }
    if (!probe.empty()) {
        const auto rows = headRows(probe, 2);
        if (!rows.empty()) {
            const auto& first = rows[0].fields;
            for (const auto& spec : specs()) {
                if (!spec.header.empty() && first.size() >= spec.header.size()
                    && std::equal(spec.header.begin(), spec.header.end(), first.begin())) {
                    if (spec.task == GlueTask::RTE && rows.size() > 1 && rows[1].fields.size() == 4
                        && isBinaryLabel(rows[1].fields[3]))
                        throw Error(probe
                            + ": looks like WNLI (RTE's layout with 0/1 labels); WNLI is not "
                              "supported (the paper leaves it out)");
                    return spec.task;
                }
            }
            if (first.size() == 4 && isBinaryLabel(first[1]))
                return GlueTask::CoLA;
        }
    }
    // The files did not tell: try the folder's name ("RTE", "SST-2", "glue_data/CoLA").
    const std::string folderName = normalized(
        dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string());
    for (const auto& spec : specs()) {
        if (folderName == spec.name)
            return spec.task;
    }
    if (probe.empty())
        throw Error(
            folder + ": no dev.tsv or train.tsv; expected a GLUE task folder in the original TSV layout");
    const auto rows = headRows(probe, 1);
    throw Error(probe + ": cannot tell which GLUE task this is (first line "
        + (rows.empty() ? std::string("empty") : describeLine(rows[0].fields))
        + "); pass the task name (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte)");
}

std::vector<TextExample> GlueTasks::readFile(
    GlueTask task, const std::string& path, const std::string& setName)
{
    const auto& spec = specOf(task);
    const auto rows = TextTable::splitTsv(TextTable::readFile(path));
    if (rows.empty())
        throw Error(path + ": file is empty; expected " + spec.display + " rows");

    std::size_t fieldCount = spec.fixedFieldCount;
    std::vector<std::size_t> textPositions = spec.fixedTextPositions;
    std::size_t labelPosition = spec.fixedLabelPosition;
    std::size_t idPosition = 0;
    bool idFromColumn = false;
    std::size_t firstData = 0;
    std::vector<std::string> columnNames; // for messages

    if (spec.header.empty()) {
        // CoLA: no header in train/dev; tolerate one (a file re-saved with column names) when its label
        // field is not a label. Its test.tsv ("index\tsentence") has no labels at all.
        const auto& first = rows[0].fields;
        if (first.size() == 2 && first[0] == "index")
            throw Error(path + ":" + std::to_string(rows[0].line) + ": this is " + spec.display
                + "'s unlabelled test file; expected the labelled train or dev file (4 fields: source, "
                  "label, "
                  "original label, sentence)");
        auto lower = [](std::string text) {
            std::transform(text.begin(), text.end(), text.begin(),
                [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            return text;
        };
        if (first.size() == fieldCount && lower(first[labelPosition]) == "label"
            && lower(first[textPositions[0]]) == "sentence")
            firstData = 1;
        columnNames = { "source", "label", "original label", "sentence" };
    } else {
        const auto& header = rows[0].fields;
        auto position = [&](const std::string& column) -> std::size_t {
            const auto it = std::find(header.begin(), header.end(), column);
            if (it == header.end()) {
                std::vector<std::string> needed = spec.textColumns;
                needed.push_back(spec.labelColumn);
                throw Error(path + ":" + std::to_string(rows[0].line) + ": column '" + column
                    + "' is missing; expected " + "a header line with the columns " + quotedList(needed)
                    + " of a labelled " + spec.display + " file (GLUE's test files have no labels), found "
                    + describeLine(header));
            }
            return static_cast<std::size_t>(it - header.begin());
        };
        textPositions.clear();
        for (const auto& column : spec.textColumns)
            textPositions.push_back(position(column));
        labelPosition = position(spec.labelColumn);
        if (!spec.idColumn.empty()) {
            const auto it = std::find(header.begin(), header.end(), spec.idColumn);
            if (it != header.end()) {
                idPosition = static_cast<std::size_t>(it - header.begin());
                idFromColumn = true;
            }
        }
        fieldCount = header.size();
        columnNames = header;
        firstData = 1;
    }
    if (rows.size() <= firstData)
        throw Error(path + ": no data rows after the header; expected " + spec.display + " rows");

    const std::string display = spec.display;
    std::vector<TextExample> examples;
    examples.reserve(rows.size() - firstData);
    for (std::size_t r = firstData; r < rows.size(); ++r) {
        const auto& row = rows[r];
        const std::string where = path + ":" + std::to_string(row.line) + ": ";
        if (row.fields.size() != fieldCount)
            throw Error(where + "expected " + std::to_string(fieldCount) + " tab-separated fields ("
                + joined(columnNames, ", ") + "), found " + std::to_string(row.fields.size()));
        TextExample ex;
        ex.id = setName + "-" + (idFromColumn ? row.fields[idPosition] : std::to_string(row.line - 1));
        ex.source = spec.name;
        for (std::size_t k = 0; k < textPositions.size(); ++k) {
            const std::string& text = row.fields[textPositions[k]];
            ex.fields.emplace_back(spec.fieldNames[k], text);
            // ' '.join([prefix, keyword1, text1, keyword2, text2]) as the reference does.
            ex.source += " " + spec.keywords[k] + " " + text;
        }
        ex.label = row.fields[labelPosition];
        if (spec.kind == TaskKind::Classification) {
            const auto it = std::find(spec.fileLabels.begin(), spec.fileLabels.end(), ex.label);
            if (it == spec.fileLabels.end())
                throw Error(where + "unknown label '" + ex.label + "' for " + display + "; expected one of "
                    + quotedList(spec.fileLabels));
            ex.labelIndex = static_cast<int>(it - spec.fileLabels.begin());
            ex.target = std::to_string(ex.labelIndex);
        } else {
            double score = 0;
            if (!Metrics::parseScore(ex.label, score))
                throw Error(where + "score '" + ex.label
                    + "' is not a number; expected a similarity score "
                      "such as 3.800 in the last column");
            ex.score = score;
            ex.target = formatScoreTarget(score, 1);
        }
        examples.push_back(std::move(ex));
    }
    return examples;
}

TaskSplits GlueTasks::load(const std::string& folder, const GlueLoadOptions& options)
{
    const GlueTask task = normalized(options.task) == "auto" || options.task.empty()
        ? detect(folder)
        : parseName(options.task);
    const auto& spec = specOf(task);
    const fs::path dir(folder);
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw Error(folder + ": not a folder; expected a GLUE task folder (train.tsv, dev.tsv)");

    TaskSplits splits;
    splits.info = info(task);
    const std::string seedText = std::to_string(options.dataSeed);

    const std::string trainPath = (dir / "train.tsv").string();
    const bool haveTrain = fs::exists(trainPath, ec);
    if (!haveTrain && options.requireTrain)
        throw Error(trainPath + ": file not found; training needs " + spec.display
            + "'s train.tsv (to load the evaluation splits of a dev-only folder, set requireTrain to false)");
    std::vector<TextExample> train;
    if (haveTrain)
        train = readFile(task, trainPath, "train");
    else
        splits.notes.push_back("train: empty (no train.tsv in " + folder + ")");

    switch (spec.rule) {
    case SplitRule::HalveDev: {
        const std::string devPath = (dir / "dev.tsv").string();
        const auto dev = readFile(task, devPath, "dev");
        if (dev.size() < 2)
            throw Error(devPath + ": " + std::to_string(dev.size())
                + " data row; expected at least 2 to halve into validation and test");
        const auto order = randomPermutation(dev.size(), options.dataSeed);
        const std::size_t half = dev.size() / 2;
        splits.validation = pick(dev, order, 0, half);
        splits.test = pick(dev, order, half, dev.size());
        splits.train = std::move(train);
        if (haveTrain)
            splits.notes.push_back("train: train.tsv (" + std::to_string(splits.train.size()) + " rows)");
        splits.notes.push_back("validation: the first " + std::to_string(half) + " of dev.tsv's "
            + std::to_string(dev.size()) + " rows shuffled with seed " + seedText);
        splits.notes.push_back("test: the other " + std::to_string(dev.size() - half) + " rows of dev.tsv");
        break;
    }
    case SplitRule::CarveValidation: {
        const std::string devPath = (dir / "dev.tsv").string();
        splits.test = readFile(task, devPath, "dev");
        if (haveTrain) {
            const std::size_t carve = options.largeValidationSize;
            if (train.size() <= carve)
                throw Error(trainPath + ": " + std::to_string(train.size())
                    + " data rows; the paper's split gives " + std::to_string(carve)
                    + " of them to validation and trains on the rest, so expected more than "
                    + std::to_string(carve));
            const auto order = randomPermutation(train.size(), options.dataSeed);
            splits.validation = pick(train, order, 0, carve);
            splits.train = pick(train, order, carve, train.size());
            splits.notes.push_back("validation: the first " + std::to_string(carve) + " of train.tsv's "
                + std::to_string(train.size()) + " rows shuffled with seed " + seedText);
            splits.notes.push_back("train: the other " + std::to_string(splits.train.size())
                + " rows of train.tsv, in that shuffled order");
        } else {
            splits.notes.push_back("validation: empty (it is carved out of train.tsv, which is missing)");
        }
        splits.notes.push_back("test: dev.tsv (" + std::to_string(splits.test.size()) + " rows)");
        break;
    }
    case SplitRule::Mnli: {
        splits.validation = readFile(task, (dir / "dev_mismatched.tsv").string(), "dev_mismatched");
        splits.test = readFile(task, (dir / "dev_matched.tsv").string(), "dev_matched");
        splits.train = std::move(train);
        if (haveTrain)
            splits.notes.push_back("train: train.tsv (" + std::to_string(splits.train.size()) + " rows)");
        splits.notes.push_back(
            "validation: dev_mismatched.tsv (" + std::to_string(splits.validation.size()) + " rows)");
        splits.notes.push_back("test: dev_matched.tsv (" + std::to_string(splits.test.size()) + " rows)");
        break;
    }
    }
    return splits;
}

TaskSplits loadGlueTask(const std::string& folder, const std::string& taskName, std::uint64_t dataSeed)
{
    GlueLoadOptions options;
    options.task = taskName;
    options.dataSeed = dataSeed;
    return GlueTasks::load(folder, options);
}

} // namespace ladder
