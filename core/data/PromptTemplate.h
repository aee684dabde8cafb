#pragma once

#include <string>
#include <vector>

#include "data/Task.h"

namespace ladder {

// A causal LM's prompt for a task (docs/DATA.md, "Prompt templates"): a decoder-only backbone reads no
// "rte sentence1: ..." source as T5 does, but a prompt the task's fields are written into, and continues it
// with the target. A template is text with {field} placeholders named as the example's fields
// ("sentence1", "question", a generic file's text columns); "{{" and "}}" are literal braces. The target
// stays the task's (GLUE: "0", "1"), so the metrics are the same as for T5. The target follows the prompt
// directly: a template ends where the answer begins (by convention "...Answer:"; the tokenizer's
// encodeTarget puts the answer after it as a continuation).

// The built-in template of a task: GLUE's eight tasks and the demo tasks each have one; any other task
// (a generic file) gets "<field>: {<field>}" lines followed by "Answer:".
std::string defaultPromptTemplate(const TaskInfo& info, const std::vector<std::string>& fieldNames);

// Checks `tpl` against the fields an example has: every placeholder must name one, braces must pair.
// Throws ladder::Error naming `source` (e.g. "run spec task.prompt_template") and the placeholder.
void validatePromptTemplate(
    const std::string& tpl, const std::vector<std::string>& fieldNames, const std::string& source);

// The prompt of one example.
std::string renderPromptTemplate(
    const std::string& tpl, const TextExample& example, const std::string& source);

// Every split's sources become prompts: `tpl`, or the task's default when empty. Returns the template used.
std::string applyPromptTemplate(TaskSplits& task, const std::string& tpl, const std::string& source);

} // namespace ladder
