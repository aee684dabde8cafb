#include "train/TaskLoad.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "data/GenericTask.h"
#include "data/GlueTasks.h"
#include "data/SceneTasks.h"
#include "data/VlTask.h"
#include "train/DemoPaths.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {

// A "vl" task (data/VlTask.h): a folder of JSONL splits and a visual feature file; with no path, the name
// "scenes" is the built-in scene demo that `ladder demo` builds. The spec's "features" (a relative path is
// read from the task folder), "visual_tokens" and "tasks" (RunSpec checked their types).
TaskSplits loadVlTaskSplits(const TaskSpec& task)
{
    const auto& g = task.generic;
    VlTaskOptions o;
    o.folder = task.path;
    const bool scenes = task.path.empty() && task.name == "scenes";
    if (scenes) {
        o.folder = sceneTasksDir();
        if (!fs::is_directory(o.folder))
            throw Error(o.folder + ": the scene demo task is not built (run `ladder demo` to build it)");
    } else if (o.folder.empty()) {
        throw Error(
            "task.path: missing (the VL task folder; or name \"scenes\" for the built-in scene demo)");
    }
    if (g.contains("features") && g.at("features").is_string()) {
        const fs::path features = g.at("features").get<std::string>();
        o.featuresPath
            = features.is_absolute() ? features.string() : (fs::path(o.folder) / features).string();
    }
    if (g.contains("visual_tokens") && g.at("visual_tokens").is_number_integer())
        o.visualTokens = g.at("visual_tokens").get<std::int64_t>();
    if (g.contains("tasks") && g.at("tasks").is_array())
        o.tasks = g.at("tasks").get<std::vector<std::string>>();
    o.name = scenes || task.name == "auto" ? std::string() : task.name;
    return loadVlTask(o);
}

} // namespace

TaskSplits loadTaskSplits(const TaskSpec& task)
{
    if (task.type == "glue")
        return loadGlueTask(task.path, task.name, task.dataSeed);
    if (task.type == "vl")
        return loadVlTaskSplits(task);

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
