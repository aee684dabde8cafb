#include "data/PromptTemplate.h"

#include <algorithm>
#include <map>

#include "util/Error.h"

namespace ladder {
namespace {

// The pieces of a template: literal text and placeholders, in order.
struct Piece {
    bool placeholder = false;
    std::string text; // the literal, or the field name
};

std::vector<Piece> parse(const std::string& tpl, const std::string& source)
{
    std::vector<Piece> pieces;
    std::string literal;
    for (std::size_t i = 0; i < tpl.size(); ++i) {
        const char c = tpl[i];
        if ((c == '{' || c == '}') && i + 1 < tpl.size() && tpl[i + 1] == c) {
            literal += c;
            ++i;
            continue;
        }
        if (c == '}')
            throw Error(source + ": a '}' at offset " + std::to_string(i)
                + " closes no placeholder (write }} for a brace)");
        if (c != '{') {
            literal += c;
            continue;
        }
        const auto end = tpl.find('}', i + 1);
        if (end == std::string::npos)
            throw Error(source + ": the placeholder at offset " + std::to_string(i)
                + " is not closed (write {{ for a brace)");
        const auto name = tpl.substr(i + 1, end - i - 1);
        if (name.empty() || name.find('{') != std::string::npos)
            throw Error(source + ": an empty or nested placeholder at offset " + std::to_string(i));
        if (!literal.empty())
            pieces.push_back({ false, literal });
        literal.clear();
        pieces.push_back({ true, name });
        i = end;
    }
    if (!literal.empty())
        pieces.push_back({ false, literal });
    return pieces;
}

std::string fieldList(const std::vector<std::string>& names)
{
    std::string s;
    for (const auto& n : names)
        s += (s.empty() ? "" : ", ") + n;
    return s.empty() ? "none" : s;
}

} // namespace

std::string defaultPromptTemplate(const TaskInfo& info, const std::vector<std::string>& fieldNames)
{
    // GLUE: the fields as HF datasets name them (data/GlueTasks.cpp), the labels as the targets are written.
    static const std::map<std::string, std::string> builtIn {
        { "cola", "Sentence: {sentence}\nIs the sentence grammatical? (1 yes, 0 no)\nAnswer:" },
        { "sst2", "Review: {sentence}\nSentiment (1 positive, 0 negative)\nAnswer:" },
        { "mrpc",
            "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nDo they say the same? (1 yes, 0 "
            "no)\nAnswer:" },
        { "qqp", "Question 1: {question1}\nQuestion 2: {question2}\nSame question? (1 yes, 0 no)\nAnswer:" },
        { "stsb", "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nSimilarity from 0.0 to 5.0\nAnswer:" },
        { "mnli",
            "Premise: {premise}\nHypothesis: {hypothesis}\nRelation (0 entailment, 1 neutral, 2 "
            "contradiction)\nAnswer:" },
        { "qnli",
            "Question: {question}\nSentence: {sentence}\nDoes the sentence answer it? (0 yes, 1 "
            "no)\nAnswer:" },
        { "rte",
            "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nDoes 1 entail 2? (0 yes, 1 no)\nAnswer:" },
        // The demo tasks (data/DemoTasks.cpp): their targets are the label text.
        { "supersense", "Definition: {definition}\nWordNet supersense:" },
        { "definition-match",
            "Word: {word}\nDefinition: {definition}\nDoes the word name it? (yes or no)\nAnswer:" },
    };
    const auto it = builtIn.find(info.name);
    if (it != builtIn.end()) {
        // A built-in template only where the example has its fields (a generic file may reuse a name).
        bool fits = true;
        for (const auto& piece : parse(it->second, "the built-in template of " + info.name))
            if (piece.placeholder
                && std::find(fieldNames.begin(), fieldNames.end(), piece.text) == fieldNames.end())
                fits = false;
        if (fits)
            return it->second;
    }
    std::string tpl;
    for (const auto& name : fieldNames) {
        std::string escaped;
        for (char c : name)
            escaped += (c == '{' || c == '}') ? std::string(2, c) : std::string(1, c);
        tpl += escaped + ": {" + name + "}\n";
    }
    return tpl + "Answer:";
}

void validatePromptTemplate(
    const std::string& tpl, const std::vector<std::string>& fieldNames, const std::string& source)
{
    if (tpl.empty())
        throw Error(source + ": the template is empty");
    for (const auto& piece : parse(tpl, source))
        if (piece.placeholder
            && std::find(fieldNames.begin(), fieldNames.end(), piece.text) == fieldNames.end())
            throw Error(source + ": {" + piece.text
                + "} names no field of the task (its fields: " + fieldList(fieldNames) + ")");
}

std::string renderPromptTemplate(
    const std::string& tpl, const TextExample& example, const std::string& source)
{
    std::string out;
    for (const auto& piece : parse(tpl, source)) {
        if (!piece.placeholder) {
            out += piece.text;
            continue;
        }
        const auto it = std::find_if(example.fields.begin(), example.fields.end(),
            [&](const auto& field) { return field.first == piece.text; });
        if (it == example.fields.end())
            throw Error(source + ": example " + example.id + " has no field " + piece.text);
        out += it->second;
    }
    return out;
}

std::string applyPromptTemplate(TaskSplits& task, const std::string& tpl, const std::string& source)
{
    std::vector<std::string> names;
    for (const auto* split : { &task.train, &task.validation, &task.test })
        if (!split->empty()) {
            for (const auto& field : split->front().fields)
                names.push_back(field.first);
            break;
        }
    const auto used = tpl.empty() ? defaultPromptTemplate(task.info, names) : tpl;
    validatePromptTemplate(used, names, source);
    for (auto* split : { &task.train, &task.validation, &task.test })
        for (auto& example : *split)
            example.source = renderPromptTemplate(used, example, source);
    task.notes.push_back("prompt template: " + used);
    return used;
}

} // namespace ladder
