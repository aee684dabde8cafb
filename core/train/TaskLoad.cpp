#include "train/TaskLoad.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "data/GenericTask.h"
#include "data/GlueTasks.h"
#include "train/DemoPaths.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace fs = std::filesystem;

TaskSplits loadTaskSplits(const TaskSpec& task)
{
    if (task.type == "glue")
        return loadGlueTask(task.path, task.name, task.dataSeed);

    GenericTaskOptions o;
    const auto& g = task.generic;
    auto str = [&](const char* k, std::string fallback) {
        return g.contains(k) && g.at(k).is_string() ? g.at(k).get<std::string>() : fallback;
    };
    if (task.type == "demo") {
        // A demo task is a folder of JSONL splits with a task.json that describes it.
        const auto dir = fs::path(task.path.empty() ? demoTasksDirectory() : task.path) / task.name;
        const auto descPath = (dir / "task.json").string();
        if (!fs::exists(descPath))
            throw Error(descPath + ": demo task '" + oneLine(task.name, 60)
                + "' not found (run `ladder demo` to build it)");
        const auto desc = readJsonFile(descPath, "a demo task's task.json");
        if (!desc.is_object())
            throw Error(descPath + ": expected a JSON object");
        o.path = (dir / "train.jsonl").string();
        o.validationPath = (dir / "validation.jsonl").string();
        o.testPath = (dir / "test.jsonl").string();
        o.format = "jsonl";
        o.textColumns = desc.value("text_columns", std::vector<std::string> { "text" });
        o.labelColumn = desc.value("label_column", std::string("label"));
        o.taskName = desc.value("name", task.name);
        o.labels = desc.value("labels", std::vector<std::string> {});
        // "text": the model generates the label itself ("noun.animal"), which a small backbone learns far
        // faster than an index; "index" (GLUE's convention) otherwise.
        o.labelTextTargets = desc.value("label_targets", std::string("index")) == "text";
        o.seed = task.dataSeed;
        return loadGenericTask(o);
    }
    o.path = task.path;
    o.validationPath = str("validation_path", "");
    o.testPath = str("test_path", "");
    o.format = str("format", "auto");
    if (g.contains("text_columns"))
        o.textColumns = g.at("text_columns").get<std::vector<std::string>>();
    else
        o.textColumns = { "text" };
    o.labelColumn = str("label_column", "label");
    o.taskName = task.name == "auto" ? std::string("task") : task.name;
    o.kind = str("kind", "classification") == "regression" ? TaskKind::Regression : TaskKind::Classification;
    if (g.contains("labels"))
        o.labels = g.at("labels").get<std::vector<std::string>>();
    if (g.contains("validation_fraction"))
        o.validationFraction = g.at("validation_fraction").get<double>();
    if (g.contains("test_fraction"))
        o.testFraction = g.at("test_fraction").get<double>();
    if (g.contains("target_decimals"))
        o.targetDecimals = g.at("target_decimals").get<int>();
    o.labelTextTargets = str("label_targets", "index") == "text";
    o.seed = task.dataSeed;
    return loadGenericTask(o);
}

} // namespace ladder
