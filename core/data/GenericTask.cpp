#include "data/GenericTask.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "data/Metrics.h"
#include "data/Permutation.h"
#include "data/TextTable.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {

namespace {

enum class Format { Jsonl, Csv, Tsv };

std::string lower(std::string text)
{
    std::transform(text.begin(), text.end(), text.begin(),
        [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

std::string stripped(const std::string& text)
{
    const auto begin = text.find_first_not_of(" \t\r\n\v\f");
    if (begin == std::string::npos)
        return {};
    const auto end = text.find_last_not_of(" \t\r\n\v\f");
    return text.substr(begin, end - begin + 1);
}

std::string quotedList(const std::vector<std::string>& items, std::size_t limit = 12)
{
    std::string out;
    for (std::size_t i = 0; i < items.size() && i < limit; ++i)
        out += (i ? ", '" : "'") + items[i] + "'";
    if (items.size() > limit)
        out += ", ... (" + std::to_string(items.size()) + " in all)";
    return out;
}

Format formatOf(const std::string& path, const std::string& format)
{
    const std::string f = lower(format);
    if (f == "jsonl" || f == "json" || f == "ndjson")
        return Format::Jsonl;
    if (f == "csv")
        return Format::Csv;
    if (f == "tsv")
        return Format::Tsv;
    if (f != "auto" && !f.empty())
        throw Error(path + ": unknown format '" + format + "'; expected auto, jsonl, csv or tsv");
    const auto dot = path.find_last_of('.');
    const std::string ext = dot == std::string::npos ? "" : lower(path.substr(dot + 1));
    if (ext == "jsonl" || ext == "json" || ext == "ndjson")
        return Format::Jsonl;
    if (ext == "csv")
        return Format::Csv;
    if (ext == "tsv" || ext == "tab")
        return Format::Tsv;
    throw Error(path + ": cannot tell the format from the extension '" + ext
        + "'; expected .jsonl, .json, .csv or .tsv, or set the format");
}

void addJsonObject(const nlohmann::json& object, GenericRecord& record)
{
    for (const auto& [key, value] : object.items()) {
        if (value.is_null())
            continue;
        if (value.is_string())
            record.columns.emplace_back(key, value.get<std::string>());
        else if (value.is_array() || value.is_object())
            record.structured.push_back(key);
        else
            record.columns.emplace_back(key, value.dump());
    }
}

std::vector<GenericRecord> readJson(const std::string& path, const std::string& text)
{
    std::vector<GenericRecord> records;
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '[') {
        // One JSON array of objects.
        nlohmann::json document;
        try {
            document = parseJson(text, path);
        } catch (const Error& e) {
            throw Error(
                std::string(e.what()) + "; expected one JSON object per line or one array of objects");
        }
        for (std::size_t i = 0; i < document.size(); ++i) {
            GenericRecord record;
            record.location = path + ": item " + std::to_string(i + 1);
            if (!document[i].is_object())
                throw Error(record.location + ": expected a JSON object with the task's columns, found a "
                    + document[i].type_name());
            addJsonObject(document[i], record);
            records.push_back(std::move(record));
        }
        return records;
    }
    std::size_t line = 0;
    std::size_t start = 0;
    while (start <= text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        ++line;
        const std::string content = text.substr(start, end - start);
        start = end + 1;
        if (stripped(content).empty()) {
            if (end == text.size())
                break;
            continue;
        }
        GenericRecord record;
        record.location = path + ":" + std::to_string(line);
        nlohmann::json object;
        try {
            object = parseJson(content, record.location);
        } catch (const Error& e) {
            throw Error(std::string(e.what()) + "; expected one JSON object on this line (JSON Lines)");
        }
        if (!object.is_object())
            throw Error(record.location + ": expected a JSON object with the task's columns, found a "
                + std::string(object.type_name()));
        addJsonObject(object, record);
        records.push_back(std::move(record));
        if (end == text.size())
            break;
    }
    return records;
}

std::vector<GenericRecord> readDelimited(const std::string& path, const std::string& text, Format format)
{
    const auto rows
        = format == Format::Csv ? TextTable::splitCsv(text, path, ',') : TextTable::splitTsv(text);
    if (rows.empty())
        throw Error(path + ": file is empty; expected a header line and data rows");
    const auto& header = rows[0].fields;
    std::set<std::string> seen;
    for (const auto& name : header) {
        if (!seen.insert(name).second)
            throw Error(path + ":" + std::to_string(rows[0].line) + ": column '" + name
                + "' appears twice in the header; expected distinct column names");
    }
    const char* const separator = format == Format::Csv ? "comma" : "tab";
    std::vector<GenericRecord> records;
    records.reserve(rows.size() - 1);
    for (std::size_t r = 1; r < rows.size(); ++r) {
        const auto& row = rows[r];
        GenericRecord record;
        record.location = path + ":" + std::to_string(row.line);
        if (row.fields.size() != header.size())
            throw Error(record.location + ": expected " + std::to_string(header.size()) + " " + separator
                + "-separated fields (" + quotedList(header) + "), found "
                + std::to_string(row.fields.size()));
        for (std::size_t k = 0; k < header.size(); ++k)
            record.columns.emplace_back(header[k], row.fields[k]);
        records.push_back(std::move(record));
    }
    return records;
}

const std::string& requireColumn(const GenericRecord& record, const std::string& column)
{
    if (std::find(record.structured.begin(), record.structured.end(), column) != record.structured.end())
        throw Error(record.location + ": column '" + column + "' holds an array or an object; expected text");
    const std::string* value = record.find(column);
    if (!value)
        throw Error(record.location + ": column '" + column + "' is missing");
    return *value;
}

void checkOptions(const GenericTaskOptions& o)
{
    if (o.path.empty())
        throw Error("generic task: no data file (path) given");
    if (o.textColumns.empty())
        throw Error("generic task: no text columns given; expected at least one (textColumns)");
    if (o.labelColumn.empty())
        throw Error("generic task: no label column given (labelColumn)");
    for (const auto& column : o.textColumns) {
        if (column == o.labelColumn)
            throw Error("generic task: column '" + column + "' is both a text column and the label column");
    }
    auto fraction = [](double f, const char* name) {
        if (!(f >= 0.0 && f < 1.0))
            throw Error(
                std::string("generic task: ") + name + " must be in [0, 1), got " + std::to_string(f));
    };
    fraction(o.validationFraction, "validationFraction");
    fraction(o.testFraction, "testFraction");
    if (o.validationPath.empty() && o.testPath.empty() && o.validationFraction + o.testFraction >= 1.0)
        throw Error(
            "generic task: validationFraction + testFraction must be below 1 to leave a training set");
    if (o.targetDecimals < 0 || o.targetDecimals > 9)
        throw Error(
            "generic task: targetDecimals must be in [0, 9], got " + std::to_string(o.targetDecimals));
}

} // namespace

const std::string* GenericRecord::find(const std::string& column) const
{
    for (const auto& [name, value] : columns) {
        if (name == column)
            return &value;
    }
    return nullptr;
}

std::vector<GenericRecord> readGenericRecords(const std::string& path, const std::string& format)
{
    const Format f = formatOf(path, format);
    const std::string text = f == Format::Jsonl
        ? TextTable::readFile(path, "one JSON object per line, or one JSON array of objects")
        : TextTable::readFile(path);
    auto records = f == Format::Jsonl ? readJson(path, text) : readDelimited(path, text, f);
    if (records.empty())
        throw Error(path + ": no data rows; expected at least one example");
    return records;
}

TaskSplits loadGenericTask(const GenericTaskOptions& options)
{
    checkOptions(options);
    const auto mainRecords = readGenericRecords(options.path, options.format);

    TaskSplits splits;
    TaskInfo& info = splits.info;
    info.name = options.taskName;
    info.displayName = options.taskName.empty() ? TextTable::baseName(options.path) : options.taskName;
    info.kind = options.kind;
    if (options.kind == TaskKind::Classification) {
        info.metrics = { metric::kAccuracy };
        info.mainMetric = metric::kAccuracy;
    } else {
        info.metrics = { metric::kPearson, metric::kSpearman, metric::kPearsonSpearman };
        info.mainMetric = metric::kPearsonSpearman;
    }

    // The label list.
    std::vector<std::string> labelStrings;
    if (options.kind == TaskKind::Classification) {
        if (!options.labels.empty()) {
            std::set<std::string> distinct;
            for (const auto& label : options.labels) {
                if (!distinct.insert(label).second)
                    throw Error("generic task: label '" + label + "' is listed twice");
            }
            labelStrings = options.labels;
        } else {
            for (const auto& record : mainRecords) {
                const std::string label = stripped(requireColumn(record, options.labelColumn));
                if (label.empty())
                    throw Error(record.location + ": column '" + options.labelColumn
                        + "' is empty; expected a label");
                if (std::find(labelStrings.begin(), labelStrings.end(), label) == labelStrings.end())
                    labelStrings.push_back(label);
            }
            if (options.labelOrder == GenericTaskOptions::LabelOrder::Sorted)
                std::sort(labelStrings.begin(), labelStrings.end());
        }
        for (std::size_t i = 0; i < labelStrings.size(); ++i)
            info.labels.push_back(options.labelTextTargets ? labelStrings[i] : std::to_string(i));
        info.labelNames = labelStrings;
    }

    const std::string mainName = TextTable::baseName(options.path);
    auto cast = [&](const GenericRecord& record) {
        TextExample ex;
        ex.id = record.location.substr(record.location.find_last_of('/') == std::string::npos
                ? 0
                : record.location.find_last_of('/') + 1);
        ex.source = options.taskName;
        for (const auto& column : options.textColumns) {
            const std::string& text = requireColumn(record, column);
            ex.fields.emplace_back(column, text);
            ex.source += (ex.source.empty() ? "" : " ") + column + ": " + text;
        }
        const std::string& raw = requireColumn(record, options.labelColumn);
        ex.label = stripped(raw);
        if (options.kind == TaskKind::Classification) {
            const auto it = std::find(labelStrings.begin(), labelStrings.end(), ex.label);
            if (it == labelStrings.end())
                throw Error(record.location + ": unknown label '" + ex.label + "' in column '"
                    + options.labelColumn + "'; "
                    + (options.labels.empty() ? "the labels of " + mainName + " are " : "expected one of ")
                    + quotedList(labelStrings));
            ex.labelIndex = static_cast<int>(it - labelStrings.begin());
            ex.target = info.labels[static_cast<std::size_t>(ex.labelIndex)];
        } else {
            double value = 0;
            if (!Metrics::parseScore(ex.label, value))
                throw Error(record.location + ": label '" + ex.label + "' in column '" + options.labelColumn
                    + "' is not a number; expected a number for a regression task");
            ex.score = value;
            ex.target = formatScoreTarget(value, options.targetDecimals);
        }
        return ex;
    };
    auto castAll = [&](const std::vector<GenericRecord>& records) {
        std::vector<TextExample> out;
        out.reserve(records.size());
        for (const auto& record : records)
            out.push_back(cast(record));
        return out;
    };

    const auto all = castAll(mainRecords);
    const std::size_t n = all.size();
    const std::size_t nValidation = options.validationPath.empty()
        ? static_cast<std::size_t>(std::llround(static_cast<double>(n) * options.validationFraction))
        : 0;
    const std::size_t nTest = options.testPath.empty()
        ? static_cast<std::size_t>(std::llround(static_cast<double>(n) * options.testFraction))
        : 0;
    if (nValidation + nTest >= n)
        throw Error(options.path + ": " + std::to_string(n) + " examples are too few to give "
            + std::to_string(nValidation) + " to validation and " + std::to_string(nTest)
            + " to test and keep a training set");

    const std::string seedText = std::to_string(options.seed);
    if (nValidation + nTest == 0 && !options.validationPath.empty() && !options.testPath.empty()) {
        splits.train = all;
        splits.notes.push_back("train: " + mainName + " (" + std::to_string(n) + " examples)");
    } else {
        const auto order = randomPermutation(n, options.seed);
        for (std::size_t i = 0; i < n; ++i) {
            const auto& ex = all[order[i]];
            if (i < nValidation)
                splits.validation.push_back(ex);
            else if (i < nValidation + nTest)
                splits.test.push_back(ex);
            else
                splits.train.push_back(ex);
        }
        splits.notes.push_back("train: " + std::to_string(splits.train.size()) + " of " + mainName + "'s "
            + std::to_string(n) + " examples shuffled with seed " + seedText);
        if (options.validationPath.empty())
            splits.notes.push_back(
                "validation: the first " + std::to_string(nValidation) + " of that shuffle");
        if (options.testPath.empty())
            splits.notes.push_back("test: the next " + std::to_string(nTest) + " of that shuffle");
    }
    if (!options.validationPath.empty()) {
        splits.validation = castAll(readGenericRecords(options.validationPath, options.format));
        splits.notes.push_back("validation: " + TextTable::baseName(options.validationPath) + " ("
            + std::to_string(splits.validation.size()) + " examples)");
    }
    if (!options.testPath.empty()) {
        splits.test = castAll(readGenericRecords(options.testPath, options.format));
        splits.notes.push_back("test: " + TextTable::baseName(options.testPath) + " ("
            + std::to_string(splits.test.size()) + " examples)");
    }
    return splits;
}

} // namespace ladder
