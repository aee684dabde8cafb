#include "export/Predict.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include "data/Batcher.h"
#include "data/TextTable.h"
#include "export/RunModel.h"
#include "model/Generation.h"
#include "model/T5Tokenizer.h"
#include "train/Autocast.h"
#include "train/TrainerSteps.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
using nlohmann::json;

namespace {

std::string lower(std::string s)
{
    std::transform(
        s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string extensionOf(const std::string& path)
{
    const auto slash = path.find_last_of('/');
    const auto dot = path.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
        return "";
    return lower(path.substr(dot + 1));
}

// Which column of a record gives each of the task's fields: the field's own name, and for a task of one
// field the other names a user is likely to use.
struct ColumnRule {
    const TaskFormat& format;
    std::string textColumn;

    // Candidates for field k, in order.
    std::vector<std::string> candidates(std::size_t k) const
    {
        if (format.fields.size() != 1)
            return { format.fields[k].first };
        if (!textColumn.empty())
            return { textColumn };
        std::vector<std::string> names;
        for (const auto& name : { format.fields[0].first, std::string("input"), std::string("text") })
            if (std::find(names.begin(), names.end(), name) == names.end())
                names.push_back(name);
        return names;
    }
    std::string missing(std::size_t k) const
    {
        const auto names = candidates(k);
        std::string what = "field " + names[0] + ": missing";
        if (names.size() > 1) {
            what = "field " + format.fields[k].first + ": missing (looked for ";
            for (std::size_t i = 0; i < names.size(); ++i)
                what += (i ? (i + 1 == names.size() ? " and " : ", ") : "") + names[i];
            what += "; --text-column names another)";
        } else if (format.fields.size() > 1) {
            what += " (task " + format.name + " reads " + format.fieldList() + ")";
        } else if (!textColumn.empty()) {
            what += " (--text-column " + textColumn + ")";
        }
        return what;
    }
};

// One JSONL line: an object with string text fields.
PredictInput jsonlInput(
    const std::string& text, std::size_t line, const ColumnRule& rule, const std::string& where)
{
    json j;
    try {
        j = parseJson(text, where);
    } catch (const Error& e) {
        throw Error(e.what());
    }
    if (!j.is_object())
        throw Error(where + ": expected a JSON object, got " + brief(j));
    PredictInput input;
    input.line = line;
    std::vector<std::string> texts;
    for (std::size_t k = 0; k < rule.format.fields.size(); ++k) {
        const json* found = nullptr;
        std::string column;
        for (const auto& name : rule.candidates(k))
            if (j.contains(name)) {
                found = &j.at(name);
                column = name;
                break;
            }
        if (!found)
            throw Error(where + ": " + rule.missing(k));
        if (!found->is_string())
            throw Error(where + ": field " + column + ": expected a string, got " + brief(*found));
        texts.push_back(found->get<std::string>());
    }
    if (j.contains("id")) {
        const auto& id = j.at("id");
        if (!id.is_string() && !id.is_number_integer())
            throw Error(where + ": field id: expected a string or an integer, got " + brief(id));
        input.id = id;
    } else {
        input.id = static_cast<std::int64_t>(line);
    }
    input.source = rule.format.formatSource(texts);
    return input;
}

void readJsonl(const std::string& path, const std::string& text, const ColumnRule& rule, PredictInputs* out)
{
    const auto name = TextTable::baseName(path);
    std::size_t line = 0;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        std::string content = text.substr(start, end - start);
        start = end + 1;
        ++line;
        if (!content.empty() && content.back() == '\r')
            content.pop_back();
        if (content.find_first_not_of(" \t") == std::string::npos)
            continue;
        const auto where = name + ":" + std::to_string(line);
        try {
            out->inputs.push_back(jsonlInput(content, line, rule, where));
        } catch (const Error& e) {
            out->error = e.what();
            return;
        }
    }
}

void readTable(
    const std::string& path, const std::string& text, bool tsv, const ColumnRule& rule, PredictInputs* out)
{
    const auto name = TextTable::baseName(path);
    const auto rows = tsv ? TextTable::splitTsv(text) : TextTable::splitCsv(text, name);
    if (rows.empty())
        throw Error(name + ": no header row (expected the column names, then one input per line)");
    const auto& header = rows[0].fields;
    auto columnOf = [&](const std::string& column) -> int {
        const auto it = std::find(header.begin(), header.end(), column);
        return it == header.end() ? -1 : static_cast<int>(it - header.begin());
    };
    std::vector<int> positions;
    for (std::size_t k = 0; k < rule.format.fields.size(); ++k) {
        int position = -1;
        for (const auto& candidate : rule.candidates(k))
            if ((position = columnOf(candidate)) >= 0)
                break;
        if (position < 0) {
            std::string columns;
            for (const auto& h : header)
                columns += (columns.empty() ? "" : ", ") + h;
            throw Error(name + ":" + std::to_string(rows[0].line) + ": header: " + rule.missing(k)
                + "; the header has " + columns);
        }
        positions.push_back(position);
    }
    const int idPosition = columnOf("id");
    for (std::size_t r = 1; r < rows.size(); ++r) {
        const auto& row = rows[r];
        if (row.fields.size() != header.size()) {
            out->error = name + ":" + std::to_string(row.line) + ": expected " + std::to_string(header.size())
                + (tsv ? " tab-separated" : " comma-separated") + " fields as the header has, found "
                + std::to_string(row.fields.size());
            return;
        }
        PredictInput input;
        input.line = row.line;
        input.id = idPosition >= 0 ? json(row.fields[static_cast<std::size_t>(idPosition)])
                                   : json(static_cast<std::int64_t>(row.line));
        std::vector<std::string> texts;
        for (const int p : positions)
            texts.push_back(row.fields[static_cast<std::size_t>(p)]);
        input.source = rule.format.formatSource(texts);
        out->inputs.push_back(std::move(input));
    }
}

} // namespace

PredictInputs readPredictInputs(
    const std::string& path, const TaskFormat& format, const std::string& textColumn)
{
    if (format.fields.empty())
        throw Error("task " + format.name + ": no text fields");
    if (!textColumn.empty() && format.fields.size() != 1)
        throw Error("--text-column " + textColumn + ": task " + format.name + " reads "
            + std::to_string(format.fields.size()) + " text fields (" + format.fieldList()
            + "); give each as a field or column of that name");
    const auto ext = extensionOf(path);
    const bool jsonl = ext == "jsonl" || ext == "ndjson" || ext == "json";
    const bool tsv = ext == "tsv" || ext == "tab";
    if (!jsonl && !tsv && ext != "csv")
        throw Error(path + ": unknown input format '." + ext + "' (expected .jsonl, .tsv or .csv)");
    const auto text
        = TextTable::readFile(path, jsonl ? "one JSON object per line" : "a header row and inputs");
    const ColumnRule rule { format, textColumn };
    PredictInputs out;
    if (jsonl)
        readJsonl(path, text, rule, &out);
    else
        readTable(path, text, tsv, rule, &out);
    return out;
}

std::vector<Prediction> predictBatch(
    LoadedRun& run, const TaskFormat& format, const std::vector<std::string>& sources, std::int64_t numBeams)
{
    if (sources.empty())
        return {};
    std::vector<TextExample> examples(sources.size());
    for (std::size_t i = 0; i < sources.size(); ++i)
        examples[i].source = sources[i];
    BatcherOptions bo;
    bo.batchSize = static_cast<int>(sources.size());
    bo.maxSourceLength = static_cast<int>(format.maxSourceLength);
    bo.maxTargetLength = static_cast<int>(format.maxNewTokens);
    const Batcher batcher(*run.tokenizer, examples, bo);
    std::vector<std::size_t> indices(sources.size());
    for (std::size_t i = 0; i < indices.size(); ++i)
        indices[i] = i;
    const auto batch = batcher.makeBatch(indices);

    auto gen = generationOptionsFor(*run.backbone, *run.tokenizer);
    gen.numBeams = numBeams > 0 ? numBeams : format.numBeams;
    gen.maxNewTokens = format.maxNewTokens;
    gen.outputScores = true;
    const c10::Device device(run.device);
    GenerationResult result;
    {
        at::NoGradGuard noGrad;
        AutocastGuard amp(run.spec.training.dtype == "bf16", device.type());
        auto stepper = run.method->makeStepper();
        result
            = generate(*stepper, batch.batch.inputIds.to(device), batch.batch.attentionMask.to(device), gen);
    }
    const auto seq = result.sequences.contiguous();
    std::vector<Prediction> out(sources.size());
    for (std::int64_t r = 0; r < seq.size(0); ++r) {
        const auto* row = seq[r].data_ptr<std::int64_t>();
        auto& p = out[batch.indices[static_cast<std::size_t>(r)]];
        std::vector<std::int64_t> ids(row, row + seq.size(1));
        // Column 0 is the start token (T5's decoder start, a decoder's last prompt token).
        p.text = run.tokenizer->decode(std::vector<std::int64_t>(ids.begin() + 1, ids.end()), true);
        for (std::size_t t = 1; t < ids.size(); ++t) { // after the decoder start, through </s>
            p.ids.push_back(ids[t]);
            if (ids[t] == gen.eosTokenId)
                break;
        }
        p.score = result.sequenceScores.at(static_cast<std::size_t>(r));
    }
    return out;
}

json predictionLine(const PredictInput& input, const Prediction& prediction)
{
    return { { "id", input.id }, { "input", input.source }, { "prediction", prediction.text },
        { "score", std::isfinite(prediction.score) ? json(prediction.score) : json(nullptr) } };
}

std::int64_t predictToFile(LoadedRun& run, const TaskFormat& format, const PredictOptions& options,
    const std::function<bool(std::int64_t done, std::int64_t total)>& progress)
{
    if (options.batchSize < 1 || options.batchSize > 65536)
        throw Error("--batch: expected an integer from 1 to 65536, got " + std::to_string(options.batchSize));
    if (options.numBeams < 0 || options.numBeams > 64)
        throw Error("--num-beams: expected an integer from 1 to 64, got " + std::to_string(options.numBeams));
    const auto read = readPredictInputs(options.inputsPath, format, options.textColumn);
    std::ofstream out(options.outPath, std::ios::binary | std::ios::trunc);
    if (!out)
        throw Error(options.outPath + ": cannot open for writing");
    const auto total = static_cast<std::int64_t>(read.inputs.size());
    std::int64_t written = 0;
    for (std::int64_t first = 0; first < total; first += options.batchSize) {
        const auto count = std::min(options.batchSize, total - first);
        std::vector<std::string> sources;
        for (std::int64_t i = first; i < first + count; ++i)
            sources.push_back(read.inputs[static_cast<std::size_t>(i)].source);
        const auto predictions = predictBatch(run, format, sources, options.numBeams);
        for (std::int64_t i = 0; i < count; ++i)
            out << predictionLine(
                read.inputs[static_cast<std::size_t>(first + i)], predictions[static_cast<std::size_t>(i)])
                       .dump()
                << "\n";
        out.flush();
        if (!out)
            throw Error(options.outPath + ": write failed after " + std::to_string(written) + " lines");
        written += count;
        if (progress && !progress(written, total))
            return written;
    }
    if (!read.error.empty())
        throw Error(read.error + " (the " + std::to_string(written) + " lines before it are in "
            + options.outPath + ")");
    return written;
}

} // namespace ladder
