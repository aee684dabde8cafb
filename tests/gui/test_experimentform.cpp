// The experiment form and its parts: seeds, the keep-list presets, the method options, backbone
// parameter counts (against a real model's), run-spec JSON round trips through RunSpec (what `ladder
// train` reads), presets on disk, and clear errors for bad input.
#include <cmath>
#include <fstream>

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QtTest>

#include "BackbonePicker.h"
#include "ExperimentForm.h"
#include "KeepListEditor.h"
#include "MemoryEstimateView.h"
#include "MethodOptionsEditor.h"
#include "TaskPicker.h"
#include "TestSupport.h"
#include "train/MemoryMeter.h"
#include "train/MemoryPlan.h"
#include "train/StoreRecorder.h"
#include "train/Trainer.h"

using namespace ladder;
using namespace ladder::widgets;
using Seeds = std::vector<std::uint64_t>;
Q_DECLARE_METATYPE(Seeds)

namespace {
template <typename T> T* child(QWidget* parent, const char* name)
{
    T* w = parent->findChild<T*>(QString::fromLatin1(name));
    if (!w)
        qFatal("no child %s", name);
    return w;
}
} // namespace

class TestExperimentForm : public QObject {
    Q_OBJECT

private:
    QString m_root;
    std::string m_demo;
    std::string m_glue; // the RTE fixture's first rows, in GLUE's folder layout

    // The first `rows` data rows of a GLUE TSV file (and its header).
    static void copyRows(const std::string& from, const std::string& to, int rows)
    {
        std::ifstream in(from);
        std::ofstream out(to);
        std::string line;
        for (int i = 0; i <= rows && std::getline(in, line); ++i)
            out << line << '\n';
    }

private Q_SLOTS:
    void initTestCase()
    {
        installCpuMemoryTracker(); // before any tensor: the trainer's CPU meter counts from here
        LADDER_REQUIRE_FIXTURES();
        m_root = QString::fromStdString(test::makeTempDir());
        m_demo = test::makeTinyDemo(m_root.toStdString());
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(m_demo));
        m_glue = m_root.toStdString() + "/RTE";
        QVERIFY(QDir().mkpath(QString::fromStdString(m_glue)));
        const auto rte = test::fixturesDir() + "/glue/RTE/";
        copyRows(rte + "train.tsv", m_glue + "/train.tsv", 48);
        copyRows(rte + "dev.tsv", m_glue + "/dev.tsv", 16);
        copyRows(rte + "test.tsv", m_glue + "/test.tsv", 8);
    }

    void parseSeeds_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<bool>("ok");
        QTest::addColumn<Seeds>("seeds");
        QTest::newRow("one") << "3" << true << Seeds { 3 };
        QTest::newRow("list") << "0, 1, 2" << true << Seeds { 0, 1, 2 };
        QTest::newRow("range") << "0-2" << true << Seeds { 0, 1, 2 };
        QTest::newRow("mixed") << "5, 0-1" << true << Seeds { 5, 0, 1 };
        QTest::newRow("empty") << "" << false << Seeds {};
        QTest::newRow("negative") << "-1" << false << Seeds {};
        QTest::newRow("word") << "zero" << false << Seeds {};
        QTest::newRow("reversed range") << "3-1" << false << Seeds {};
        QTest::newRow("huge range") << "0-100000" << false << Seeds {};
    }

    void parseSeeds()
    {
        QFETCH(QString, text);
        QFETCH(bool, ok);
        QFETCH(Seeds, seeds);
        Seeds got;
        QString error;
        QCOMPARE(ExperimentForm::parseSeeds(text, &got, &error), ok);
        if (ok)
            QCOMPARE(got, seeds);
        else
            QVERIFY2(error.startsWith(QStringLiteral("seeds:")), qPrintable(error));
    }

    void keepPresets()
    {
        using P = KeepListEditor::Preset;
        // The paper's T5-base list at 12 layers.
        QCOMPARE(KeepListEditor::presetLayers(P::PaperT5Base, 12),
            (std::vector<std::int64_t> { 1, 2, 3, 5, 6, 7, 9, 10, 11 }));
        QCOMPARE(KeepListEditor::presetLayers(P::EveryOther, 6), (std::vector<std::int64_t> { 1, 3, 5 }));
        QCOMPARE(KeepListEditor::presetLayers(P::LastOnly, 6), (std::vector<std::int64_t> { 5 }));
        QCOMPARE(KeepListEditor::presetLayers(P::All, 3), (std::vector<std::int64_t> { 0, 1, 2 }));

        KeepListEditor editor;
        editor.setLayerCount(12);
        QVERIFY(editor.keep().empty()); // all kept
        editor.applyPreset(P::PaperT5Base);
        QCOMPARE(editor.keep(), (std::vector<std::int64_t> { 1, 2, 3, 5, 6, 7, 9, 10, 11 }));
        QVERIFY(!editor.layerBox(4)->isChecked());
        editor.layerBox(4)->setChecked(true);
        QCOMPARE(editor.keep(), (std::vector<std::int64_t> { 1, 2, 3, 4, 5, 6, 7, 9, 10, 11 }));
        // Fewer layers keep the checked state of those that remain.
        editor.setLayerCount(6);
        QCOMPARE(editor.keep(), (std::vector<std::int64_t> { 1, 2, 3, 4, 5 }));
        for (int i = 0; i < 6; ++i)
            editor.layerBox(i)->setChecked(false);
        QVERIFY(!editor.anyKept());
    }

    void backbonePickerShowsTheDemoAndRejectsBadFolders()
    {
        BackbonePicker picker;
        QCOMPARE(picker.backbone(), QStringLiteral("demo"));
        QVERIFY(picker.info().config.has_value());
        const auto details = picker.findChild<QLabel*>(QStringLiteral("backboneDetails"))->text();
        QVERIFY2(details.contains(QStringLiteral("2+2 layers, d_model 32")), qPrintable(details));
        QVERIFY2(details.contains(QStringLiteral("float32")), qPrintable(details));
        QString error;
        QVERIFY(!picker.addFolder(m_root, true, &error));
        QVERIFY2(error.contains(QStringLiteral("config.json")), qPrintable(error));
        QCOMPARE(picker.backbone(), QStringLiteral("demo"));
        QVERIFY(picker.addFolder(QString::fromStdString(m_demo + "/backbone"), true, &error));
        QVERIFY(picker.backbone().endsWith(QStringLiteral("/backbone")));
        QCOMPARE(picker.folders().size(), 1);
        // The demo's decoder is the second built-in entry; choosing it reads its folder (not built here).
        QVERIFY(picker.setBackbone(QStringLiteral("demo-llama")));
        QCOMPARE(picker.backbone(), QStringLiteral("demo-llama"));
        QCOMPARE(picker.folders().size(), 1);
        QVERIFY2(
            picker.info().error.contains(QStringLiteral("ladder demo")), qPrintable(picker.info().error));
    }

    // A decoder folder (tests/fixtures/decoder/llama-gqa): the picker names the architecture, and the form's
    // fields follow it: the keep list has the decoder's layers, LoRA offers q, k, v, o, gate, up, down (not
    // T5's wi, wo), LST's T5-only options are off.
    void decoderBackboneShapesTheForm()
    {
        const auto folder
            = QDir::cleanPath(QString::fromStdString(test::testDataDir() + "/../fixtures/decoder/llama-gqa"));
        if (!QFileInfo::exists(folder + QStringLiteral("/config.json")))
            QSKIP("tests/fixtures/decoder is missing");
        ExperimentForm form;
        QString error;
        QVERIFY2(form.backbonePicker()->addFolder(folder, true, &error), qPrintable(error));
        const auto& info = form.backbonePicker()->info();
        QVERIFY(info.llama.has_value());
        QCOMPARE(QString::fromStdString(info.shape.architecture), QStringLiteral("llama"));
        const auto details
            = form.backbonePicker()->findChild<QLabel*>(QStringLiteral("backboneDetails"))->text();
        QVERIFY2(details.contains(QStringLiteral(
                     "Llama (decoder-only) · 2 layers, hidden 64, 4 heads / 2 key-value heads")),
            qPrintable(details));
        auto* editor = form.methodEditor();
        auto* method = child<QComboBox>(editor, "methodCombo");
        method->setCurrentIndex(method->findData(QStringLiteral("lora")));
        for (const char* t : { "q", "k", "v", "o", "gate", "up", "down" })
            QVERIFY2(!child<QCheckBox>(editor, (std::string("loraTarget_") + t).c_str())->isHidden(), t);
        for (const char* t : { "wi", "wo" })
            QVERIFY2(child<QCheckBox>(editor, (std::string("loraTarget_") + t).c_str())->isHidden(), t);
        child<QCheckBox>(editor, "loraTarget_gate")->setChecked(true);
        child<QCheckBox>(editor, "loraTarget_wi")->setChecked(true); // hidden: not part of the options
        const auto targets = editor->options().targets;
        QVERIFY(std::find(targets.begin(), targets.end(), "gate") != targets.end());
        QVERIFY(std::find(targets.begin(), targets.end(), "wi") == targets.end());
        method->setCurrentIndex(method->findData(QStringLiteral("ladder")));
        QCOMPARE(editor->findChild<KeepListEditor*>()->layerCount(), 2);
        QVERIFY(!child<QComboBox>(editor, "ladderAblation")->isEnabled());
        editor->options().validate(info.shape); // the form's LST options are valid on this decoder
        // The prompt template: shown for a decoder, written into the task when not empty, read back.
        auto* tpl = form.findChild<QPlainTextEdit*>(QStringLiteral("promptTemplate"));
        QVERIFY(tpl && !tpl->isHidden());
        QVERIFY(!form.specJson().at("task").contains("prompt_template"));
        tpl->setPlainText(QStringLiteral("Sentence: {text}\nFruit?"));
        auto spec = form.specJson();
        QCOMPARE(spec.at("task").at("prompt_template").get<std::string>(),
            std::string("Sentence: {text}\nFruit?"));
        tpl->clear();
        QVERIFY(form.setSpecJson(spec));
        QCOMPARE(tpl->toPlainText(), QStringLiteral("Sentence: {text}\nFruit?"));
        QVERIFY(form.backbonePicker()->setBackbone(QStringLiteral("demo")));
        QVERIFY(tpl->isHidden());
    }

    void methodOptionsFromWidgets()
    {
        MethodOptionsEditor editor;
        editor.setLayerCount(4);
        auto* method = child<QComboBox>(&editor, "methodCombo");
        method->setCurrentIndex(method->findData(QStringLiteral("lora")));
        child<QSpinBox>(&editor, "loraRank")->setValue(8);
        child<QCheckBox>(&editor, "loraTarget_k")->setChecked(true);
        child<QCheckBox>(&editor, "loraTarget_v")->setChecked(false);
        child<QSpinBox>(&editor, "freezeLayers")->setValue(2);
        auto o = editor.options();
        QCOMPARE(QString::fromStdString(o.method), QStringLiteral("lora"));
        QCOMPARE(o.rank, std::int64_t(8));
        QCOMPARE(o.targets, (std::vector<std::string> { "q", "k" }));
        QCOMPARE(o.freeze, std::int64_t(2));
        child<QCheckBox>(&editor, "loraTarget_q")->setChecked(false);
        child<QCheckBox>(&editor, "loraTarget_k")->setChecked(false);
        QVERIFY(editor.problem().contains(QStringLiteral("target")));

        method->setCurrentIndex(method->findData(QStringLiteral("adapter")));
        child<QSpinBox>(&editor, "adapterHidden")->setValue(12);
        QCOMPARE(editor.options().hidden, std::int64_t(12));
        method->setCurrentIndex(method->findData(QStringLiteral("prompt")));
        child<QSpinBox>(&editor, "promptCount")->setValue(7);
        QCOMPARE(editor.options().prompts, std::int64_t(7));

        // setOptions shows a ladder spec in the widgets.
        MethodOptions lst = MethodOptions::defaults("ladder");
        lst.r = 16;
        lst.keep = { 1, 3 };
        lst.gateTemperature = 0.5;
        lst.init = "magnitude";
        editor.setOptions(lst);
        QCOMPARE(editor.method(), QStringLiteral("ladder"));
        QCOMPARE(child<QSpinBox>(&editor, "ladderR")->value(), 16);
        const auto back = editor.options();
        QCOMPARE(back.keep, (std::vector<std::int64_t> { 1, 3 }));
        QCOMPARE(back.gateTemperature, 0.5);
        QCOMPARE(QString::fromStdString(back.init), QStringLiteral("magnitude"));
    }

    // Issue 18's controls: QLoRA in the method list (int4 or int8 only), the backbone storage of every
    // method but full, and LST's memory options, each with a tooltip, through options() and setOptions().
    void memoryOptionsInTheEditor()
    {
        MethodOptionsEditor editor;
        editor.setLayerCount(4);
        auto* method = child<QComboBox>(&editor, "methodCombo");
        auto* dtype = child<QComboBox>(&editor, "backboneDtype");
        auto* group = child<QComboBox>(&editor, "quantGroupSize");
        const int qloraIndex = method->findData(QStringLiteral("qlora"));
        QVERIFY(qloraIndex >= 0);
        QVERIFY2(method->itemText(qloraIndex).contains(QStringLiteral("QLoRA")),
            qPrintable(method->itemText(qloraIndex)));
        for (const char* name : { "backboneDtype", "quantGroupSize", "sideCheckpoint", "sideAttention",
                 "ladderDtype", "sideHeads", "ladderR" })
            QVERIFY2(!child<QWidget>(&editor, name)->toolTip().isEmpty(), name);

        // QLoRA: LoRA's page, int4 by default, fp32 and bf16 not offered.
        method->setCurrentIndex(qloraIndex);
        QVERIFY(child<QSpinBox>(&editor, "loraRank")->isVisibleTo(&editor));
        QCOMPARE(dtype->currentData().toString(), QStringLiteral("int4"));
        auto* items = qobject_cast<QStandardItemModel*>(dtype->model());
        QVERIFY(!items->item(dtype->findData(QStringLiteral("fp32")))->isEnabled());
        QVERIFY(!items->item(dtype->findData(QStringLiteral("bf16")))->isEnabled());
        QVERIFY(group->isEnabled());
        child<QSpinBox>(&editor, "loraRank")->setValue(16);
        group->setCurrentIndex(group->findData(128));
        auto o = editor.options();
        QCOMPARE(QString::fromStdString(o.method), QStringLiteral("qlora"));
        QVERIFY(o.isLora());
        QCOMPARE(o.rank, std::int64_t(16));
        QCOMPARE(QString::fromStdString(o.backboneDtype), QStringLiteral("int4"));
        QCOMPARE(o.quantGroupSize, std::int64_t(128));
        dtype->setCurrentIndex(dtype->findData(QStringLiteral("int8")));
        QVERIFY(!group->isEnabled()); // int4 only
        QCOMPARE(QString::fromStdString(editor.options().backboneDtype), QStringLiteral("int8"));
        child<QCheckBox>(&editor, "loraTarget_q")->setChecked(false);
        child<QCheckBox>(&editor, "loraTarget_v")->setChecked(false);
        QVERIFY(editor.problem().contains(QStringLiteral("target"))); // as LoRA
        child<QCheckBox>(&editor, "loraTarget_v")->setChecked(true);
        // Leaving QLoRA leaves its quantised backbone: LoRA starts at fp32, every dtype offered again.
        method->setCurrentIndex(method->findData(QStringLiteral("lora")));
        QCOMPARE(dtype->currentData().toString(), QStringLiteral("fp32"));
        QVERIFY(items->item(dtype->findData(QStringLiteral("fp32")))->isEnabled());
        // Full fine-tuning trains the backbone: no storage row.
        method->setCurrentIndex(method->findData(QStringLiteral("full")));
        QVERIFY(!dtype->isVisibleTo(&editor));
        QCOMPARE(QString::fromStdString(editor.options().backboneDtype), QStringLiteral("fp32"));
        method->setCurrentIndex(method->findData(QStringLiteral("bitfit")));
        QVERIFY(dtype->isVisibleTo(&editor));
        dtype->setCurrentIndex(dtype->findData(QStringLiteral("bf16")));
        QCOMPARE(QString::fromStdString(editor.options().backboneDtype), QStringLiteral("bf16"));

        // LST's memory options.
        method->setCurrentIndex(method->findData(QStringLiteral("ladder")));
        child<QCheckBox>(&editor, "sideCheckpoint")->setChecked(true);
        child<QComboBox>(&editor, "sideAttention")->setCurrentText(QStringLiteral("sdpa"));
        child<QComboBox>(&editor, "ladderDtype")->setCurrentText(QStringLiteral("bf16"));
        child<QSpinBox>(&editor, "sideHeads")->setValue(2);
        dtype->setCurrentIndex(dtype->findData(QStringLiteral("int4")));
        group->setCurrentIndex(group->findData(32));
        const auto lst = editor.options();
        QVERIFY(lst.sideCheckpoint);
        QCOMPARE(QString::fromStdString(lst.sideAttention), QStringLiteral("sdpa"));
        QCOMPARE(QString::fromStdString(lst.ladderDtype), QStringLiteral("bf16"));
        QCOMPARE(lst.sideHeads, std::int64_t(2));
        QCOMPARE(QString::fromStdString(lst.backboneDtype), QStringLiteral("int4"));
        QCOMPARE(lst.quantGroupSize, std::int64_t(32));

        // setOptions shows them again, from any method shown before (QLoRA's int4 does not leak).
        MethodOptionsEditor other;
        other.setLayerCount(4);
        child<QComboBox>(&other, "methodCombo")->setCurrentIndex(qloraIndex);
        other.setOptions(lst);
        QCOMPARE(other.options().toJson(), lst.toJson());
        auto int8 = MethodOptions::defaults("qlora");
        int8.backboneDtype = "int8";
        other.setOptions(int8);
        QCOMPARE(other.options().toJson(), int8.toJson());
        other.setOptions(MethodOptions::defaults("lora"));
        QCOMPARE(other.options().toJson(), MethodOptions::defaults("lora").toJson());
        // Defaults write no new field: existing specs keep their hashes.
        other.setOptions(MethodOptions::defaults("ladder"));
        QCOMPARE(other.options().toJson(), MethodOptions::defaults("ladder").toJson());
    }

    // The new controls in the form: the spec JSON round-trips through RunSpec (what `ladder train` reads)
    // and another form, and the live estimate follows each of them.
    void memoryOptionsRoundTripAndDriveTheEstimate()
    {
        ExperimentForm form;
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        QSignalSpy changed(&form, &ExperimentForm::specChanged);
        child<QCheckBox>(&form, "sideCheckpoint")->setChecked(true);
        child<QComboBox>(&form, "sideAttention")->setCurrentText(QStringLiteral("sdpa"));
        child<QComboBox>(&form, "ladderDtype")->setCurrentText(QStringLiteral("bf16"));
        child<QSpinBox>(&form, "sideHeads")->setValue(2);
        auto* dtype = child<QComboBox>(&form, "backboneDtype");
        dtype->setCurrentIndex(dtype->findData(QStringLiteral("int8")));
        QVERIFY(changed.count() >= 5);
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        const auto input = form.estimateInput();
        QVERIFY(input.has_value());
        QVERIFY(input->method.sideCheckpoint);
        QCOMPARE(QString::fromStdString(input->method.sideAttention), QStringLiteral("sdpa"));
        QCOMPARE(QString::fromStdString(input->method.backboneDtype), QStringLiteral("int8"));
        // The estimate shown is the estimate of that input.
        QVERIFY(form.memoryEstimate()->estimate().has_value());
        QCOMPARE(form.memoryEstimate()->estimate()->total, estimateTrainingMemory(*input).total);

        const auto json = form.specJson();
        QCOMPARE(json.at("method").at("side_checkpoint").get<bool>(), true);
        QCOMPARE(json.at("method").at("side_attention").get<std::string>(), std::string("sdpa"));
        QCOMPARE(json.at("method").at("ladder_dtype").get<std::string>(), std::string("bf16"));
        QCOMPARE(json.at("method").at("side_heads").get<int>(), 2);
        QCOMPARE(json.at("method").at("backbone_dtype").get<std::string>(), std::string("int8"));
        const auto spec = RunSpec::fromJson(json);
        QCOMPARE(spec.method.toJson(), json.at("method"));
        ExperimentForm other;
        QString error;
        QVERIFY2(other.setSpecJson(json, &error), qPrintable(error));
        QCOMPARE(other.specJson(), json);

        // QLoRA keeps the int8 backbone the form had (QLoRA is int4 or int8); int4 needs the tiny backbone's
        // group (32 divides d_model 32; 64 does not: a problem naming the field).
        auto* method = child<QComboBox>(&other, "methodCombo");
        method->setCurrentIndex(method->findData(QStringLiteral("qlora")));
        QVERIFY2(other.isValid(), qPrintable(other.problem()));
        QCOMPARE(other.specJson().at("method").at("backbone_dtype").get<std::string>(), std::string("int8"));
        auto* otherDtype = child<QComboBox>(&other, "backboneDtype");
        otherDtype->setCurrentIndex(otherDtype->findData(QStringLiteral("int4")));
        QVERIFY(!other.isValid());
        QVERIFY2(other.problem().contains(QStringLiteral("quant_group_size")), qPrintable(other.problem()));
        auto* group = child<QComboBox>(&other, "quantGroupSize");
        group->setCurrentIndex(group->findData(32));
        QVERIFY2(other.isValid(), qPrintable(other.problem()));
        const auto qlora = other.specJson();
        QCOMPARE(qlora.at("method").at("method").get<std::string>(), std::string("qlora"));
        QCOMPARE(qlora.at("method").at("backbone_dtype").get<std::string>(), std::string("int4"));
        QCOMPARE(qlora.at("method").at("quant_group_size").get<int>(), 32);
        ExperimentForm third;
        QVERIFY2(third.setSpecJson(qlora, &error), qPrintable(error));
        QCOMPARE(third.specJson(), qlora);
    }

    // Fit to device sets the batch the plan gives for the form's estimate input and the budget; when even
    // batch 1 does not fit, the memory options (and the batch with them); a bad budget says why.
    void fitToDeviceSetsThePlannedBatch()
    {
        ExperimentForm form;
        QTRY_VERIFY_WITH_TIMEOUT(form.trainingLengths().has_value(), 30000);
        auto* batch = child<QSpinBox>(&form, "batchSpin");
        const auto input = *form.estimateInput();
        auto at = input;
        at.batch = 5;
        const auto budget = estimateTrainingMemory(at).total; // batch 5 fits exactly, 6 does not
        QVERIFY(batch->value() != 5);
        form.budgetEdit()->setText(QString::number(budget));
        QTest::mouseClick(form.fitButton(), Qt::LeftButton);
        QCOMPARE(batch->value(), 5);
        QCOMPARE(std::int64_t(batch->value()), largestFittingBatch(input, budget).value);
        QVERIFY2(
            form.fitLabel()->text().contains(QStringLiteral("batch 5")), qPrintable(form.fitLabel()->text()));
        QCOMPARE(form.memoryEstimate()->estimate()->total, budget);

        // Without a budget: the CPU's available RAM (far more than the tiny backbone needs).
        form.budgetEdit()->clear();
        QTest::mouseClick(form.fitButton(), Qt::LeftButton);
        QVERIFY2(form.fitLabel()->text().contains(QStringLiteral("of RAM available")),
            qPrintable(form.fitLabel()->text()));
        QVERIFY(batch->value() > 5); // (MemAvailable moves: the exact figure is not compared)

        // A budget below batch 1 of the form's LST but above a smaller option set's.
        auto one = *form.estimateInput();
        one.batch = 1;
        const auto given = estimateTrainingMemory(one).total;
        std::uint64_t smallest = given;
        for (const auto& c : memoryOptionCandidates(one.method, one.config)) {
            auto priced = one;
            priced.method = c.options;
            smallest = std::min(smallest, estimateTrainingMemory(priced).total);
        }
        QVERIFY(smallest < given);
        const auto tight = smallest + (given - smallest) / 2;
        const auto expected = fitToBudget(one, tight, 65536);
        QVERIFY(expected.ok && expected.optionsChanged);
        form.budgetEdit()->setText(QString::number(tight));
        QTest::mouseClick(form.fitButton(), Qt::LeftButton);
        QCOMPARE(form.methodEditor()->options().toJson(), expected.options.toJson());
        QCOMPARE(std::int64_t(batch->value()), expected.batch);
        QVERIFY2(form.fitLabel()->text().contains(QStringLiteral("even batch 1 needs")),
            qPrintable(form.fitLabel()->text()));
        QVERIFY2(form.isValid(), qPrintable(form.problem()));

        // Nothing fits; a budget that does not parse.
        const int before = batch->value();
        form.budgetEdit()->setText(QStringLiteral("1KiB"));
        QTest::mouseClick(form.fitButton(), Qt::LeftButton);
        QVERIFY2(form.fitLabel()->text().contains(QStringLiteral("nothing fits")),
            qPrintable(form.fitLabel()->text()));
        QCOMPARE(batch->value(), before);
        form.budgetEdit()->setText(QStringLiteral("24XB"));
        QTest::mouseClick(form.fitButton(), Qt::LeftButton);
        QVERIFY2(form.fitLabel()->text().contains(QStringLiteral("unknown unit")),
            qPrintable(form.fitLabel()->text()));
        QCOMPARE(batch->value(), before);
    }

    void formBuildsValidatedSpecsPerSeed()
    {
        ExperimentForm form;
        child<QSpinBox>(&form, "ladderR")->setValue(4);
        child<QSpinBox>(&form, "batchSpin")->setValue(12);
        child<QLineEdit>(&form, "learningRateEdit")->setText(QStringLiteral("3e-3"));
        child<QLineEdit>(&form, "seedsEdit")->setText(QStringLiteral("0-2"));
        std::vector<RunSpec> specs;
        QString error;
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        QCOMPARE(specs.size(), std::size_t(3));
        for (std::size_t i = 0; i < specs.size(); ++i) {
            QCOMPARE(specs[i].seed, std::uint64_t(i));
            QCOMPARE(specs[i].method.r, std::int64_t(4));
            QCOMPARE(specs[i].training.batchSize, std::int64_t(12));
            QCOMPARE(specs[i].training.learningRate, 3e-3);
            QCOMPARE(QString::fromStdString(specs[i].backbone), QStringLiteral("demo"));
            QCOMPARE(QString::fromStdString(specs[i].task.type), QStringLiteral("demo"));
        }
    }

    // The Name field: empty gives each run its default name (shown as the placeholder, following the form);
    // a typed name is the spec's name, ending in the seed when there are several seeds.
    void nameFieldNamesTheRuns()
    {
        ExperimentForm form;
        child<QSpinBox>(&form, "ladderR")->setValue(4);
        child<QLineEdit>(&form, "learningRateEdit")->setText(QStringLiteral("1e-3"));
        auto* name = child<QLineEdit>(&form, "runNameEdit");
        QVERIFY(name->text().isEmpty());
        QCOMPARE(form.defaultRunName(), QStringLiteral("LST r4 lr 1e-3 · seed 0"));
        QCOMPARE(name->placeholderText(), form.defaultRunName());
        std::vector<RunSpec> specs;
        QString error;
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        QVERIFY(specs[0].name.empty()); // the store names it (newRunFor): the spec's hash is unchanged
        QCOMPARE(QString::fromStdString(newRunFor(specs[0], RunState::Queued).name), form.defaultRunName());
        child<QLineEdit>(&form, "seedsEdit")->setText(QStringLiteral("0-1"));
        name->setText(QStringLiteral("  my  LST "));
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        QCOMPARE(specs.size(), std::size_t(2));
        QCOMPARE(QString::fromStdString(specs[0].name), QStringLiteral("my LST · seed 0"));
        QCOMPARE(QString::fromStdString(specs[1].name), QStringLiteral("my LST · seed 1"));
        QCOMPARE(runSpecHash(specs[0]), runSpecHash(RunSpec::fromJson([&] {
            auto j = specs[0].toJson();
            j.erase("name");
            return j;
        }())));
        // A loaded spec shows its name.
        child<QLineEdit>(&form, "seedsEdit")->setText(QStringLiteral("0"));
        QVERIFY2(form.setSpecJson(specs[1].toJson(), &error), qPrintable(error));
        QCOMPARE(name->text(), QStringLiteral("my LST · seed 1"));
    }

    // "GPUs per run" is the spec's training.processes; the estimate is then a rank's (its share of the
    // global batch), equal to the single-process estimate at that batch.
    void gpusPerRunIsTheSpecsProcesses()
    {
        ExperimentForm form;
        child<QSpinBox>(&form, "ladderR")->setValue(4);
        child<QSpinBox>(&form, "batchSpin")->setValue(16);
        QCOMPARE(child<QSpinBox>(&form, "processesSpin")->value(), 1);
        std::vector<RunSpec> specs;
        QString error;
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        QCOMPARE(specs[0].training.processes, std::int64_t(1));
        QVERIFY(!specs[0].toJson().at("training").contains("processes"));
        const auto single = form.memoryEstimate()->estimate()->total;
        child<QSpinBox>(&form, "processesSpin")->setValue(2);
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        QCOMPARE(specs[0].training.processes, std::int64_t(2));
        QCOMPARE(specs[0].training.batchSize, std::int64_t(16)); // the global batch
        const auto perRank = form.memoryEstimate()->estimate()->total;
        QVERIFY(perRank < single);
        child<QSpinBox>(&form, "processesSpin")->setValue(1);
        child<QSpinBox>(&form, "batchSpin")->setValue(8);
        QCOMPARE(form.memoryEstimate()->estimate()->total, perRank);
        // A loaded spec shows its processes.
        auto json = specs[0].toJson();
        json["training"]["processes"] = 3;
        QVERIFY2(form.setSpecJson(json, &error), qPrintable(error));
        QCOMPARE(child<QSpinBox>(&form, "processesSpin")->value(), 3);
    }

    void memoryEstimateFollowsTheForm()
    {
        ExperimentForm form;
        child<QSpinBox>(&form, "ladderR")->setValue(4);
        child<QSpinBox>(&form, "batchSpin")->setValue(12);
        child<QSpinBox>(&form, "maxSourceLengthSpin")->setValue(20);
        QVERIFY(form.memoryEstimate()->estimate().has_value());
        // The task's lengths are measured off the GUI thread; the estimate then uses them.
        QTRY_VERIFY_WITH_TIMEOUT(form.trainingLengths().has_value(), 30000);
        const auto lengths = *form.trainingLengths();
        QCOMPARE(lengths.examples, std::size_t(48));
        QVERIFY(lengths.source > 0 && lengths.source <= 20); // cut at max_source_length
        QVERIFY(lengths.target > 1); // a label and </s>
        QVERIFY(form.lengthsLabel()->text().contains(QStringLiteral("source %1 tokens").arg(lengths.source)));
        const auto before = form.memoryEstimate()->estimate()->total;
        // A larger batch needs more memory; the lengths stay (they do not depend on the batch).
        child<QSpinBox>(&form, "batchSpin")->setValue(48);
        QVERIFY(form.memoryEstimate()->estimate()->total > before);
        QVERIFY(form.memoryEstimate()->text().contains(QStringLiteral("batch 48")));
        QVERIFY(form.trainingLengths().has_value());
        // A longer source limit is measured again.
        child<QSpinBox>(&form, "maxSourceLengthSpin")->setValue(64);
        QVERIFY(!form.trainingLengths().has_value());
        QTRY_VERIFY_WITH_TIMEOUT(form.trainingLengths().has_value(), 30000);
        QVERIFY(form.trainingLengths()->source >= lengths.source);
    }

    // The estimate the form shows against the training peak the same run then stores (the trainer's CPU
    // meter: the tracking allocator over the training steps), for every method in fp32 and bf16, on the
    // demo task and on a GLUE task (the RTE fixture's first 48 training rows, in GLUE's layout). One epoch
    // of batch 8 sees every example, so the longest batch the estimate prices is trained on.
    void formEstimateMatchesStoredPeak_data()
    {
        QTest::addColumn<QString>("task");
        QTest::addColumn<QString>("method");
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<int>("accumulation");
        for (const char* task : { "demo", "rte" })
            for (const char* dtype : { "fp32", "bf16" })
                for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" })
                    QTest::newRow(qPrintable(QString("%1 %2 %3").arg(task, m, dtype)))
                        << task << m << dtype << 1;
        // Gradient accumulation: the later micro-batches of a group run with the earlier ones' gradients
        // live.
        for (const char* dtype : { "fp32", "bf16" })
            for (const char* m : { "full", "lora", "ladder" })
                QTest::newRow(qPrintable(QString("demo %1 %2 accumulation 2").arg(m, dtype)))
                    << "demo" << m << dtype << 2;
    }

    void formEstimateMatchesStoredPeak()
    {
        QFETCH(QString, task);
        QFETCH(QString, method);
        QFETCH(QString, dtype);
        QFETCH(int, accumulation);
        nlohmann::json taskJson = task == "demo"
            ? nlohmann::json { { "type", "demo" }, { "name", "supersense" } }
            : nlohmann::json { { "type", "glue" }, { "path", m_glue }, { "name", "auto" } };
        nlohmann::json methodJson { { "method", method.toStdString() } };
        if (method == "prompt")
            methodJson["prompts"] = 10;
        const nlohmann::json spec { { "backbone", "demo" }, { "task", taskJson }, { "method", methodJson },
            { "training",
                { { "epochs", 1 }, { "batch_size", 8 }, { "max_source_length", 64 }, { "warmup_steps", 0 },
                    { "max_eval_examples", 4 }, { "dtype", dtype.toStdString() },
                    { "gradient_accumulation", accumulation } } },
            { "device", "cpu" }, { "seed", 0 } };
        ExperimentForm form;
        QString error;
        QVERIFY2(form.setSpecJson(spec, &error), qPrintable(error));
        QTRY_VERIFY_WITH_TIMEOUT(form.trainingLengths().has_value(), 30000);
        const auto shown = form.memoryEstimate()->estimate()->total;
        std::vector<RunSpec> specs;
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        TrainerObserver observer;
        const auto summary = Trainer(specs.front()).run(observer);
        QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());
        const double measured = static_cast<double>(summary.peakAllocatedBytes);
        const double err = static_cast<double>(shown) / measured - 1.0;
        qInfo("%s %s %s: form %llu, stored %llu, error %+.2f%% (source %lld, target %lld)", qPrintable(task),
            qPrintable(method), qPrintable(dtype), static_cast<unsigned long long>(shown),
            static_cast<unsigned long long>(summary.peakAllocatedBytes), 100.0 * err,
            static_cast<long long>(form.trainingLengths()->source),
            static_cast<long long>(form.trainingLengths()->target));
        QVERIFY2(std::abs(err) < 0.02, qPrintable(QString("error %1%").arg(100.0 * err)));
    }

    void formShowsProblems_data()
    {
        QTest::addColumn<QString>("widget");
        QTest::addColumn<QString>("value");
        QTest::addColumn<QString>("expected");
        // r must divide d_model 32 of the tiny backbone: checked against its config.
        QTest::newRow("r does not divide d_model") << "ladderR"
                                                   << "3"
                                                   << "field r";
        QTest::newRow("bad learning rate") << "learningRateEdit"
                                           << "fast"
                                           << "learning rate";
        QTest::newRow("bad seeds") << "seedsEdit"
                                   << "a,b"
                                   << "seeds:";
    }

    void formShowsProblems()
    {
        QFETCH(QString, widget);
        QFETCH(QString, value);
        QFETCH(QString, expected);
        ExperimentForm form;
        QVERIFY(form.isValid());
        if (auto* spin = form.findChild<QSpinBox*>(widget))
            spin->setValue(value.toInt());
        else
            child<QLineEdit>(&form, qPrintable(widget))->setText(value);
        QVERIFY(!form.isValid());
        QVERIFY2(form.problem().contains(expected), qPrintable(form.problem()));
        QVERIFY(!form.runButton()->isEnabled());
        QCOMPARE(form.findChild<QLabel*>(QStringLiteral("formProblemLabel"))->text(), form.problem());
    }

    void glueFolderIsDetected()
    {
        ExperimentForm form;
        const QString rte = QString::fromStdString(test::fixture("glue/RTE"));
        if (!QFileInfo(rte).isDir())
            QSKIP("no GLUE RTE fixture");
        form.taskPicker()->setGluePath(rte);
        QCOMPARE(form.taskPicker()->detectedGlueTask(), QStringLiteral("rte"));
        QVERIFY2(form.isValid(), qPrintable(form.problem()));
        form.taskPicker()->setGluePath(m_root);
        QVERIFY(!form.isValid());
    }

    void presetsRoundTripThroughLadderTrainsFormat()
    {
        ExperimentForm form;
        auto* method = child<QComboBox>(&form, "methodCombo");
        method->setCurrentIndex(method->findData(QStringLiteral("adapter")));
        child<QSpinBox>(&form, "adapterHidden")->setValue(6);
        child<QSpinBox>(&form, "freezeLayers")->setValue(1);
        child<QSpinBox>(&form, "epochsSpin")->setValue(3);
        child<QLineEdit>(&form, "seedsEdit")->setText(QStringLiteral("7"));
        const QString path = m_root + QStringLiteral("/preset.json");
        QString error;
        QVERIFY2(form.savePreset(path, &error), qPrintable(error));

        // The file is a run spec `ladder train --config` reads.
        const auto spec = RunSpec::fromFile(path.toStdString());
        QCOMPARE(QString::fromStdString(spec.method.method), QStringLiteral("adapter"));
        QCOMPARE(spec.method.hidden, std::int64_t(6));
        QCOMPARE(spec.method.freeze, std::int64_t(1));
        QCOMPARE(spec.training.epochs, std::int64_t(3));
        QCOMPARE(spec.seed, std::uint64_t(7));

        ExperimentForm other;
        QVERIFY2(other.loadPreset(path, &error), qPrintable(error));
        QCOMPARE(other.specJson(), form.specJson());

        // A bad preset: the error names the file and the field, and the form does not change.
        const QString bad = m_root + QStringLiteral("/bad.json");
        auto json = form.specJson();
        json["training"]["batch_size"] = -1;
        std::ofstream(bad.toStdString()) << json.dump();
        const auto before = other.specJson();
        QVERIFY(!other.loadPreset(bad, &error));
        QVERIFY2(error.contains(bad) && error.contains(QStringLiteral("batch_size")), qPrintable(error));
        QCOMPARE(other.specJson(), before);
        std::ofstream(bad.toStdString()) << "{not json";
        QVERIFY(!other.loadPreset(bad, &error));
        QVERIFY2(error.contains(QStringLiteral("not valid JSON")), qPrintable(error));
        QVERIFY(!other.loadPreset(m_root + QStringLiteral("/missing.json"), &error));
        QVERIFY2(error.contains(QStringLiteral("cannot open")), qPrintable(error));
    }
};

LADDER_TEST_MAIN(TestExperimentForm)
#include "test_experimentform.moc"
