// SweepGrid and SweepDialog: the paper's grids (Figures 5 and 6) expanded from a base spec, the
// interleaved layer dropping against the paper's own keep lists, scaling to small backbones, seeds,
// validation with RunSpec::fromJson and against the backbone's config.json.
#include <fstream>

#include <QDialogButtonBox>
#include <QPushButton>
#include <QtTest>

#include "SweepDialog.h"
#include "SweepGrid.h"
#include "TestSupport.h"
#include "train/RunSpec.h"

using namespace ladder;
using namespace ladder::widgets;
using nlohmann::json;

namespace {

json baseSpec(const std::string& method = "ladder")
{
    RunSpec spec;
    spec.name = "base";
    spec.backbone = "demo";
    spec.task.type = "demo";
    spec.task.name = "supersense";
    spec.method = MethodOptions::defaults(method);
    spec.training.maxSteps = 50;
    spec.training.batchSize = 8;
    return spec.toJson();
}

std::vector<std::int64_t> range(std::int64_t from, std::int64_t to, std::int64_t step = 1)
{
    std::vector<std::int64_t> values;
    for (auto v = from; v < to; v += step)
        values.push_back(v);
    return values;
}

} // namespace

class TestSweepDialog : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void interleavedDroppingGivesThePapersKeepLists()
    {
        // Table 5 of the paper: T5-base keeps 1,2,3,5,6,7,9,10,11 (3 of 12 dropped per stack, N = 6).
        QCOMPARE(
            SweepGrid::interleavedKeep(12, 3), (std::vector<std::int64_t> { 1, 2, 3, 5, 6, 7, 9, 10, 11 }));
        // T5-large keeps 1,3,...,23 (12 of 24 dropped); T5-3B keeps 23 only (23 dropped).
        QCOMPARE(SweepGrid::interleavedKeep(24, 12), range(1, 24, 2));
        QCOMPARE(SweepGrid::interleavedKeep(24, 23), (std::vector<std::int64_t> { 23 }));
        QCOMPARE(SweepGrid::interleavedKeep(12, 0), range(0, 12));
        QCOMPARE(SweepGrid::interleavedKeep(12, 6), range(1, 12, 2));
        QCOMPARE(SweepGrid::interleavedKeep(12, 9), (std::vector<std::int64_t> { 3, 7, 11 }));
        // At least one layer stays.
        QCOMPARE(SweepGrid::interleavedKeep(4, 9), (std::vector<std::int64_t> { 3 }));
    }

    void droppedLayerCountsScale()
    {
        QCOMPARE(SweepGrid::droppedLayerCounts(12, 12), (std::vector<std::int64_t> { 0, 6, 12, 18 }));
        QCOMPARE(SweepGrid::droppedLayerCounts(24, 24), (std::vector<std::int64_t> { 0, 6, 12, 18 }));
        QCOMPARE(SweepGrid::droppedLayerCounts(4, 4), (std::vector<std::int64_t> { 0, 2, 4, 6 }));
        QCOMPARE(SweepGrid::droppedLayerCounts(6, 6), (std::vector<std::int64_t> { 0, 3, 6, 9 }));
        QCOMPARE(SweepGrid::droppedLayerCounts(1, 1),
            (std::vector<std::int64_t> { 0, 1, 2 })); // 0, 0.5, 1, 1.5 rounded
    }

    void seedsParse()
    {
        QCOMPARE(SweepGrid::parseSeeds("0, 1,2 2"), (std::vector<std::uint64_t> { 0, 1, 2 }));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, SweepGrid::parseSeeds("0, -1"));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, SweepGrid::parseSeeds(" "));
        try {
            SweepGrid::parseSeeds("1, x");
        } catch (const std::invalid_argument& e) {
            QVERIFY(QString::fromUtf8(e.what()).contains(QStringLiteral("\"x\"")));
        }
    }

    void paperGridsExpand()
    {
        std::string note;
        const auto lst = SweepGrid::expand(
            baseSpec("ladder"), SweepPreset::LstReduction, { 0, 1 }, 12, 12, false, &note);
        QCOMPARE(lst.size(), std::size_t(8)); // 4 values x 2 seeds
        std::vector<std::int64_t> rs;
        for (const auto& spec : lst) {
            QCOMPARE(spec.at("method").at("method").get<std::string>(), std::string("ladder"));
            QVERIFY(!spec.contains("name"));
            rs.push_back(spec.at("method").at("r").get<std::int64_t>());
            // Same method as the base: its learning rate stays.
            QCOMPARE(spec.at("training").at("learning_rate").get<double>(), 3e-3);
            RunSpec::fromJson(spec); // valid
        }
        QCOMPARE(rs, (std::vector<std::int64_t> { 32, 32, 16, 16, 8, 8, 4, 4 }));
        QCOMPARE(lst[1].at("seed").get<int>(), 1);

        const auto adapter
            = SweepGrid::expand(baseSpec("ladder"), SweepPreset::AdapterHidden, { 0 }, 12, 12, false, &note);
        QCOMPARE(adapter.size(), std::size_t(4));
        QCOMPARE(adapter[0].at("method").at("hidden").get<int>(), 6);
        QCOMPARE(adapter[3].at("method").at("hidden").get<int>(), 48);
        // Another method than the base's: its paper learning rate (0 = the method's default).
        QCOMPARE(adapter[0].at("training").at("learning_rate").get<double>(), 0.0);
        QCOMPARE(RunSpec::fromJson(adapter[0]).training.learningRateFor("adapter"), 3e-4);
        QVERIFY(QString::fromStdString(note).contains(QStringLiteral("learning rate")));

        const auto lora = SweepGrid::expand(baseSpec("lora"), SweepPreset::LoraRank, { 3 }, 12, 12);
        QCOMPARE(lora.size(), std::size_t(4));
        std::vector<std::int64_t> ranks;
        for (const auto& spec : lora)
            ranks.push_back(spec.at("method").at("rank").get<std::int64_t>());
        QCOMPARE(ranks, (std::vector<std::int64_t> { 4, 8, 16, 32 }));
        QCOMPARE(lora[0].at("seed").get<int>(), 3);
        QCOMPARE(lora[0].at("training").at("batch_size").get<int>(), 8); // the base's training settings
    }

    // A QLoRA base: the rank sweep stays QLoRA (its int4 backbone kept), and Figure 6's baselines show QLoRA
    // as a method of its own beside LoRA.
    void qloraBaseSweepsQlora()
    {
        auto base = baseSpec("qlora");
        base["method"]["backbone_dtype"] = "int8";
        base["method"].erase("quant_group_size"); // int4 only
        const auto ranks = SweepGrid::expand(base, SweepPreset::LoraRank, { 0 }, 12, 12);
        QCOMPARE(ranks.size(), std::size_t(4));
        for (const auto& spec : ranks) {
            QCOMPARE(spec.at("method").at("method").get<std::string>(), std::string("qlora"));
            QCOMPARE(spec.at("method").at("backbone_dtype").get<std::string>(), std::string("int8"));
            QVERIFY(RunSpec::fromJson(spec).method.isLora());
        }
        const auto figure6 = SweepGrid::expand(base, SweepPreset::DroppedLayers, { 0 }, 12, 12, true);
        QCOMPARE(figure6.size(), std::size_t(20)); // 5 methods x 4 values
        QStringList methods;
        for (const auto& spec : figure6)
            if (!methods.contains(QString::fromStdString(spec.at("method").at("method").get<std::string>())))
                methods << QString::fromStdString(spec.at("method").at("method").get<std::string>());
        QCOMPARE(methods, (QStringList { "ladder", "adapter", "lora", "qlora", "bitfit" }));
        // A LoRA base sweeps LoRA, as before.
        const auto lora = SweepGrid::expand(baseSpec("lora"), SweepPreset::LoraRank, { 0 }, 12, 12);
        QCOMPARE(lora[0].at("method").at("method").get<std::string>(), std::string("lora"));
    }

    void droppedLayersFigure6()
    {
        std::string note;
        // T5-base depth: LST keeps the interleaved lists, baselines freeze N of 24 layers.
        const auto specs
            = SweepGrid::expand(baseSpec("ladder"), SweepPreset::DroppedLayers, { 0 }, 12, 12, true, &note);
        QCOMPARE(specs.size(), std::size_t(16)); // 4 methods x 4 values
        QCOMPARE(specs[0].at("method").at("keep"), json::array());
        QCOMPARE(specs[1].at("method").at("keep").get<std::vector<std::int64_t>>(),
            (std::vector<std::int64_t> { 1, 2, 3, 5, 6, 7, 9, 10, 11 }));
        QCOMPARE(specs[2].at("method").at("keep").get<std::vector<std::int64_t>>(), range(1, 12, 2));
        QCOMPARE(specs[3].at("method").at("keep").get<std::vector<std::int64_t>>(),
            (std::vector<std::int64_t> { 3, 7, 11 }));
        QStringList frozen;
        for (std::size_t i = 4; i < specs.size(); ++i)
            frozen << QStringLiteral("%1:%2")
                          .arg(QString::fromStdString(specs[i].at("method").at("method").get<std::string>()))
                          .arg(specs[i].at("method").value("freeze", 0));
        QCOMPARE(frozen,
            (QStringList { "adapter:0", "adapter:6", "adapter:12", "adapter:18", "lora:0", "lora:6",
                "lora:12", "lora:18", "bitfit:0", "bitfit:6", "bitfit:12", "bitfit:18" }));
        QVERIFY(!QString::fromStdString(note).contains(QStringLiteral("scaled")));

        // A 4 + 4 layer backbone: N scaled to {0, 2, 4, 6}, i.e. 0..3 of 4 side layers dropped per stack.
        const auto small
            = SweepGrid::expand(baseSpec("ladder"), SweepPreset::DroppedLayers, { 0 }, 4, 4, false, &note);
        QCOMPARE(small.size(), std::size_t(4));
        QCOMPARE(small[1].at("method").at("keep").get<std::vector<std::int64_t>>(),
            (std::vector<std::int64_t> { 1, 2, 3 }));
        QCOMPARE(small[2].at("method").at("keep").get<std::vector<std::int64_t>>(),
            (std::vector<std::int64_t> { 1, 3 }));
        QCOMPARE(small[3].at("method").at("keep").get<std::vector<std::int64_t>>(),
            (std::vector<std::int64_t> { 3 }));
        QVERIFY2(QString::fromStdString(note).contains(QStringLiteral("scaled to N in {0, 2, 4, 6}")),
            note.c_str());

        // Without baselines, a baseline base spec freezes.
        const auto freeze = SweepGrid::expand(baseSpec("bitfit"), SweepPreset::DroppedLayers, { 0 }, 4, 4);
        QCOMPARE(freeze.size(), std::size_t(4));
        QCOMPARE(freeze[3].at("method").at("freeze").get<int>(), 6);
        QCOMPARE(freeze[3].at("method").at("method").get<std::string>(), std::string("bitfit"));
    }

    void dialogAddsPresetsAndValidates()
    {
        SweepDialog dialog(baseSpec("ladder"));
        dialog.setBackboneLayers(4, 4);
        dialog.setSeedsText(QStringLiteral("0, 1"));
        dialog.setIncludeBaselines(true);
        QVERIFY(dialog.addPreset(SweepPreset::DroppedLayers));
        QCOMPARE(dialog.specJsons().size(), std::size_t(32)); // 4 methods x 4 values x 2 seeds
        QVERIFY(dialog.allValid());
        const auto specs = dialog.specs();
        QCOMPARE(specs.size(), std::size_t(32));
        QCOMPARE(specs[2].method.keep, (std::vector<std::int64_t> { 1, 2, 3 }));
        QCOMPARE(specs[3].seed, std::uint64_t(1));
        QVERIFY(dialog.noteText().contains(QStringLiteral("fewer than T5-base's 24")));
        // Adding the same grid again adds nothing; another grid appends.
        QVERIFY(dialog.addPreset(SweepPreset::DroppedLayers));
        QCOMPARE(dialog.specJsons().size(), std::size_t(32));
        // The LoRA grid's rank 32 is Figure 6's LoRA at N = 0 (default rank, no freezing, its paper learning
        // rate): those 2 specs (one per seed) are there already, so 4 x 2 - 2 = 6 are new.
        QVERIFY(dialog.addPreset(SweepPreset::LoraRank));
        QCOMPARE(dialog.specJsons().size(), std::size_t(38));
        QVERIFY(dialog.noteText().contains(QStringLiteral("fewer than T5-base's 24"))); // notes accumulate
        auto* ok = dialog.findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok);
        QVERIFY(ok->isEnabled());
        QCOMPARE(ok->text(), QStringLiteral("Queue 38 run(s)"));
        // For looking at the dialog: LADDER_TEST_SCREENSHOT_DIR=/some/dir keeps a picture of it.
        if (const QString dir = qEnvironmentVariable("LADDER_TEST_SCREENSHOT_DIR"); !dir.isEmpty())
            QVERIFY(dialog.grab().save(dir + "/sweep-dialog.png"));
        dialog.clearSpecs();
        QVERIFY(dialog.specJsons().empty());
        QVERIFY(!ok->isEnabled());
        // Bad seeds: nothing added, the reason shown.
        dialog.setSeedsText(QStringLiteral("zero"));
        QVERIFY(!dialog.addPreset(SweepPreset::LstReduction));
        QVERIFY(dialog.noteText().contains(QStringLiteral("\"zero\"")));
        QVERIFY(dialog.specJsons().empty());
    }

    void dialogChecksSpecsAgainstTheBackboneConfig()
    {
        // A tiny backbone: d_kv 16, so r = 32 cannot divide it; 2 + 2 layers.
        const std::string demo = test::makeTempDir();
        QVERIFY(QDir().mkpath(QString::fromStdString(demo + "/backbone")));
        std::ofstream(demo + "/backbone/config.json")
            << R"({"d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4,
            "num_layers": 2, "num_decoder_layers": 2, "vocab_size": 100, "feed_forward_proj": "relu",
            "tie_word_embeddings": true})";
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(demo));
        SweepDialog dialog(baseSpec("ladder"));
        qunsetenv("LADDER_DEMO_DIR");
        QCOMPARE(dialog.encoderLayers(), std::int64_t(2));
        QCOMPARE(dialog.decoderLayers(), std::int64_t(2));
        QVERIFY(dialog.noteText().contains(QStringLiteral("2 encoder + 2 decoder layers")));
        QVERIFY(dialog.addPreset(SweepPreset::LstReduction));
        QCOMPARE(dialog.errors().size(), std::size_t(4));
        QVERIFY2(QString::fromStdString(dialog.errors()[0]).contains(QStringLiteral("field r")),
            dialog.errors()[0].c_str());
        QVERIFY(dialog.errors()[1].empty() && dialog.errors()[2].empty() && dialog.errors()[3].empty());
        QVERIFY(!dialog.allValid());
        QVERIFY(dialog.specs().empty());
        QVERIFY(!dialog.findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok)->isEnabled());
        QVERIFY(dialog.noteText().contains(QStringLiteral("1 of 4 specs are invalid")));
    }

    void invalidBaseDisablesPresets()
    {
        json bad = baseSpec("ladder");
        bad["training"]["batch_size"] = 0;
        SweepDialog dialog(bad);
        QVERIFY(!dialog.addPreset(SweepPreset::LstReduction));
        QVERIFY(dialog.specJsons().empty());
        for (auto* button : dialog.findChildren<QPushButton*>())
            if (button->text().startsWith(QStringLiteral("LST r")))
                QVERIFY(!button->isEnabled());
    }
};

QTEST_MAIN(TestSweepDialog)
#include "test_sweepdialog.moc"
