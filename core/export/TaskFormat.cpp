#include "export/TaskFormat.h"

#include <filesystem>

#include "data/Batcher.h"
#include "data/GlueTasks.h"
#include "data/PromptTemplate.h"
#include "data/Task.h"
#include "train/DemoPaths.h"
#include "train/RunSpec.h"
#include "train/TaskLoad.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace fs = std::filesystem;
using nlohmann::json;

std::string TaskFormat::formatSource(const std::vector<std::string>& texts) const
{
    if (texts.size() != fields.size())
        throw Error("task " + name + " reads " + std::to_string(fields.size()) + " text fields ("
            + fieldList() + "), got " + std::to_string(texts.size()));
    if (!promptTemplate.empty()) {
        TextExample example;
        for (std::size_t k = 0; k < fields.size(); ++k)
            example.fields.emplace_back(fields[k].first, texts[k]);
        example.id = "input";
        return renderPromptTemplate(promptTemplate, example, "task " + name + " prompt_template");
    }
    std::string source = prefix;
    for (std::size_t k = 0; k < fields.size(); ++k)
        source += (source.empty() ? "" : " ") + fields[k].second + " " + texts[k];
    return source;
}

std::string TaskFormat::fieldList() const
{
    std::string list;
    for (const auto& f : fields)
        list += (list.empty() ? "" : ", ") + f.first;
    return list;
}

json TaskFormat::toJson() const
{
    json fieldsJson = json::array();
    for (const auto& [field, keyword] : fields)
        fieldsJson.push_back({ { "name", field }, { "keyword", keyword } });
    json out { { "type", type }, { "name", name }, { "kind", kind }, { "prefix", prefix },
        { "fields", fieldsJson }, { "labels", labels }, { "label_names", labelNames },
        { "max_source_length", maxSourceLength }, { "max_new_tokens", maxNewTokens },
        { "num_beams", numBeams } };
    if (!promptTemplate.empty())
        out["prompt_template"] = promptTemplate; // only decoder runs: T5 bundles stay byte-identical
    return out;
}

TaskFormat TaskFormat::fromJson(const json& j, const std::string& source)
{
    if (!j.is_object())
        throw Error(source + ": expected a JSON object");
    auto text = [&](const char* key) {
        if (!j.contains(key) || !j.at(key).is_string())
            throw Error(source + ": field " + key + ": expected a string"
                + (j.contains(key) ? ", got " + brief(j.at(key)) : " (missing)"));
        return j.at(key).get<std::string>();
    };
    auto count = [&](const char* key, std::int64_t minimum) {
        if (!j.contains(key) || !j.at(key).is_number_integer() || j.at(key).get<std::int64_t>() < minimum
            || j.at(key).get<std::int64_t>() > 65536)
            throw Error(source + ": field " + key + ": expected an integer from " + std::to_string(minimum)
                + " to 65536" + (j.contains(key) ? ", got " + brief(j.at(key)) : " (missing)"));
        return j.at(key).get<std::int64_t>();
    };
    auto strings = [&](const char* key) {
        std::vector<std::string> out;
        if (!j.contains(key) || !j.at(key).is_array())
            throw Error(source + ": field " + key + ": expected an array of strings"
                + (j.contains(key) ? ", got " + brief(j.at(key)) : " (missing)"));
        for (const auto& v : j.at(key)) {
            if (!v.is_string())
                throw Error(source + ": field " + key + ": expected an array of strings, holds " + brief(v));
            out.push_back(v.get<std::string>());
        }
        return out;
    };
    TaskFormat f;
    f.type = text("type");
    f.name = text("name");
    f.kind = text("kind");
    if (f.kind != "classification" && f.kind != "regression")
        throw Error(
            source + ": field kind: expected \"classification\" or \"regression\", got " + brief(j["kind"]));
    f.prefix = text("prefix");
    if (!j.contains("fields") || !j.at("fields").is_array() || j.at("fields").empty())
        throw Error(source + ": field fields: expected a non-empty array of {name, keyword}");
    for (const auto& field : j.at("fields")) {
        if (!field.is_object() || !field.contains("name") || !field["name"].is_string()
            || !field.contains("keyword") || !field["keyword"].is_string())
            throw Error(source + ": field fields: expected {\"name\": string, \"keyword\": string}, got "
                + brief(field));
        f.fields.emplace_back(field["name"].get<std::string>(), field["keyword"].get<std::string>());
    }
    f.labels = strings("labels");
    f.labelNames = strings("label_names");
    f.maxSourceLength = count("max_source_length", 1);
    f.maxNewTokens = count("max_new_tokens", 1);
    f.numBeams = count("num_beams", 1);
    if (j.contains("prompt_template")) {
        f.promptTemplate = text("prompt_template");
        std::vector<std::string> names;
        for (const auto& field : f.fields)
            names.push_back(field.first);
        validatePromptTemplate(f.promptTemplate, names, source + ": field prompt_template");
    }
    return f;
}

namespace {

// The GLUE task of a spec: its name, else the folder's files, else the store's task column.
GlueTask glueTaskOf(const RunSpec& spec, const std::string& recordedTask)
{
    if (spec.task.name != "auto")
        return GlueTasks::parseName(spec.task.name);
    try {
        return GlueTasks::detect(spec.task.path);
    } catch (const Error&) {
        if (recordedTask.empty())
            throw;
        return GlueTasks::parseName(recordedTask);
    }
}

} // namespace

namespace {
TaskFormat taskFormatOf(
    const RunSpec& spec, const std::string& recordedTask, const Tokenizer& tokenizer, std::string* note);
} // namespace

TaskFormat taskFormatFor(const RunSpec& spec, const std::string& recordedTask, const Tokenizer& tokenizer,
    std::string* note, bool causal)
{
    auto f = taskFormatOf(spec, recordedTask, tokenizer, note);
    if (causal) {
        std::vector<std::string> names;
        for (const auto& field : f.fields)
            names.push_back(field.first);
        TaskInfo info;
        info.name = f.name;
        f.promptTemplate = spec.task.generic.value("prompt_template", std::string());
        if (f.promptTemplate.empty())
            f.promptTemplate = defaultPromptTemplate(info, names);
        validatePromptTemplate(f.promptTemplate, names, "run spec task.prompt_template");
    }
    return f;
}

namespace {
TaskFormat taskFormatOf(
    const RunSpec& spec, const std::string& recordedTask, const Tokenizer& tokenizer, std::string* note)
{
    TaskFormat f;
    f.type = spec.task.type;
    const auto& g = spec.task.generic;
    const auto& o = spec.training;
    f.maxSourceLength = o.maxSourceLength;
    f.numBeams = o.numBeams;
    if (spec.task.type == "glue") { // everything is in GLUE's table: no data needed
        const auto task = glueTaskOf(spec, recordedTask);
        const auto info = GlueTasks::info(task);
        f.name = GlueTasks::name(task);
        f.prefix = f.name;
        f.fields = GlueTasks::sourceFields(task);
        f.kind = info.kind == TaskKind::Regression ? "regression" : "classification";
        f.labels = info.labels;
        f.labelNames = info.labelNames;
        f.maxNewTokens
            = o.maxTargetLength > 0 ? o.maxTargetLength : Batcher::targetLengthFor(info, tokenizer, 128);
        return f;
    }
    if (spec.task.type == "demo") {
        // A demo task is read as a generic JSONL task described by its task.json (train/TaskLoad.cpp).
        const auto dir
            = fs::path(spec.task.path.empty() ? demoTasksDirectory() : spec.task.path) / spec.task.name;
        const auto descPath = (dir / "task.json").string();
        const auto desc = readJsonFile(descPath, "a demo task's task.json");
        if (!desc.is_object())
            throw Error(descPath + ": expected a JSON object");
        f.name = desc.value("name", spec.task.name);
        f.prefix = f.name;
        for (const auto& column : desc.value("text_columns", std::vector<std::string> { "text" }))
            f.fields.emplace_back(column, column + ":");
    } else {
        f.name = spec.task.name == "auto" ? std::string("task") : spec.task.name;
        f.prefix = f.name;
        std::vector<std::string> columns { "text" };
        if (g.contains("text_columns") && g.at("text_columns").is_array())
            columns = g.at("text_columns").get<std::vector<std::string>>();
        for (const auto& column : columns)
            f.fields.emplace_back(column, column + ":");
        if (g.contains("kind") && g.at("kind") == "regression")
            f.kind = "regression";
    }

    try {
        const auto splits = loadTaskSplits(spec.task);
        f.labels = splits.info.labels;
        f.labelNames = splits.info.labelNames;
        f.maxNewTokens = o.maxTargetLength > 0 ? o.maxTargetLength
                                               : Batcher::targetLengthFor(splits.info, tokenizer, 128);
    } catch (const std::exception& e) {
        f.maxNewTokens = o.maxTargetLength > 0 ? o.maxTargetLength : 128;
        if (note)
            *note = "the task's data could not be read (" + oneLine(e.what(), 200)
                + "): no labels recorded, and at most " + std::to_string(f.maxNewTokens)
                + " tokens are generated";
    }
    return f;
}
} // namespace

} // namespace ladder
