#pragma once

// What a trained run reads and writes, without its data: how an input's text fields become the model's
// source (as the run's task built its training sources), the targets it was trained to generate, and the
// evaluation's generation settings. Recorded in a ladder bundle (task.json) and used by `ladder predict`.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace ladder {

struct RunSpec;
class Tokenizer;

struct TaskFormat {
    std::string type; // the spec's task type: "glue", "generic", "demo"
    std::string name; // the task, resolved: "rte", "fruit", "supersense"
    std::string kind = "classification"; // or "regression"
    // source = prefix, then for each field its keyword and its text, joined by single spaces (a prefix
    // that is empty adds nothing): GLUE's "rte sentence1: A sentence2: B", a generic task's
    // "fruit text: the apple is here".
    std::string prefix;
    std::vector<std::pair<std::string, std::string>> fields; // (field name, keyword), in source order
    // The targets the run was trained to generate ("0", "1" for GLUE) and their readable names
    // ("entailment", "not_entailment"); empty when the task's data could not be read when this was made.
    std::vector<std::string> labels;
    std::vector<std::string> labelNames;
    // The evaluation's settings: sources cut at maxSourceLength tokens (</s> included), at most
    // maxNewTokens generated tokens (the longest label's length for a task with labels, else the spec's
    // max_target_length or 128), numBeams beams.
    std::int64_t maxSourceLength = 128;
    std::int64_t maxNewTokens = 128;
    std::int64_t numBeams = 1;
    // A decoder-only backbone's run: the prompt template its sources were written with
    // (data/PromptTemplate.h); the prefix and keywords are then unused. Empty for T5.
    std::string promptTemplate;

    // The source for one input's field texts, given in `fields` order.
    std::string formatSource(const std::vector<std::string>& texts) const;
    // The field names, "sentence1, sentence2".
    std::string fieldList() const;

    nlohmann::json toJson() const;
    // Errors name `source` and the field: "bundle/task.json: field fields: expected ...".
    static TaskFormat fromJson(const nlohmann::json& json, const std::string& source);
};

// The format of `spec`'s task. The fields and prefix come from the spec alone (GLUE: its task table;
// generic: text_columns and name; demo: the demo task's task.json); `recordedTask` is the store's task
// column ("rte"), which names a GLUE task of name "auto" when its folder is gone. The labels and the
// generation length come from the task's data when it can be read (tokenised with `tokenizer`); when it
// cannot, *note (optional) says why and the spec's max_target_length (or 128) is used.
// causal: the run's backbone is decoder-only, so its sources were prompts (the spec's prompt_template or the
// task's default).
TaskFormat taskFormatFor(const RunSpec& spec, const std::string& recordedTask, const Tokenizer& tokenizer,
    std::string* note = nullptr, bool causal = false);

} // namespace ladder
