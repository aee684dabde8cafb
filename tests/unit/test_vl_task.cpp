// The vision-and-language task folder (core/data/VlTask): JSONL splits over a visual feature file cast to
// VL-Adapter's prompts and targets, captioning's per-caption training examples, multi-task mixing, the task
// filter, every malformed input's message, evaluateVl on hand-computed values (the official VQA soft
// accuracy, GQA exact match, NLVR2 accuracy with invalid predictions, captions, vl_average), and the "vl"
// task of a run spec (RunSpec round trip, loadTaskSplits).
#include <QtTest>

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "TaskTestHelpers.h"
#include "TestSupport.h"
#include "data/Metrics.h"
#include "data/SceneTasks.h"
#include "data/VisualFeatures.h"
#include "data/VlMetrics.h"
#include "data/VlTask.h"
#include "train/RunSpec.h"
#include "train/TaskLoad.h"
#include "util/Error.h"

using ladder::TextExample;
using ladder::test::task_data::errorOf;
using ladder::test::task_data::ids;
using ladder::test::task_data::writeFile;

namespace {

// 4 boxes (a 2x2 grid) of width 3 per image.
void writeFeatures(const std::string& path, const std::vector<std::string>& imageIds, std::int64_t boxes = 4)
{
    std::vector<std::pair<std::string, ladder::VisualFeatures>> images;
    float value = 0.5f;
    for (const auto& id : imageIds) {
        ladder::VisualFeatures f;
        f.features = at::full({ boxes, 3 }, value, at::kFloat);
        images.emplace_back(id, f);
        value += 1.0f;
    }
    ladder::writeVisualFeatureFile(path, images, "test features");
}

const char* const kTrain
    = R"({"id": "q1", "task": "vqa", "image": "img1", "question": "How many dogs?", "answers": ["Two", "2", "two", "3", "2", "2", "two", "2", "3", "2"]})"
      "\n"
      R"({"task": "vqa", "image": "img2", "question": "What color?", "answers": [{"answer": "red", "answer_confidence": "yes"}, {"answer": "blue"}]})"
      "\n"
      R"({"task": "gqa", "image": "img3", "question": "Is it left?", "answer": "yes"})"
      "\n"
      R"({"task": "nlvr2", "images": ["img1", "img2"], "statement": "Both show dogs.", "label": "True"})"
      "\n"
      R"({"task": "caption", "image": "img3", "captions": ["A dog runs.", "A brown dog.", "Dog on grass."]})"
      "\n"
      "\n"
      R"({"task": "nlvr2", "images": ["img2", "img3"], "statement": "One is red.", "label": false})"
      "\n";

const char* const kEval
    = R"({"task": "vqa", "image": "img1", "question": "Q?", "answers": ["yes", "yes", "yes", "yes"]})"
      "\n"
      R"({"task": "gqa", "image": "img2", "question": "G?", "answer": "no"})"
      "\n"
      R"({"task": "nlvr2", "images": ["img1", "img3"], "statement": "S.", "label": true})"
      "\n"
      R"({"task": "caption", "image": "img1", "captions": ["c1", "c2"]})"
      "\n";

// A VL folder: the good files, then `overrides` (file name -> content; "" removes the file).
std::string makeFolder(const std::map<std::string, std::string>& overrides = {})
{
    const std::string dir = ladder::test::makeTempDir() + "/vl";
    std::map<std::string, std::string> files { { "train.jsonl", kTrain }, { "validation.jsonl", kEval },
        { "test.jsonl", kEval } };
    for (const auto& [name, text] : overrides)
        files[name] = text;
    for (const auto& [name, text] : files) {
        if (!text.empty())
            writeFile(dir + "/" + name, text);
    }
    writeFeatures(dir + "/features.safetensors", { "img1", "img2", "img3" });
    return dir;
}

std::string loadError(
    const std::map<std::string, std::string>& overrides, std::vector<std::string> tasks = {})
{
    ladder::VlTaskOptions o;
    o.folder = makeFolder(overrides);
    o.tasks = std::move(tasks);
    return errorOf([&] { ladder::loadVlTask(o); });
}

TextExample reference(const std::string& subtask, std::vector<std::string> references)
{
    TextExample ex;
    ex.subtask = subtask;
    ex.references = std::move(references);
    ex.target = ex.references.front();
    return ex;
}

} // namespace

class TestVlTask : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void loadsEveryTaskType()
    {
        ladder::VlTaskOptions o;
        o.folder = makeFolder();
        const auto splits = ladder::loadVlTask(o);
        const auto& info = splits.info;
        QCOMPARE(info.name, std::string("vl"));
        QCOMPARE(info.kind, ladder::TaskKind::Generation);
        QVERIFY(info.labels.empty());
        QCOMPARE(info.metrics,
            (std::vector<std::string> {
                "vqa_accuracy", "gqa_accuracy", "nlvr2_accuracy", "cider", "bleu4", "vl_average" }));
        QCOMPARE(info.mainMetric, std::string("vl_average"));
        QVERIFY(info.isVisual());
        QCOMPARE(info.visualFeatures, o.folder + "/features.safetensors");
        QCOMPARE(info.visualTokens, std::int64_t(4));
        QCOMPARE(info.visualDim, std::int64_t(3));

        // Multi-task mixing: file order, every type in one split; captions expanded in train only.
        QCOMPARE(ids(splits.train),
            (std::vector<std::string> { "q1", "train.jsonl:2", "train.jsonl:3", "train.jsonl:4",
                "train.jsonl:5#1", "train.jsonl:5#2", "train.jsonl:5#3", "train.jsonl:7" }));
        const auto& vqa = splits.train[0];
        QCOMPARE(vqa.subtask, std::string("vqa"));
        QCOMPARE(vqa.source, std::string("vqa: How many dogs?"));
        QCOMPARE(vqa.target, std::string("2")); // "2" x5 + "two"/"Two" x3 normalise to "2"
        QCOMPARE(vqa.label, vqa.target);
        QCOMPARE(vqa.references.size(), std::size_t(10));
        QCOMPARE(vqa.references[0], std::string("Two"));
        QCOMPARE(vqa.images, (std::vector<std::string> { "img1" }));
        QCOMPARE(vqa.fields.size(), std::size_t(1));
        QCOMPARE(vqa.fields[0].first, std::string("question"));
        QCOMPARE(vqa.labelIndex, -1);
        // VQA's own {"answer": ...} objects; a tie goes to the first answer.
        QCOMPARE(splits.train[1].references, (std::vector<std::string> { "red", "blue" }));
        QCOMPARE(splits.train[1].target, std::string("red"));
        const auto& gqa = splits.train[2];
        QCOMPARE(gqa.source, std::string("gqa: Is it left?"));
        QCOMPARE(gqa.target, std::string("yes"));
        QCOMPARE(gqa.references, (std::vector<std::string> { "yes" }));
        const auto& nlvr = splits.train[3];
        QCOMPARE(nlvr.source, std::string("nlvr: Both show dogs."));
        QCOMPARE(nlvr.target, std::string("true")); // "True" in the file
        QCOMPARE(nlvr.references, (std::vector<std::string> { "true" }));
        QCOMPARE(nlvr.images, (std::vector<std::string> { "img1", "img2" }));
        QCOMPARE(nlvr.fields[0].first, std::string("statement"));
        QCOMPARE(splits.train[7].target, std::string("false"));
        for (int k = 0; k < 3; ++k) {
            const auto& cap = splits.train[4 + static_cast<std::size_t>(k)];
            QCOMPARE(cap.source, std::string("caption:"));
            QCOMPARE(cap.subtask, std::string("caption"));
            QCOMPARE(cap.references.size(), std::size_t(3));
            QCOMPARE(cap.target, cap.references[static_cast<std::size_t>(k)]);
            QCOMPARE(cap.images, (std::vector<std::string> { "img3" }));
            QVERIFY(cap.fields.empty());
        }

        // Validation and test: one caption example per image, target the first caption.
        QCOMPARE(splits.validation.size(), std::size_t(4));
        QCOMPARE(splits.test.size(), std::size_t(4));
        QCOMPARE(splits.validation[0].target, std::string("yes")); // unanimous answers
        QCOMPARE(splits.validation[3].id, std::string("validation.jsonl:4"));
        QCOMPARE(splits.validation[3].target, std::string("c1"));
        QCOMPARE(splits.validation[3].references, (std::vector<std::string> { "c1", "c2" }));
        QCOMPARE(splits.test[2].id, std::string("test.jsonl:3"));

        std::string notes;
        for (const auto& line : splits.notes)
            notes += line + "\n";
        VERIFY_CONTAINS(notes, "train: train.jsonl, 2 vqa, 1 gqa, 2 nlvr2, 3 caption (1 images");
        VERIFY_CONTAINS(notes, "validation: validation.jsonl, 1 vqa, 1 gqa, 1 nlvr2, 1 caption");
        VERIFY_CONTAINS(notes, "features: features.safetensors (3 images, 4 boxes x 3");
    }

    void taskFilterAndTaskJson()
    {
        ladder::VlTaskOptions o;
        o.folder = makeFolder();
        o.tasks = { "caption", "vqa" };
        auto splits = ladder::loadVlTask(o);
        QCOMPARE(splits.info.metrics,
            (std::vector<std::string> { "vqa_accuracy", "cider", "bleu4", "vl_average" }));
        QCOMPARE(splits.train.size(), std::size_t(5));
        QCOMPARE(splits.validation.size(), std::size_t(2));
        for (const auto& ex : splits.train)
            QVERIFY(ex.subtask == "vqa" || ex.subtask == "caption");
        VERIFY_CONTAINS(splits.notes[1], "3 lines of other types left out by the task filter");

        // One type in the filter: lines may leave out "task".
        const std::string onlyVqa = R"({"image": "img1", "question": "Q?", "answers": ["a"]})"
                                    "\n";
        o.folder = makeFolder(
            { { "train.jsonl", onlyVqa }, { "validation.jsonl", onlyVqa }, { "test.jsonl", onlyVqa } });
        o.tasks = { "vqa" };
        splits = ladder::loadVlTask(o);
        QCOMPARE(splits.train.size(), std::size_t(1));
        QCOMPARE(splits.train[0].subtask, std::string("vqa"));
        QCOMPARE(splits.info.metrics, (std::vector<std::string> { "vqa_accuracy", "vl_average" }));
        o.tasks = {};
        VERIFY_CONTAINS(errorOf([&] { ladder::loadVlTask(o); }), "train.jsonl:1: field 'task' is missing");

        // task.json: the name, the display name, the default task, the visual tokens, the feature file.
        writeFile(o.folder + "/task.json",
            R"({"name": "myvl", "display_name": "My VL", "task": "vqa", "visual_tokens": 1, "features": "other.safetensors", "recipe": 3})");
        writeFeatures(o.folder + "/other.safetensors", { "img1" });
        splits = ladder::loadVlTask(o);
        QCOMPARE(splits.info.name, std::string("myvl"));
        QCOMPARE(splits.info.displayName, std::string("My VL"));
        QCOMPARE(splits.info.visualTokens, std::int64_t(1)); // 4 boxes (2x2) pooled to 1
        QCOMPARE(splits.info.visualFeatures, o.folder + "/other.safetensors");
        o.name = "given";
        o.visualTokens = 4;
        o.featuresPath = o.folder + "/features.safetensors";
        splits = ladder::loadVlTask(o);
        QCOMPARE(splits.info.name, std::string("given"));
        QCOMPARE(splits.info.visualTokens, std::int64_t(4));
        QCOMPARE(splits.info.visualFeatures, o.featuresPath);
        o.visualTokens = 3;
        VERIFY_CONTAINS(errorOf([&] { ladder::loadVlTask(o); }), "visual_tokens 3 cannot be made of");
        o.visualTokens = 0;
        writeFile(o.folder + "/task.json", R"({"visual_tokens": 2})");
        VERIFY_CONTAINS(
            errorOf([&] { ladder::loadVlTask(o); }), "task.json: visual_tokens 2 cannot be made of");
        writeFile(o.folder + "/task.json", R"({"name": 5})");
        VERIFY_CONTAINS(
            errorOf([&] { ladder::loadVlTask(o); }), "task.json: field 'name': expected a string");
        writeFile(o.folder + "/task.json", R"({"task": "vqa2"})");
        VERIFY_CONTAINS(
            errorOf([&] { ladder::loadVlTask(o); }), "task.json: field 'task': unknown task 'vqa2'");
    }

    void errorsNameFileLineAndField()
    {
        const std::string vqa = R"({"task": "vqa", "image": "img1", "question": "Q?", "answers": ["a"]})";
        auto train = [&](const std::string& line) {
            return std::map<std::string, std::string> { { "train.jsonl", vqa + "\n" + line + "\n" } };
        };
        VERIFY_CONTAINS(
            loadError(train(
                R"({"task": "vqa", "image": "img1", "question": "Q?", "answers": ["a","b","c","d","e","f","g","h","i","j","k"]})")),
            "train.jsonl:2: field 'answers': expected a list of 1 to 10 answers");
        VERIFY_CONTAINS(
            loadError(train(R"({"task": "vqa", "image": "img1", "question": "Q?", "answers": []})")),
            "train.jsonl:2: field 'answers': expected a list of 1 to 10");
        VERIFY_CONTAINS(
            loadError(train(R"({"task": "vqa", "image": "img1", "question": "Q?", "answers": ["a", 7]})")),
            "train.jsonl:2: field 'answers': answer 2 is 7");
        VERIFY_CONTAINS(
            loadError(
                train(R"({"task": "vqa", "image": "img1", "question": "Q?", "answers": [{"text": "a"}]})")),
            "train.jsonl:2: field 'answers': answer 1");
        VERIFY_CONTAINS(loadError(train(R"({"task": "vqa", "image": "img1", "question": "Q?"})")),
            "train.jsonl:2: field 'answers' is missing");
        VERIFY_CONTAINS(loadError(train(R"({"task": "vqa", "image": "img1", "answers": ["a"]})")),
            "train.jsonl:2: field 'question' is missing");
        VERIFY_CONTAINS(
            loadError(train(R"({"task": "gqa", "image": "img1", "question": " ", "answer": "a"})")),
            "train.jsonl:2: field 'question': expected the question, a non-empty string");
        VERIFY_CONTAINS(loadError(train(R"({"task": "gqa", "image": "img1", "question": "Q?"})")),
            "train.jsonl:2: field 'answer' is missing");
        VERIFY_CONTAINS(loadError(train(R"({"task": "vqa2", "image": "img1"})")),
            "train.jsonl:2: unknown task 'vqa2'; expected vqa, gqa, nlvr2 or caption");
        VERIFY_CONTAINS(loadError(train(R"({"task": 3})")), "train.jsonl:2: field 'task': expected vqa, gqa");
        VERIFY_CONTAINS(loadError(train(R"({"image": "img1"})")), "train.jsonl:2: field 'task' is missing");
        VERIFY_CONTAINS(
            loadError(train(R"({"task": "nlvr2", "images": ["img1"], "statement": "S", "label": true})")),
            "train.jsonl:2: field 'images': nlvr2 needs exactly two images");
        VERIFY_CONTAINS(
            loadError(train(R"({"task": "nlvr2", "image": "img1", "statement": "S", "label": true})")),
            "train.jsonl:2: field 'images' is missing; nlvr2 needs two images");
        VERIFY_CONTAINS(
            loadError(train(
                R"({"task": "nlvr2", "images": ["img1", "img2"], "statement": "S", "label": "maybe"})")),
            "train.jsonl:2: field 'label': expected true or false");
        VERIFY_CONTAINS(loadError(train(R"({"task": "nlvr2", "images": ["img1", "img2"], "label": true})")),
            "train.jsonl:2: field 'statement' is missing");
        VERIFY_CONTAINS(
            loadError(train(R"({"task": "vqa", "images": ["img1"], "question": "Q?", "answers": ["a"]})")),
            "train.jsonl:2: field 'image' is missing; vqa takes one image");
        VERIFY_CONTAINS(
            loadError(train(R"({"task": "vqa", "image": 4, "question": "Q?", "answers": ["a"]})")),
            "train.jsonl:2: field 'image': expected an image id");
        VERIFY_CONTAINS(loadError(train(R"({"task": "caption", "image": "img1", "captions": []})")),
            "train.jsonl:2: field 'captions': expected a list of one or more reference captions");
        VERIFY_CONTAINS(loadError(train(R"({"task": "caption", "image": "img1", "caption": "a dog"})")),
            "train.jsonl:2: field 'captions' is missing");
        VERIFY_CONTAINS(loadError(train(R"({"task": "caption", "image": "img1", "captions": ["ok", ""]})")),
            "train.jsonl:2: field 'captions': caption 2");
        VERIFY_CONTAINS(
            loadError(train(
                R"({"id": "train.jsonl:1", "task": "vqa", "image": "img1", "question": "Q?", "answers": ["a"]})")),
            "train.jsonl:2: field 'id': 'train.jsonl:1' is used on line 1 too");
        VERIFY_CONTAINS(
            loadError(
                train(R"({"id": [1], "task": "vqa", "image": "img1", "question": "Q?", "answers": ["a"]})")),
            "train.jsonl:2: field 'id': expected a non-empty string or an integer");
        VERIFY_CONTAINS(
            loadError(train(R"({"task": "vqa", "image": "img1", "question": "Q?", "answers": ["a"])")),
            "train.jsonl:2: not valid JSON");
        VERIFY_CONTAINS(loadError(train("[1, 2]")), "train.jsonl:2: expected a JSON object");

        VERIFY_CONTAINS(loadError({ { "validation.jsonl",
                            R"({"task": "vqa", "image": "COCO_42", "question": "Q?", "answers": ["a"]})" } }),
            "validation.jsonl:1: image 'COCO_42' is not in features.safetensors");
        VERIFY_CONTAINS(loadError({ { "test.jsonl", "" } }), "test.jsonl: file not found");
        VERIFY_CONTAINS(loadError({ { "test.jsonl", "\n\n" } }), "test.jsonl: file is empty");
        VERIFY_CONTAINS(loadError({ { "test.jsonl", vqa + "\n" } }, { "gqa" }),
            "test.jsonl: no examples of the filtered tasks (gqa)");
        VERIFY_CONTAINS(loadError({ { "validation.jsonl", vqa + "\n" } }),
            "validation.jsonl: no gqa examples, but train.jsonl has 1");
        VERIFY_CONTAINS(loadError({ { "train.jsonl", vqa + "\n" } }),
            "validation.jsonl: 1 gqa examples, but train.jsonl has none");
        VERIFY_CONTAINS(loadError({}, { "vqa2" }), "unknown task 'vqa2' in the task filter");
        VERIFY_CONTAINS(loadError({}, { "vqa", "vqa" }), "is listed twice in the task filter");

        ladder::VlTaskOptions o;
        o.folder = makeFolder();
        o.featuresPath = o.folder + "/missing.safetensors";
        VERIFY_CONTAINS(
            errorOf([&] { ladder::loadVlTask(o); }), "missing.safetensors: visual feature file not found");
        o.featuresPath = o.folder + "/train.jsonl"; // not a safetensors file
        VERIFY_CONTAINS(errorOf([&] { ladder::loadVlTask(o); }), "train.jsonl");
        o.folder += "/nowhere";
        VERIFY_CONTAINS(errorOf([&] { ladder::loadVlTask(o); }), "VL task folder not found");
    }

    void evaluatesByHand()
    {
        ladder::TaskInfo info;
        info.name = "vl";
        info.kind = ladder::TaskKind::Generation;
        info.metrics = { "vqa_accuracy", "gqa_accuracy", "nlvr2_accuracy", "cider", "bleu4", "vl_average" };
        info.mainMetric = "vl_average";

        // The official VQA accuracy: mean over the 10 annotators i of min(1, matches among the other 9 / 3).
        // "cat" x4: every i sees >= 3 others -> 1.0. "dog" x3: the 3 see 2 (2/3), the 7 see 3 (1) -> 0.9.
        // "bird" x2: 2 x 1/3 + 8 x 2/3 -> 0.6. "fish" x1: 0 + 9 x 1/3 -> 0.3. "cow": 0.
        const std::vector<std::string> answers { "cat", "cat", "cat", "cat", "dog", "dog", "dog", "bird",
            "bird", "fish" };
        std::vector<TextExample> refs;
        std::vector<std::string> predictions;
        const std::vector<std::pair<std::string, double>> vqaCases { { "cat", 1.0 }, { "dog", 0.9 },
            { "bird", 0.6 }, { "fish", 0.3 }, { "cow", 0.0 } };
        for (const auto& [prediction, expected] : vqaCases) {
            QVERIFY(std::fabs(ladder::vlmetrics::vqaSoftAccuracy(prediction, answers) - expected) < 1e-12);
            refs.push_back(reference("vqa", answers));
            predictions.push_back(prediction);
        }
        refs.push_back(reference("gqa", { "red" }));
        predictions.push_back("Red "); // stripped, lowercased: a match
        refs.push_back(reference("gqa", { "red" }));
        predictions.push_back("blue");
        refs.push_back(reference("nlvr2", { "true" }));
        predictions.push_back(" True");
        refs.push_back(reference("nlvr2", { "true" }));
        predictions.push_back(" false\n"); // valid, wrong
        refs.push_back(reference("nlvr2", { "false" }));
        predictions.push_back("maybe"); // invalid, wrong
        refs.push_back(reference("caption", { "a dog runs on the grass", "a brown dog" }));
        predictions.push_back("a dog runs on the grass");
        refs.push_back(reference("caption", { "a cat sleeps on a bed" }));
        predictions.push_back("a cat on a bed");

        const auto m = ladder::evaluateVl(info, predictions, refs);
        const auto captions
            = ladder::vlmetrics::scoreCaptions({ "a dog runs on the grass", "a cat on a bed" },
                { { "a dog runs on the grass", "a brown dog" }, { "a cat sleeps on a bed" } });
        QCOMPARE(m.count, std::size_t(12));
        QCOMPARE(m.invalid, std::size_t(1));
        QVERIFY(std::fabs(m.values.at("vqa_accuracy") - 0.56) < 1e-12);
        QVERIFY(std::fabs(m.values.at("gqa_accuracy") - 0.5) < 1e-12);
        QVERIFY(std::fabs(m.values.at("nlvr2_accuracy") - 1.0 / 3.0) < 1e-12);
        QCOMPARE(m.values.at("cider"), captions.ciderD);
        QCOMPARE(m.values.at("bleu4"), captions.bleu4);
        QVERIFY(captions.ciderD > 0.0);
        const double average = (0.56 + 0.5 + 1.0 / 3.0 + captions.ciderD) / 4.0;
        QVERIFY(std::fabs(m.values.at("vl_average") - average) < 1e-12);
        QCOMPARE(m.mainName, std::string("vl_average"));
        QCOMPARE(m.main, m.values.at("vl_average"));
        QCOMPARE(m.values.size(), info.metrics.size());

        // evaluate() hands a generation task to evaluateVl.
        const auto viaEvaluate = ladder::evaluate(info, predictions, refs);
        QCOMPARE(viaEvaluate.main, m.main);
        QCOMPARE(viaEvaluate.invalid, m.invalid);

        // Only VQA examples scored: the other types report 0 and stay out of the average.
        const std::vector<TextExample> vqaOnly(refs.begin(), refs.begin() + 5);
        const auto part = ladder::evaluateVl(
            info, std::vector<std::string>(predictions.begin(), predictions.begin() + 5), vqaOnly);
        QCOMPARE(part.values.at("gqa_accuracy"), 0.0);
        QCOMPARE(part.values.at("cider"), 0.0);
        QVERIFY(std::fabs(part.main - 0.56) < 1e-12);

        // Errors.
        VERIFY_CONTAINS(
            errorOf([&] { ladder::evaluateVl(info, { "a" }, refs); }), "1 predictions for 12 references");
        TextExample bad = refs[0];
        bad.subtask.clear();
        bad.id = "x7";
        VERIFY_CONTAINS(
            errorOf([&] { ladder::evaluateVl(info, { "a" }, { bad }); }), "reference x7 has no VL task type");
        bad = refs[0];
        bad.references.clear();
        VERIFY_CONTAINS(errorOf([&] { ladder::evaluateVl(info, { "a" }, { bad }); }), "has no references");
        info.metrics.push_back("accuracy");
        VERIFY_CONTAINS(errorOf([&] { ladder::evaluateVl(info, predictions, refs); }),
            "metric 'accuracy' does not apply");
    }

    void loadedTaskScoresItsOwnTargets()
    {
        ladder::VlTaskOptions o;
        o.folder = makeFolder();
        const auto splits = ladder::loadVlTask(o);
        std::vector<std::string> predictions;
        for (const auto& ex : splits.validation)
            predictions.push_back(ex.target);
        const auto m = ladder::evaluate(splits.info, predictions, splits.validation);
        QCOMPARE(m.values.at("vqa_accuracy"), 1.0);
        QCOMPARE(m.values.at("gqa_accuracy"), 1.0);
        QCOMPARE(m.values.at("nlvr2_accuracy"), 1.0);
        QCOMPARE(m.invalid, std::size_t(0));
        // The train split's VQA target scores as the official evaluation would score it.
        QVERIFY(
            std::fabs(
                ladder::vlmetrics::vqaSoftAccuracy(splits.train[0].target, splits.train[0].references) - 1.0)
            < 1e-12);
    }

    void loadsTheSceneDemo()
    {
        // The built-in scene tasks (data/SceneTasks.h) are a VL folder of this layout.
        const std::string folder = ladder::test::makeTempDir() + "/scenes";
        ladder::SceneTaskOptions options;
        options.train = 40;
        options.validation = 8;
        options.test = 8;
        ladder::writeSceneTasks(folder, options);
        ladder::VlTaskOptions o;
        o.folder = folder;
        const auto splits = ladder::loadVlTask(o);
        QCOMPARE(splits.info.name, std::string("scenes"));
        QCOMPARE(splits.info.metrics,
            (std::vector<std::string> {
                "vqa_accuracy", "gqa_accuracy", "nlvr2_accuracy", "cider", "bleu4", "vl_average" }));
        QCOMPARE(splits.info.visualTokens, std::int64_t(ladder::kSceneCells));
        QCOMPARE(splits.info.visualDim, std::int64_t(options.visualDim));
        QVERIFY(splits.train.size() > 40); // captions expanded
        QCOMPARE(splits.validation.size(), std::size_t(8));
        QCOMPARE(splits.test.size(), std::size_t(8));
    }

    void runSpecVlTask()
    {
        const std::string folder = makeFolder();
        writeFeatures(folder + "/other.safetensors", { "img1", "img2", "img3" }, 16);
        const nlohmann::json j { { "backbone", "demo" },
            { "task",
                { { "type", "vl" }, { "path", folder }, { "features", "other.safetensors" },
                    { "visual_tokens", 4 }, { "tasks", { "vqa", "caption" } } } },
            { "method", { { "method", "ladder" } } } };
        const auto spec = ladder::RunSpec::fromJson(j, "run.json");
        QCOMPARE(spec.task.type, std::string("vl"));
        QCOMPARE(spec.task.name, std::string("auto"));
        const auto again = ladder::RunSpec::fromJson(spec.toJson(), "run.json");
        QCOMPARE(again.toJson().dump(), spec.toJson().dump());
        QCOMPARE(spec.toJson()["task"]["features"], nlohmann::json("other.safetensors"));
        QCOMPARE(spec.toJson()["task"]["visual_tokens"], nlohmann::json(4));
        QCOMPARE(spec.toJson()["task"]["tasks"], (nlohmann::json { "vqa", "caption" }));

        // loadTaskSplits: a relative "features" is read from the task folder; the filter and the tokens
        // apply.
        const auto splits = ladder::loadTaskSplits(again.task);
        QCOMPARE(splits.info.name, std::string("vl"));
        QCOMPARE(splits.info.visualFeatures, folder + "/other.safetensors");
        QCOMPARE(splits.info.visualTokens, std::int64_t(4)); // 16 boxes (4x4) pooled to 4 (2x2)
        QCOMPARE(splits.info.metrics,
            (std::vector<std::string> { "vqa_accuracy", "cider", "bleu4", "vl_average" }));

        // A spec of another type keeps its JSON: no VL field appears.
        const auto generic
            = ladder::RunSpec::fromJson({ { "task", { { "type", "generic" }, { "path", "x.csv" } } },
                { "method", { { "method", "lora" } } } });
        QVERIFY(!generic.toJson()["task"].contains("features"));
        QVERIFY(!generic.toJson()["task"].contains("tasks"));

        auto specError = [&](const nlohmann::json& task) {
            return errorOf([&] {
                ladder::RunSpec::fromJson(
                    { { "task", task }, { "method", { { "method", "ladder" } } } }, "run.json");
            });
        };
        VERIFY_CONTAINS(
            specError({ { "type", "vl" } }), "run.json: field task.path: missing (the VL task folder");
        VERIFY_CONTAINS(
            specError({ { "type", "vl" }, { "path", "f" }, { "features", 3 } }), "task.features: expected");
        VERIFY_CONTAINS(specError({ { "type", "vl" }, { "path", "f" }, { "visual_tokens", -1 } }),
            "task.visual_tokens: expected an integer >= 0");
        VERIFY_CONTAINS(specError({ { "type", "vl" }, { "path", "f" }, { "tasks", "vqa" } }),
            "task.tasks: expected a non-empty list");
        VERIFY_CONTAINS(specError({ { "type", "vl" }, { "path", "f" }, { "tasks", { "vqa", "vqa2" } } }),
            "task.tasks: expected a list of vqa, gqa, nlvr2, caption, got \"vqa2\"");
        VERIFY_CONTAINS(specError({ { "type", "vl" }, { "path", "f" }, { "tasks", { "gqa", "gqa" } } }),
            "task.tasks: \"gqa\" is listed twice");
        VERIFY_CONTAINS(specError({ { "type", "generic" }, { "path", "f.csv" }, { "features", "x" } }),
            "task.features: only a \"vl\" task takes it");
        VERIFY_CONTAINS(
            specError({ { "type", "vision" } }), "task.type: expected one of glue, demo, generic, vl");

        // The scene demo by name, before `ladder demo` built it.
        const std::string cache = ladder::test::makeTempDir();
        const char* previous = std::getenv("LADDER_DEMO_DIR");
        const std::string saved = previous ? previous : "";
        setenv("LADDER_DEMO_DIR", cache.c_str(), 1);
        const auto scenes
            = ladder::RunSpec::fromJson({ { "task", { { "type", "vl" }, { "name", "scenes" } } },
                { "method", { { "method", "ladder" } } } });
        VERIFY_CONTAINS(
            errorOf([&] { ladder::loadTaskSplits(scenes.task); }), "run `ladder demo` to build it");
        if (previous)
            setenv("LADDER_DEMO_DIR", saved.c_str(), 1);
        else
            unsetenv("LADDER_DEMO_DIR");
    }
};

QTEST_GUILESS_MAIN(TestVlTask)
#include "test_vl_task.moc"
