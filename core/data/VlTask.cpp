#include "data/VlTask.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "data/DemoTasks.h"
#include "data/TextTable.h"
#include "data/VisualFeatures.h"
#include "data/VlMetrics.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxVqaAnswers = 10; // VQA v2 has 10 human answers per question
constexpr std::int64_t kMaxVisualTokens = 4096;

const char* const kTypeList = "vqa, gqa, nlvr2 or caption";

std::string lowerAscii(std::string text)
{
    for (auto& c : text) {
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    }
    return text;
}

std::string quotedText(const std::string& text)
{
    return "'" + oneLine(text, 80) + "'";
}

std::string joined(const std::vector<std::string>& items, const std::string& separator = ", ")
{
    std::string out;
    for (const auto& item : items)
        out += (out.empty() ? "" : separator) + item;
    return out;
}

bool isSquare(std::int64_t n)
{
    if (n < 1)
        return false;
    auto s = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
    return s * s == n;
}

// One line of a split file, parsed.
struct JsonLine {
    std::string location; // "<path>:<line>"
    std::size_t line = 0;
    json object;
};

std::vector<JsonLine> readJsonLines(const std::string& path)
{
    const std::string text = TextTable::readFile(path, "one JSON object per line (JSON Lines)");
    std::vector<JsonLine> lines;
    std::size_t number = 0;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        ++number;
        const std::string content = text.substr(start, end - start);
        start = end + 1;
        if (stripAsciiSpace(content).empty())
            continue;
        JsonLine line;
        line.line = number;
        line.location = path + ":" + std::to_string(number);
        try {
            line.object = parseJson(content, line.location);
        } catch (const Error& e) {
            throw Error(std::string(e.what()) + "; expected one JSON object on this line (JSON Lines)");
        }
        if (!line.object.is_object())
            throw Error(line.location + ": expected a JSON object (one example), found a "
                + std::string(line.object.type_name()));
        lines.push_back(std::move(line));
    }
    return lines;
}

// A required non-empty text field.
std::string textField(const JsonLine& line, const char* key, const std::string& what)
{
    const auto it = line.object.find(key);
    if (it == line.object.end() || it->is_null())
        throw Error(line.location + ": field '" + key + "' is missing; expected " + what + " (a string)");
    if (!it->is_string() || stripAsciiSpace(it->get<std::string>()).empty())
        throw Error(line.location + ": field '" + key + "': expected " + what + ", a non-empty string, got "
            + brief(*it));
    return it->get<std::string>();
}

// What a split's lines become, and what the folder's files hold.
struct LoadContext {
    const VisualFeatureFile* features = nullptr;
    std::string featuresName; // as messages name it
    std::string defaultType; // the type of a line without "task"; empty: "task" is required
    std::set<std::string> keep; // empty: every type
};

struct SplitResult {
    std::vector<TextExample> examples;
    std::map<std::string, std::size_t> examplesPerType;
    std::map<std::string, std::size_t> linesPerType;
    std::size_t linesLeftOut = 0; // lines of types the filter leaves out
};

std::string lineType(const JsonLine& line, const LoadContext& context)
{
    const auto it = line.object.find("task");
    if (it == line.object.end() || it->is_null()) {
        if (!context.defaultType.empty())
            return context.defaultType;
        throw Error(line.location + ": field 'task' is missing; expected " + kTypeList
            + " (it may be left out only when the spec's \"tasks\" names one type, or task.json's \"task\" "
              "does)");
    }
    if (!it->is_string())
        throw Error(line.location + ": field 'task': expected " + kTypeList + ", got " + brief(*it));
    const std::string type = it->get<std::string>();
    if (!isVlTaskType(type))
        throw Error(line.location + ": unknown task " + quotedText(type) + "; expected " + kTypeList);
    return type;
}

std::string checkedImage(const JsonLine& line, const json& value, const std::string& field,
    const LoadContext& context, const std::string& what)
{
    if (!value.is_string() || value.get<std::string>().empty())
        throw Error(line.location + ": field '" + field + "': expected " + what + ", got " + brief(value));
    const std::string id = value.get<std::string>();
    if (!context.features->contains(id))
        throw Error(line.location + ": image " + quotedText(id) + " is not in " + context.featuresName + " ("
            + std::to_string(context.features->info().images) + " images)");
    return id;
}

std::vector<std::string> lineImages(const JsonLine& line, const std::string& type, const LoadContext& context)
{
    const json& o = line.object;
    if (type == vltask::kNlvr2) {
        const auto it = o.find("images");
        if (it == o.end() || it->is_null())
            throw Error(line.location + ": field 'images' is missing; nlvr2 needs two images, "
                + "[\"<left image id>\", \"<right image id>\"]"
                + (o.contains("image") ? " (found 'image')" : ""));
        if (!it->is_array() || it->size() != 2)
            throw Error(line.location + ": field 'images': nlvr2 needs exactly two images [left, right], got "
                + brief(*it));
        return { checkedImage(line, (*it)[0], "images", context, "an image id (a string)"),
            checkedImage(line, (*it)[1], "images", context, "an image id (a string)") };
    }
    const auto it = o.find("image");
    if (it == o.end() || it->is_null())
        throw Error(line.location + ": field 'image' is missing; " + type + " takes one image, \"image\": "
            + "\"<image id>\"" + (o.contains("images") ? " (found 'images', which only nlvr2 takes)" : ""));
    return { checkedImage(line, *it, "image", context, "an image id (a string)") };
}

std::vector<std::string> vqaAnswers(const JsonLine& line)
{
    const char* const expected
        = "expected a list of 1 to 10 answers: strings, or VQA's objects {\"answer\": \"...\"}";
    const auto it = line.object.find("answers");
    if (it == line.object.end() || it->is_null())
        throw Error(line.location + ": field 'answers' is missing; " + expected);
    if (!it->is_array() || it->empty() || it->size() > kMaxVqaAnswers)
        throw Error(line.location + ": field 'answers': " + expected + ", got " + brief(*it));
    std::vector<std::string> answers;
    for (std::size_t i = 0; i < it->size(); ++i) {
        const json& item = (*it)[i];
        const json* text = &item;
        if (item.is_object()) {
            const auto a = item.find("answer");
            text = a == item.end() ? nullptr : &*a;
        }
        if (!text || !text->is_string() || stripAsciiSpace(text->get<std::string>()).empty())
            throw Error(line.location + ": field 'answers': answer " + std::to_string(i + 1) + " is "
                + brief(item) + "; " + expected + " (non-empty)");
        answers.push_back(text->get<std::string>());
    }
    return answers;
}

// VQA's training target: the most frequent human answer (ties: the first in the list). When the answers
// are not all the same they are compared, and the target written, in the official normalised form
// (vlmetrics::normalizeVqaAnswer), as the official evaluation scores them; when they all agree, the answer
// as written (stripped), since the official evaluation then compares without normalising.
std::string vqaTarget(const std::vector<std::string>& answers)
{
    std::vector<std::string> prepared;
    for (auto a : answers) {
        std::replace(a.begin(), a.end(), '\n', ' ');
        std::replace(a.begin(), a.end(), '\t', ' ');
        prepared.push_back(stripAsciiSpace(a));
    }
    if (std::all_of(prepared.begin(), prepared.end(), [&](const std::string& a) { return a == prepared[0]; }))
        return prepared[0];
    std::vector<std::string> normalised;
    std::map<std::string, std::size_t> count;
    for (const auto& a : answers) {
        normalised.push_back(vlmetrics::normalizeVqaAnswer(a));
        ++count[normalised.back()];
    }
    std::size_t best = 0;
    for (std::size_t i = 1; i < normalised.size(); ++i) {
        if (count[normalised[i]] > count[normalised[best]])
            best = i;
    }
    // An answer that normalises to nothing ("the", "."): keep it as written rather than train on "".
    return normalised[best].empty() ? prepared[best] : normalised[best];
}

bool nlvr2Label(const JsonLine& line)
{
    const auto it = line.object.find("label");
    if (it == line.object.end() || it->is_null())
        throw Error(line.location + ": field 'label' is missing; expected true or false (nlvr2)");
    if (it->is_boolean())
        return it->get<bool>();
    if (it->is_string()) {
        const std::string text = lowerAscii(stripAsciiSpace(it->get<std::string>()));
        if (text == "true")
            return true;
        if (text == "false")
            return false;
    }
    throw Error(line.location + ": field 'label': expected true or false (or \"true\" / \"false\"), got "
        + brief(*it));
}

std::vector<std::string> captions(const JsonLine& line)
{
    const char* const expected = "expected a list of one or more reference captions (non-empty strings)";
    const auto it = line.object.find("captions");
    if (it == line.object.end() || it->is_null())
        throw Error(line.location + ": field 'captions' is missing; " + expected
            + (line.object.contains("caption") ? " (found 'caption'; write \"captions\": [\"...\"])" : ""));
    if (!it->is_array() || it->empty())
        throw Error(line.location + ": field 'captions': " + expected + ", got " + brief(*it));
    std::vector<std::string> out;
    for (std::size_t i = 0; i < it->size(); ++i) {
        const json& item = (*it)[i];
        if (!item.is_string() || stripAsciiSpace(item.get<std::string>()).empty())
            throw Error(line.location + ": field 'captions': caption " + std::to_string(i + 1) + " is "
                + brief(item) + "; " + expected);
        out.push_back(item.get<std::string>());
    }
    return out;
}

std::string lineId(const JsonLine& line, const std::string& fileName)
{
    const auto it = line.object.find("id");
    if (it == line.object.end() || it->is_null())
        return fileName + ":" + std::to_string(line.line);
    if (it->is_string() && !it->get<std::string>().empty())
        return it->get<std::string>();
    if (it->is_number_integer())
        return it->dump();
    throw Error(line.location + ": field 'id': expected a non-empty string or an integer, got " + brief(*it));
}

// The split's examples. `train`: captioning yields one example per reference caption.
SplitResult castSplit(const std::string& path, bool train, const LoadContext& context)
{
    const std::string fileName = TextTable::baseName(path);
    SplitResult result;
    std::map<std::string, std::size_t> idLines;
    for (const auto& line : readJsonLines(path)) {
        const std::string type = lineType(line, context);
        const std::string id = lineId(line, fileName);
        const auto seen = idLines.emplace(id, line.line);
        if (!seen.second)
            throw Error(line.location + ": field 'id': " + quotedText(id) + " is used on line "
                + std::to_string(seen.first->second) + " too; expected each example's own id");

        TextExample ex;
        ex.id = id;
        ex.subtask = type;
        ex.images = lineImages(line, type, context);
        std::vector<TextExample> out;
        if (type == vltask::kVqa || type == vltask::kGqa) {
            const std::string question = textField(line, "question", "the question");
            ex.fields.emplace_back("question", question);
            ex.source = vlTaskPrompt(type) + question;
            if (type == vltask::kVqa) {
                ex.references = vqaAnswers(line);
                ex.target = vqaTarget(ex.references);
            } else {
                const std::string answer = textField(line, "answer", "the answer");
                ex.references = { answer };
                ex.target = stripAsciiSpace(answer);
            }
            out.push_back(std::move(ex));
        } else if (type == vltask::kNlvr2) {
            const std::string statement = textField(line, "statement", "the statement about the two images");
            ex.fields.emplace_back("statement", statement);
            ex.source = vlTaskPrompt(type) + statement;
            ex.target = nlvr2Label(line) ? "true" : "false";
            ex.references = { ex.target };
            out.push_back(std::move(ex));
        } else {
            const auto all = captions(line);
            ex.source = vlTaskPrompt(type);
            ex.references = all;
            if (train) {
                for (std::size_t k = 0; k < all.size(); ++k) {
                    TextExample one = ex;
                    one.id = id + "#" + std::to_string(k + 1);
                    one.target = stripAsciiSpace(all[k]);
                    out.push_back(std::move(one));
                }
            } else {
                ex.target = stripAsciiSpace(all[0]);
                out.push_back(std::move(ex));
            }
        }
        ++result.linesPerType[type];
        if (!context.keep.empty() && !context.keep.count(type)) {
            ++result.linesLeftOut;
            continue;
        }
        for (auto& e : out) {
            e.label = e.target;
            ++result.examplesPerType[type];
            result.examples.push_back(std::move(e));
        }
    }
    return result;
}

std::string countsText(const SplitResult& split)
{
    std::vector<std::string> parts;
    for (const auto& type : vlTaskTypes()) {
        const auto it = split.examplesPerType.find(type);
        if (it == split.examplesPerType.end())
            continue;
        std::string part = std::to_string(it->second) + " " + type;
        if (type == vltask::kCaption && split.linesPerType.at(type) != it->second)
            part += " (" + std::to_string(split.linesPerType.at(type))
                + " images, one example per reference caption)";
        parts.push_back(part);
    }
    std::string out = joined(parts);
    if (split.linesLeftOut > 0)
        out += "; " + std::to_string(split.linesLeftOut)
            + " lines of other types left out by the task filter";
    return out;
}

struct TaskJson {
    std::string name;
    std::string displayName;
    std::string defaultType;
    std::string features;
    std::int64_t visualTokens = 0;
};

TaskJson readTaskJson(const std::string& path)
{
    TaskJson out;
    if (!demofs::exists(path))
        return out;
    const json desc = readJsonFile(path, "a VL task's task.json (a JSON object)");
    if (!desc.is_object())
        throw Error(
            path + ": expected a JSON object ({\"name\": ..., \"visual_tokens\": ...}), got " + brief(desc));
    auto text = [&](const char* key) {
        if (!desc.contains(key) || desc.at(key).is_null())
            return std::string();
        if (!desc.at(key).is_string())
            throw Error(path + ": field '" + key + "': expected a string, got " + brief(desc.at(key)));
        return desc.at(key).get<std::string>();
    };
    out.name = text("name");
    out.displayName = text("display_name");
    text("description");
    out.features = text("features");
    out.defaultType = text("task");
    if (!out.defaultType.empty() && !isVlTaskType(out.defaultType))
        throw Error(
            path + ": field 'task': unknown task " + quotedText(out.defaultType) + "; expected " + kTypeList);
    if (desc.contains("visual_tokens")) {
        const json& v = desc.at("visual_tokens");
        if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > kMaxVisualTokens)
            throw Error(path + ": field 'visual_tokens': expected an integer in [1, "
                + std::to_string(kMaxVisualTokens) + "], got " + brief(v));
        out.visualTokens = v.get<std::int64_t>();
    }
    return out;
}

void checkVisualTokens(
    std::int64_t tokens, std::int64_t boxes, const std::string& featuresName, const std::string& where)
{
    if (tokens == boxes)
        return;
    const bool reducible = tokens >= 1 && tokens < boxes && isSquare(boxes) && isSquare(tokens);
    if (reducible)
        return;
    std::string shape = std::to_string(boxes) + " boxes";
    if (isSquare(boxes)) {
        const auto side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(boxes))));
        shape += " (a " + std::to_string(side) + "x" + std::to_string(side) + " grid)";
    }
    throw Error(where + ": visual_tokens " + std::to_string(tokens) + " cannot be made of " + featuresName
        + "'s " + shape + "; expected " + std::to_string(boxes)
        + (isSquare(boxes)
                ? " or a smaller square number (pooled over the grid, as the reference's --downsample)"
                : ""));
}

} // namespace

const std::vector<std::string>& vlTaskTypes()
{
    static const std::vector<std::string> types { vltask::kVqa, vltask::kGqa, vltask::kNlvr2,
        vltask::kCaption };
    return types;
}

bool isVlTaskType(const std::string& type)
{
    const auto& types = vlTaskTypes();
    return std::find(types.begin(), types.end(), type) != types.end();
}

std::string vlTaskPrompt(const std::string& type)
{
    if (type == vltask::kVqa)
        return "vqa: ";
    if (type == vltask::kGqa)
        return "gqa: "; // VL-Adapter's multitask.py writes "gpa: " (a typo)
    if (type == vltask::kNlvr2)
        return "nlvr: ";
    if (type == vltask::kCaption)
        return "caption:"; // VL-Adapter's "caption: " without its trailing space (nothing follows it)
    throw Error("unknown VL task " + quotedText(type) + "; expected " + kTypeList);
}

TaskSplits loadVlTask(const VlTaskOptions& options)
{
    if (options.folder.empty())
        throw Error("VL task: no task folder given");
    if (!demofs::isDirectory(options.folder))
        throw Error(options.folder
            + ": VL task folder not found; expected a folder with train.jsonl, "
              "validation.jsonl, test.jsonl and features.safetensors");
    std::set<std::string> keep;
    for (const auto& type : options.tasks) {
        if (!isVlTaskType(type))
            throw Error(
                "VL task: unknown task " + quotedText(type) + " in the task filter; expected " + kTypeList);
        if (!keep.insert(type).second)
            throw Error("VL task: task " + quotedText(type) + " is listed twice in the task filter");
    }
    if (options.visualTokens < 0 || options.visualTokens > kMaxVisualTokens)
        throw Error("VL task: visual_tokens must be in [0, " + std::to_string(kMaxVisualTokens) + "], got "
            + std::to_string(options.visualTokens));

    const char* const splitFiles[] = { "train.jsonl", "validation.jsonl", "test.jsonl" };
    for (const char* file : splitFiles) {
        const std::string path = demofs::join(options.folder, file);
        if (!demofs::isFile(path))
            throw Error(path
                + ": file not found; a VL task folder holds train.jsonl, validation.jsonl and "
                  "test.jsonl (docs/VL.md)");
    }
    const TaskJson desc = readTaskJson(demofs::join(options.folder, "task.json"));

    std::string featuresPath = options.featuresPath;
    if (featuresPath.empty() && !desc.features.empty())
        featuresPath = desc.features[0] == '/' ? desc.features : demofs::join(options.folder, desc.features);
    if (featuresPath.empty())
        featuresPath = demofs::join(options.folder, kVisualFeaturesFileName);
    if (!demofs::isFile(featuresPath))
        throw Error(featuresPath + ": visual feature file not found; expected the folder's "
            + kVisualFeaturesFileName + " or the spec's task.features (docs/VL.md)");
    const VisualFeatureFile features(featuresPath);
    const auto& fileInfo = features.info();

    std::int64_t tokens = options.visualTokens > 0 ? options.visualTokens : desc.visualTokens;
    if (tokens == 0)
        tokens = fileInfo.boxes;
    checkVisualTokens(tokens, fileInfo.boxes, TextTable::baseName(featuresPath),
        options.visualTokens > 0 ? std::string("VL task") : demofs::join(options.folder, "task.json"));

    LoadContext context;
    context.features = &features;
    context.featuresName = TextTable::baseName(featuresPath);
    context.keep = keep;
    context.defaultType = keep.size() == 1 ? *keep.begin() : desc.defaultType;

    TaskSplits splits;
    std::vector<SplitResult> results;
    for (std::size_t s = 0; s < 3; ++s) {
        const std::string path = demofs::join(options.folder, splitFiles[s]);
        results.push_back(castSplit(path, s == 0, context));
        if (results.back().examples.empty())
            throw Error(path + ": no examples"
                + (keep.empty() ? std::string("; expected one JSON object per line")
                                : " of the filtered tasks (" + joined({ keep.begin(), keep.end() }) + ")"));
    }

    // Every split holds the same task types: each trained type is scored in validation and test.
    std::vector<std::string> types;
    for (const auto& type : vlTaskTypes()) {
        if (results[0].examplesPerType.count(type))
            types.push_back(type);
    }
    for (const auto& type : keep) {
        if (!results[0].examplesPerType.count(type))
            throw Error(demofs::join(options.folder, splitFiles[0]) + ": no " + type
                + " examples, but the task filter names " + type);
    }
    for (std::size_t s = 1; s < 3; ++s) {
        const std::string path = demofs::join(options.folder, splitFiles[s]);
        for (const auto& type : types) {
            if (!results[s].examplesPerType.count(type))
                throw Error(path + ": no " + type + " examples, but train.jsonl has "
                    + std::to_string(results[0].examplesPerType.at(type))
                    + "; every split needs each task type the task trains on");
        }
        for (const auto& type : vlTaskTypes()) {
            const auto found = results[s].examplesPerType.find(type);
            if (found != results[s].examplesPerType.end() && !results[0].examplesPerType.count(type))
                throw Error(path + ": " + std::to_string(found->second) + " " + type
                    + " examples, but train.jsonl has none; every split holds the same task types");
        }
    }

    TaskInfo& info = splits.info;
    info.name = !options.name.empty() ? options.name : (!desc.name.empty() ? desc.name : std::string("vl"));
    info.displayName = !desc.displayName.empty() ? desc.displayName : info.name;
    info.kind = TaskKind::Generation;
    for (const auto& type : types) {
        if (type == vltask::kVqa)
            info.metrics.push_back(metric::kVqaAccuracy);
        else if (type == vltask::kGqa)
            info.metrics.push_back(metric::kGqaAccuracy);
        else if (type == vltask::kNlvr2)
            info.metrics.push_back(metric::kNlvr2Accuracy);
        else {
            info.metrics.push_back(metric::kCider);
            info.metrics.push_back(metric::kBleu4);
        }
    }
    info.metrics.push_back(metric::kVlAverage);
    info.mainMetric = metric::kVlAverage;
    info.visualFeatures = featuresPath;
    info.visualTokens = tokens;
    info.visualDim = fileInfo.dim;

    splits.train = std::move(results[0].examples);
    splits.validation = std::move(results[1].examples);
    splits.test = std::move(results[2].examples);
    splits.notes.push_back("tasks: " + joined(types, " + ") + " (one model, VL-Adapter's task prompts)");
    for (std::size_t s = 0; s < 3; ++s)
        splits.notes.push_back(std::string(s == 0 ? "train"
                                       : s == 1   ? "validation"
                                                  : "test")
            + ": " + splitFiles[s] + ", " + countsText(results[s]));
    splits.notes.push_back("features: " + context.featuresName + " (" + std::to_string(fileInfo.images)
        + " images, " + std::to_string(fileInfo.boxes) + " boxes x " + std::to_string(fileInfo.dim) + ", "
        + fileInfo.dtype + (fileInfo.encoder.empty() ? "" : ", " + oneLine(fileInfo.encoder, 80)) + "); "
        + std::to_string(tokens) + " visual tokens per image");
    return splits;
}

TaskMetrics evaluateVl(const TaskInfo& info, const std::vector<std::string>& predictions,
    const std::vector<TextExample>& references)
{
    const std::string context = "evaluating " + (info.name.empty() ? std::string("VL task") : info.name);
    if (predictions.size() != references.size())
        throw Error(context + ": " + std::to_string(predictions.size()) + " predictions for "
            + std::to_string(references.size()) + " references");
    if (references.empty())
        throw Error(context + ": no examples to score");
    if (info.metrics.empty())
        throw Error(context + ": the task lists no metrics");

    TaskMetrics result;
    result.count = references.size();
    result.mainName = info.mainMetric.empty() ? info.metrics.front() : info.mainMetric;

    std::map<std::string, double> sum; // per type: the sum of per-example scores
    std::map<std::string, std::size_t> count;
    std::vector<std::string> captionPredictions;
    std::vector<std::vector<std::string>> captionReferences;
    for (std::size_t i = 0; i < references.size(); ++i) {
        const auto& ref = references[i];
        const std::string name = ref.id.empty() ? "example " + std::to_string(i) : ref.id;
        if (!isVlTaskType(ref.subtask))
            throw Error(context + ": reference " + name + " has no VL task type (subtask "
                + quotedText(ref.subtask) + "); expected " + kTypeList);
        if (ref.references.empty())
            throw Error(context + ": reference " + name + " has no references to score against");
        const std::string& prediction = predictions[i];
        const std::string& type = ref.subtask;
        ++count[type];
        if (type == vltask::kVqa) {
            sum[type] += vlmetrics::vqaSoftAccuracy(prediction, ref.references);
        } else if (type == vltask::kGqa) {
            sum[type] += vlmetrics::gqaExactMatch(prediction, ref.references.front());
        } else if (type == vltask::kNlvr2) {
            const std::string p = lowerAscii(stripAsciiSpace(prediction));
            if (p != "true" && p != "false")
                ++result.invalid;
            sum[type] += p == lowerAscii(stripAsciiSpace(ref.references.front())) ? 1.0 : 0.0;
        } else {
            captionPredictions.push_back(prediction);
            captionReferences.push_back(ref.references);
        }
    }

    std::map<std::string, double> perType;
    for (const auto& [type, n] : count) {
        if (type != vltask::kCaption)
            perType[type] = sum[type] / static_cast<double>(n);
    }
    double bleu4 = 0.0;
    if (!captionPredictions.empty()) {
        const auto scores = vlmetrics::scoreCaptions(captionPredictions, captionReferences);
        perType[vltask::kCaption] = scores.ciderD;
        bleu4 = scores.bleu4;
    }
    auto typeValue = [&](const char* type) {
        const auto it = perType.find(type);
        return it == perType.end() ? 0.0 : it->second;
    };

    for (const auto& name : info.metrics) {
        if (name == metric::kVqaAccuracy) {
            result.values[name] = typeValue(vltask::kVqa);
        } else if (name == metric::kGqaAccuracy) {
            result.values[name] = typeValue(vltask::kGqa);
        } else if (name == metric::kNlvr2Accuracy) {
            result.values[name] = typeValue(vltask::kNlvr2);
        } else if (name == metric::kCider) {
            result.values[name] = typeValue(vltask::kCaption);
        } else if (name == metric::kBleu4) {
            result.values[name] = bleu4;
        } else if (name == metric::kVlAverage) {
            // The mean over the task types the task lists that have examples here (Table 3's "Avg.").
            double total = 0.0;
            std::size_t n = 0;
            const std::pair<const char*, const char*> parts[]
                = { { metric::kVqaAccuracy, vltask::kVqa }, { metric::kGqaAccuracy, vltask::kGqa },
                      { metric::kNlvr2Accuracy, vltask::kNlvr2 }, { metric::kCider, vltask::kCaption } };
            const bool listsAny = std::any_of(std::begin(parts), std::end(parts), [&](const auto& part) {
                return std::find(info.metrics.begin(), info.metrics.end(), part.first) != info.metrics.end();
            });
            for (const auto& [metricName, type] : parts) {
                const bool listed
                    = std::find(info.metrics.begin(), info.metrics.end(), metricName) != info.metrics.end();
                if ((listed || !listsAny) && perType.count(type)) {
                    total += perType.at(type);
                    ++n;
                }
            }
            result.values[name] = n == 0 ? 0.0 : total / static_cast<double>(n);
        } else {
            throw Error(
                context + ": metric " + quotedText(name) + " does not apply to a VL (generation) task");
        }
    }

    const auto main = result.values.find(result.mainName);
    if (main == result.values.end())
        throw Error(context + ": the main metric " + quotedText(result.mainName)
            + " is not among the task's metrics");
    result.main = main->second;
    return result;
}

} // namespace ladder
