// The experiment form's vision-and-language tasks (issue 22): the VL page's fields (folder, feature file,
// visual tokens, task types) appear for task type "vl", a VL spec round-trips through the form unchanged
// (what `ladder train --config` reads), the scene demo is an entry of the demo list, missing files are
// problems under the form, and the estimate area says that VL runs are not priced yet.
#include <fstream>

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QtTest>

#include "ExperimentForm.h"
#include "MemoryEstimateView.h"
#include "TaskPicker.h"
#include "TestSupport.h"
#include "data/SceneTasks.h"
#include "train/RunSpec.h"

using namespace ladder;
using namespace ladder::widgets;
using nlohmann::json;

namespace {
template <typename T> T* child(QWidget* parent, const char* name)
{
    T* w = parent->findChild<T*>(QString::fromLatin1(name));
    if (!w)
        qFatal("no child %s", name);
    return w;
}

void touch(const std::string& path)
{
    std::ofstream(path) << "{}\n";
}

// A VL task folder's files (their content is not read by the form).
void makeVlFolder(const std::string& folder, bool features = true)
{
    QVERIFY(QDir().mkpath(QString::fromStdString(folder)));
    for (const char* split : { "train.jsonl", "validation.jsonl", "test.jsonl" })
        touch(folder + "/" + split);
    if (features)
        touch(folder + "/features.safetensors");
}

void chooseTaskType(ExperimentForm& form, const char* type)
{
    auto* combo = child<QComboBox>(&form, "taskTypeCombo");
    const int index = combo->findData(QString::fromLatin1(type));
    QVERIFY(index >= 0);
    combo->setCurrentIndex(index);
}
} // namespace

Q_DECLARE_METATYPE(json)

class TestExperimentFormVl : public QObject {
    Q_OBJECT

private:
    QString m_root;
    std::string m_demo;
    std::string m_vl; // a VL task folder with its three splits and features.safetensors

private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        m_root = QString::fromStdString(test::makeTempDir());
        m_demo = test::makeTinyDemo(m_root.toStdString());
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(m_demo));
        m_vl = m_root.toStdString() + "/vl-task";
        makeVlFolder(m_vl);
        touch(m_vl + "/clip-grid.safetensors");
    }

    void vlFieldsAppearForTypeVl()
    {
        ExperimentForm form;
        auto* path = child<QLineEdit>(&form, "vlPathEdit");
        auto* features = child<QLineEdit>(&form, "vlFeaturesEdit");
        auto* tokens = child<QSpinBox>(&form, "vlVisualTokensSpin");
        QVERIFY(!path->isVisibleTo(&form)); // the first launch's demo task
        QVERIFY(!form.taskPicker()->isVl());
        chooseTaskType(form, "vl");
        QVERIFY(form.taskPicker()->isVl());
        for (QWidget* w : std::initializer_list<QWidget*> { path, features, tokens,
                 child<QPushButton>(&form, "vlBrowseButton"),
                 child<QPushButton>(&form, "vlFeaturesBrowseButton") })
            QVERIFY2(w->isVisibleTo(&form), qPrintable(w->objectName()));
        for (const char* t : { "vqa", "gqa", "nlvr2", "caption" }) {
            auto* box = child<QCheckBox>(&form, qPrintable(QStringLiteral("vlTask_%1").arg(t)));
            QVERIFY(box->isVisibleTo(&form));
            QVERIFY(box->isChecked()); // all on: no filter
        }
        // 0 is the file's count, and the feature file defaults to the folder's features.safetensors.
        QCOMPARE(tokens->value(), 0);
        QVERIFY(!tokens->specialValueText().isEmpty());
        QVERIFY2(features->placeholderText().contains(QStringLiteral("features.safetensors")),
            qPrintable(features->placeholderText()));
        form.taskPicker()->setVlPath(QString::fromStdString(m_vl));
        QCOMPARE(features->placeholderText(),
            QStringLiteral("default: %1/features.safetensors").arg(QString::fromStdString(m_vl)));
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        QCOMPARE(
            form.specJson().at("task"), (json { { "type", "vl" }, { "path", m_vl }, { "name", "auto" } }));
    }

    void widgetsWriteTheVlFields()
    {
        ExperimentForm form;
        form.taskPicker()->setVlPath(QString::fromStdString(m_vl));
        child<QLineEdit>(&form, "vlFeaturesEdit")->setText(QStringLiteral("clip-grid.safetensors"));
        child<QSpinBox>(&form, "vlVisualTokensSpin")->setValue(16);
        child<QCheckBox>(&form, "vlTask_caption")->setChecked(false);
        const json expected { { "type", "vl" }, { "path", m_vl }, { "name", "auto" },
            { "features", "clip-grid.safetensors" }, { "visual_tokens", 16 },
            { "tasks", { "vqa", "gqa", "nlvr2" } } };
        QCOMPARE(form.specJson().at("task"), expected);
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        // What a run gets: RunSpec keeps the fields verbatim for the task loader.
        std::vector<RunSpec> specs;
        QString error;
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        QCOMPARE(specs.front().task.type, std::string("vl"));
        QCOMPARE(specs.front().task.path, m_vl);
        QCOMPARE(specs.front().task.generic.at("features"), json("clip-grid.safetensors"));
        QCOMPARE(specs.front().task.generic.at("visual_tokens"), json(16));
        QCOMPARE(specs.front().task.generic.at("tasks"), json({ "vqa", "gqa", "nlvr2" }));
        // Every type checked again: no filter.
        child<QCheckBox>(&form, "vlTask_caption")->setChecked(true);
        QVERIFY(!form.specJson().at("task").contains("tasks"));
    }

    void vlSpecRoundTrips_data()
    {
        QTest::addColumn<json>("task");
        QTest::addColumn<bool>("valid");
        QTest::newRow("folder") << json { { "type", "vl" }, { "path", m_vl }, { "name", "auto" } } << true;
        QTest::newRow("folder, named")
            << json { { "type", "vl" }, { "path", m_vl }, { "name", "my-vl" } } << true;
        QTest::newRow("every option") << json { { "type", "vl" }, { "path", m_vl }, { "name", "auto" },
            { "features", m_vl + "/clip-grid.safetensors" }, { "visual_tokens", 4 },
            { "tasks", { "gqa", "vqa" } } }
                                      << true;
        QTest::newRow("every type listed") << json { { "type", "vl" }, { "path", m_vl }, { "name", "auto" },
            { "tasks", { "caption", "nlvr2", "gqa", "vqa" } } }
                                           << true;
        QTest::newRow("scene demo") << json { { "type", "vl" }, { "name", "scenes" } } << false;
        QTest::newRow("scene demo with options") << json { { "type", "vl" }, { "name", "scenes" },
            { "visual_tokens", 4 }, { "tasks", { "nlvr2" } } }
                                                 << false;
    }

    void vlSpecRoundTrips()
    {
        QFETCH(json, task);
        QFETCH(bool, valid);
        ExperimentForm form;
        json spec = form.specJson();
        spec["task"] = task;
        QString error;
        QVERIFY2(form.setSpecJson(spec, &error), qPrintable(error));
        QCOMPARE(form.specJson(), spec);
        QVERIFY(form.taskPicker()->isVl());
        if (valid)
            QVERIFY2(form.isValid(), qPrintable(form.problem()));
        // Through a preset file and a second form.
        const QString path = m_root + QStringLiteral("/vl-preset.json");
        QVERIFY2(form.savePreset(path, &error), qPrintable(error));
        const auto read = RunSpec::fromFile(path.toStdString());
        QCOMPARE(read.task.type, std::string("vl"));
        ExperimentForm other;
        QVERIFY2(other.loadPreset(path, &error), qPrintable(error));
        QCOMPARE(other.specJson(), spec);
    }

    void vlProblemsShowUnderTheForm()
    {
        ExperimentForm form;
        auto* label = child<QLabel>(&form, "formProblemLabel");
        auto expectProblem = [&](const QString& part) {
            QVERIFY(!form.isValid());
            QVERIFY2(form.problem().contains(part), qPrintable(form.problem()));
            QCOMPARE(label->text(), form.problem());
            QVERIFY(!form.runButton()->isEnabled());
        };
        // A missing feature file (named, or the folder's default).
        form.taskPicker()->setVlPath(QString::fromStdString(m_vl));
        child<QLineEdit>(&form, "vlFeaturesEdit")->setText(QStringLiteral("missing.safetensors"));
        expectProblem(
            QStringLiteral("feature file %1/missing.safetensors").arg(QString::fromStdString(m_vl)));
        child<QLineEdit>(&form, "vlFeaturesEdit")->clear();
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        const std::string bare = m_root.toStdString() + "/vl-no-features";
        makeVlFolder(bare, false);
        form.taskPicker()->setVlPath(QString::fromStdString(bare));
        expectProblem(QStringLiteral("feature file %1/features.safetensors is missing")
                          .arg(QString::fromStdString(bare)));
        // A task.json that names the features: the loader reads it from there.
        std::ofstream(bare + "/task.json") << R"({"kind": "vl", "features": "grid.safetensors"})";
        Q_EMIT form.taskPicker()->changed();
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        // A folder without its splits, a path that is no folder, no task type checked.
        const std::string empty = m_root.toStdString() + "/vl-empty";
        QVERIFY(QDir().mkpath(QString::fromStdString(empty)));
        form.taskPicker()->setVlPath(QString::fromStdString(empty));
        expectProblem(QStringLiteral("has no train.jsonl"));
        form.taskPicker()->setVlPath(QString::fromStdString(m_vl + "/train.jsonl"));
        expectProblem(QStringLiteral("is not a folder"));
        form.taskPicker()->setVlPath(QString::fromStdString(m_vl));
        for (const char* t : { "vqa", "gqa", "nlvr2", "caption" })
            child<QCheckBox>(&form, qPrintable(QStringLiteral("vlTask_%1").arg(t)))->setChecked(false);
        expectProblem(QStringLiteral("check at least one task type"));
        child<QCheckBox>(&form, "vlTask_gqa")->setChecked(true);
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        // A spec the form cannot show is refused with RunSpec's message, the form unchanged.
        const auto before = form.specJson();
        json bad = before;
        bad["task"]["visual_tokens"] = -3;
        QString error;
        QVERIFY(!form.setSpecJson(bad, &error));
        QVERIFY2(error.contains(QStringLiteral("visual_tokens")), qPrintable(error));
        QCOMPARE(form.specJson(), before);
    }

    void sceneDemoIsADemoEntry()
    {
        ExperimentForm form;
        auto* demo = child<QComboBox>(&form, "demoTaskCombo");
        const int index = demo->findText(QStringLiteral("Scenes (VL demo)"));
        QVERIFY(index >= 0);
        demo->setCurrentIndex(index);
        QVERIFY(form.taskPicker()->isVl());
        QCOMPARE(form.specJson().at("task"), (json { { "type", "vl" }, { "name", "scenes" } }));
        QVERIFY(child<QLabel>(&form, "demoInfoLabel")->text().contains(QStringLiteral("ladder demo")));
        // Not built in this test's demo cache: a problem saying how to build it.
        const QString scenes = QString::fromStdString(sceneTasksDir());
        QVERIFY(scenes.startsWith(QString::fromStdString(m_demo)));
        QVERIFY(!QFileInfo(scenes).exists());
        QVERIFY(!form.isValid());
        QVERIFY2(form.problem().contains(QStringLiteral("ladder demo")), qPrintable(form.problem()));
        makeVlFolder(scenes.toStdString());
        Q_EMIT form.taskPicker()->changed();
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        std::vector<RunSpec> specs;
        QString error;
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        QCOMPARE(specs.front().task.type, std::string("vl"));
        QCOMPARE(specs.front().task.name, std::string("scenes"));
        QVERIFY(specs.front().task.path.empty());
        // A spec naming the scene demo shows it as this entry; a WordNet task switches back.
        ExperimentForm other;
        json spec = other.specJson();
        spec["task"] = { { "type", "vl" }, { "name", "scenes" } };
        QVERIFY2(other.setSpecJson(spec, &error), qPrintable(error));
        QCOMPARE(child<QComboBox>(&other, "taskTypeCombo")->currentData().toString(), QStringLiteral("demo"));
        QCOMPARE(
            child<QComboBox>(&other, "demoTaskCombo")->currentText(), QStringLiteral("Scenes (VL demo)"));
        demo->setCurrentIndex(demo->findText(QStringLiteral("supersense")));
        QCOMPARE(form.specJson().at("task"), (json { { "type", "demo" }, { "name", "supersense" } }));
        QVERIFY(!form.taskPicker()->isVl());
        QDir(scenes).removeRecursively();
    }

    void estimateSaysVlIsNotPricedYet()
    {
        ExperimentForm form;
        QVERIFY(form.memoryEstimate()->estimate().has_value()); // the demo task is priced
        form.taskPicker()->setVlPath(QString::fromStdString(m_vl));
        QVERIFY2(!form.memoryEstimate()->estimate().has_value(), qPrintable(form.memoryEstimate()->text()));
        QVERIFY2(form.memoryEstimate()->text().contains(
                     QStringLiteral("No estimate for vision-and-language runs yet")),
            qPrintable(form.memoryEstimate()->text()));
        QVERIFY(form.memoryEstimate()->fits());
        QVERIFY(!form.estimateInput().has_value());
        QVERIFY(form.lengthsLabel()->text().isEmpty());
        QVERIFY2(form.isValid(), qPrintable(form.problem())); // no estimate is no problem
        // Changing the batch keeps the message; Fit to device says the same and changes nothing.
        auto* batch = child<QSpinBox>(&form, "batchSpin");
        batch->setValue(7);
        QVERIFY(form.memoryEstimate()->text().contains(QStringLiteral("vision-and-language")));
        form.budgetEdit()->setText(QStringLiteral("1GiB"));
        form.fitToDevice();
        QVERIFY2(
            form.fitLabel()->text().contains(QStringLiteral("No estimate for vision-and-language runs yet")),
            qPrintable(form.fitLabel()->text()));
        QCOMPARE(batch->value(), 7);
        // Back to a text task: the estimate again.
        chooseTaskType(form, "demo");
        QVERIFY(form.memoryEstimate()->estimate().has_value());
        QVERIFY(form.estimateInput().has_value());
    }
};

LADDER_TEST_MAIN(TestExperimentFormVl)
#include "test_experimentform_vl.moc"
