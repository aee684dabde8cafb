// Ladder Side-Tuning against the reference implementation (github.com/ylsung/Ladder-Side-Tuning,
// modeling_side_t5.py): logits, loss and every side-parameter gradient on the data that
// tools/reference/lst_reference.py computed with the reference itself (tests/data/reference-lst), the
// reference's parameter names (core/peft/LadderReferenceNames.h), `ladder forward --method ladder`, and the
// initialisation of the side network (random, and magnitude and Fisher pruning). docs/LST.md "Checked
// against the reference implementation".
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "model/ModelInputs.h"
#include "model/Safetensors.h"
#include "model/T5Checkpoint.h"
#include "model/T5Model.h"
#include "peft/Ladder.h"
#include "peft/LadderReferenceNames.h"
#include "util/Error.h"

using namespace ladder;

namespace {

constexpr double kTolerance = 1e-4; // relative, logits / loss / each gradient

// tests/data/reference-lst, or LADDER_REFERENCE_LST_DIR when set.
std::string dataDir()
{
    if (const char* env = std::getenv("LADDER_REFERENCE_LST_DIR"))
        return env;
    return ladder::test::testDataDir() + "/reference-lst";
}

std::string dataPath(const std::string& relative)
{
    return dataDir() + "/" + relative;
}

nlohmann::json manifest()
{
    std::ifstream in(dataPath("manifest.json"));
    if (!in)
        throw std::runtime_error(dataPath("manifest.json") + ": cannot open");
    return nlohmann::json::parse(in);
}

nlohmann::json configuration(const std::string& name)
{
    const auto m = manifest();
    for (const auto& c : m.at("configurations"))
        if (c.at("name").get<std::string>() == name)
            return c;
    throw std::runtime_error(dataPath("manifest.json") + ": no configuration " + name);
}

MethodOptions optionsOf(const nlohmann::json& c)
{
    auto o = MethodOptions::defaults("ladder");
    o.init = "random"; // the side weights are loaded from the reference's; the init cases set theirs
    o.r = c.at("r").get<std::int64_t>();
    o.keep = c.at("keep").get<std::vector<std::int64_t>>();
    return o;
}

Seq2SeqBatch referenceBatch(std::int64_t vocab)
{
    const auto in = ModelInputs::fromJsonFile(dataPath("inputs.json"), vocab);
    return { in.inputIds, in.attentionMask, in.labels };
}

QString q(const std::string& s)
{
    return QString::fromStdString(s);
}

} // namespace

class TestLadderReference : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        if (!std::filesystem::is_directory(dataDir()))
            QSKIP(qPrintable("reference data not found at " + q(dataDir())
                + " (written by tools/reference/lst_reference.py)"));
    }

    // ---- the reference's names ---------------------------------------------------------------------
    void referenceNames()
    {
        QCOMPARE(referenceSideName("side_encoder.downsample.embed.weight"),
            std::string("encoder.side_first_downsample.weight"));
        QCOMPARE(referenceSideName("side_decoder.downsample.3.bias"),
            std::string("decoder.side_downsamples.3.bias"));
        QCOMPARE(referenceSideName("side_encoder.gate.1"), std::string("encoder.side_gate_params.1"));
        QCOMPARE(referenceSideName("side_decoder.block.1.layer.1.EncDecAttention.k.weight"),
            std::string("decoder.side_block.1.layer.1.EncDecAttention.k.weight"));
        QCOMPARE(referenceSideName("side_encoder.final_layer_norm.weight"),
            std::string("encoder.final_side_layer_norm.weight"));
        QCOMPARE(referenceSideName("side_final_upsample.bias"), std::string("side_final_upsample.bias"));
        QCOMPARE(referenceSideName("side_merge_gate"), std::string("side_gate_params_merge_last"));
        QVERIFY_THROWS_EXCEPTION(
            Error, referenceSideName("side_encoder.ladder_attention.1.layer_norm.weight"));
        QVERIFY_THROWS_EXCEPTION(Error, referenceSideName("side_decoder.block.1.down.weight"));

        LadderSideOptions o;
        o.backbone.numLayers = 4;
        o.backbone.numDecoderLayers = 4;
        o.encoderKeep = { 1, 3 };
        o.decoderKeep = { 1, 3 };
        QVERIFY(isUnusedReferenceGate("encoder.side_gate_params.0", o));
        QVERIFY(isUnusedReferenceGate("decoder.side_gate_params.2", o));
        QVERIFY(!isUnusedReferenceGate("decoder.side_gate_params.3", o)); // kept
        QVERIFY(!isUnusedReferenceGate("decoder.side_gate_params.4", o)); // no such layer
        QVERIFY(!isUnusedReferenceGate("encoder.side_downsamples.0.weight", o));
    }

    // ---- logits, loss and gradients ----------------------------------------------------------------
    void forwardAndGradients_data()
    {
        QTest::addColumn<QString>("name");
        QTest::newRow("all layers") << "all";
        QTest::newRow("keep 1,3") << "keep";
    }

    void forwardAndGradients()
    {
        QFETCH(QString, name);
        const auto c = configuration(name.toStdString());
        const auto dir = dataPath(name.toStdString());
        auto loaded = loadT5(dataPath("backbone"));
        auto method = createMethod(loaded.model, optionsOf(c));
        auto& lst = dynamic_cast<LadderMethod&>(*method);
        auto side = lst.sideNetwork();
        loadReferenceSideWeights(side, dir + "/side_weights.safetensors");
        method->train(true); // as the reference trains (dropout is 0)

        const auto out = method->forward(referenceBatch(loaded.config.vocabSize));
        out.loss.backward();
        const auto expected = readSafetensors(dir + "/expected.safetensors");
        const double logitsError = test::relativeError(out.logits.detach(), expected.at("logits"));
        const double lossError = test::relativeError(out.loss.detach().reshape({ 1 }), expected.at("loss"));

        const auto gradients = readSafetensors(dir + "/gradients.safetensors");
        double worst = 0.0;
        std::string worstName, problems;
        std::set<std::string> compared;
        for (const auto& [ladderName, p] : method->namedTrainableParameters()) {
            const auto referenceName = referenceSideName(ladderName);
            if (!gradients.count(referenceName) || !p.grad().defined()) {
                problems += "no gradient to compare for " + referenceName + "; ";
                continue;
            }
            const double error = test::relativeError(p.grad(), gradients.at(referenceName));
            if (error > worst || worstName.empty()) {
                worst = error;
                worstName = referenceName;
            }
            compared.insert(referenceName);
        }
        // Every reference gradient has its LadderBench parameter; the reference's unused gates have none.
        for (const auto& [referenceName, _] : gradients)
            if (!compared.count(referenceName))
                problems += "reference gradient without a parameter: " + referenceName + "; ";
        for (const auto& unused : c.at("unused_parameters"))
            QVERIFY(isUnusedReferenceGate(unused.get<std::string>(), side->options()));

        qInfo(
            "reference LST '%s' (r %lld, keep %s): logits rel. error %.3g, loss rel. error %.3g (loss %.6f, "
            "reference %.6f); %zu side-parameter gradients, largest rel. error %.3g (%s)",
            qPrintable(name), static_cast<long long>(c.at("r").get<std::int64_t>()),
            c.at("keep").dump().c_str(), logitsError, lossError, out.loss.item<double>(),
            expected.at("loss").item<double>(), compared.size(), worst, worstName.c_str());
        QVERIFY2(problems.empty(), problems.c_str());
        QVERIFY2(logitsError < kTolerance, std::to_string(logitsError).c_str());
        QVERIFY2(lossError < kTolerance, std::to_string(lossError).c_str());
        QVERIFY2(
            worst < kTolerance, (worstName + ": gradient relative error " + std::to_string(worst)).c_str());
    }

    // ---- initialisation (init random): the reference's distributions -------------------------------
    void initialisationAsTheReference()
    {
        const auto init = manifest().at("initialisation");
        const auto& shapes = init.at("backbone");
        T5Config config;
        config.vocabSize = 64;
        config.dModel = shapes.at("d_model").get<std::int64_t>();
        config.dKv = shapes.at("d_kv").get<std::int64_t>();
        config.dFf = shapes.at("d_ff").get<std::int64_t>();
        config.numHeads = shapes.at("num_heads").get<std::int64_t>();
        config.numLayers = shapes.at("num_layers").get<std::int64_t>();
        config.numDecoderLayers = shapes.at("num_decoder_layers").get<std::int64_t>();
        config.relativeAttentionNumBuckets = shapes.at("relative_attention_num_buckets").get<std::int64_t>();
        at::manual_seed(7);
        T5ForConditionalGeneration backbone(config);
        auto options = MethodOptions::defaults("ladder");
        options.init = "random"; // the spread of the random initialisation
        options.r = init.at("r").get<std::int64_t>();
        auto method = createMethod(backbone, options);

        // Sample standard deviations of independent normals: within 25% of each other at these sizes (the
        // smallest tensor has 128 elements, a relative spread of about 6%); the dimension rules differ by r.
        const auto& reference = init.at("parameters");
        double worst = 1.0;
        std::string worstName, problems;
        std::size_t checked = 0;
        for (const auto& [ladderName, p] : method->namedTrainableParameters()) {
            const auto referenceName = referenceSideName(ladderName);
            if (!reference.contains(referenceName)) {
                problems += "no reference statistics for " + referenceName + "; ";
                continue;
            }
            const auto& stats = reference.at(referenceName);
            if (p.sizes().vec() != stats.at("shape").get<std::vector<std::int64_t>>()) {
                problems += referenceName + ": shape differs; ";
                continue;
            }
            const auto x = p.detach().to(at::kDouble);
            const double mean = x.mean().item<double>();
            const double std = (x - mean).square().mean().sqrt().item<double>();
            const double referenceStd = stats.at("std").get<double>();
            const double referenceMean = stats.at("mean").get<double>();
            ++checked;
            if (referenceStd == 0.0) { // constants: norms 1, biases and gates 0
                if (std != 0.0 || mean != referenceMean)
                    problems
                        += referenceName + ": expected the constant " + std::to_string(referenceMean) + "; ";
                continue;
            }
            const double ratio = std / referenceStd;
            if (std::abs(std::log(ratio)) > std::abs(std::log(worst))) {
                worst = ratio;
                worstName = referenceName;
            }
        }
        qInfo("init random against the reference's initialisation: %zu side tensors, largest std ratio %.3f "
              "(%s)",
            checked, worst, worstName.empty() ? "-" : worstName.c_str());
        QVERIFY2(problems.empty(), problems.c_str());
        QVERIFY2(worst > 0.8 && worst < 1.25, (worstName + ": std ratio " + std::to_string(worst)).c_str());
    }

    // ---- init magnitude / fisher: the reference's pruned side weights -------------------------------
    void pruningInitAsTheReference_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("init");
        for (const char* c : { "all", "keep" })
            for (const char* init : { "magnitude", "fisher" })
                QTest::newRow((std::string(c) + " " + init).c_str()) << c << init;
    }

    void pruningInitAsTheReference()
    {
        QFETCH(QString, name);
        QFETCH(QString, init);
        const auto c = configuration(name.toStdString());
        auto options = optionsOf(c);
        options.init = init.toStdString();
        options.fisherSamples = manifest().at("fisher_samples").get<std::int64_t>();

        // The Fisher examples one per batch, in file order, as the reference's batch size 1 sees them.
        std::vector<Seq2SeqBatch> examples;
        std::ifstream in(dataPath("fisher_examples.json"));
        const auto file = nlohmann::json::parse(in);
        for (const auto& e : file.at("examples")) {
            const auto ids = at::tensor(e.at("input_ids").get<std::vector<std::int64_t>>()).unsqueeze(0);
            const auto labels = at::tensor(e.at("labels").get<std::vector<std::int64_t>>()).unsqueeze(0);
            examples.push_back({ ids, at::ones_like(ids), labels });
        }
        std::size_t next = 0;
        BatchSource data = [&]() -> std::optional<Seq2SeqBatch> {
            if (next >= examples.size())
                return std::nullopt;
            return examples[next++];
        };

        auto loaded = loadT5(dataPath("backbone"));
        std::unique_ptr<Method> method;
        try {
            method = createMethod(loaded.model, options, data);
        } catch (const Error& e) {
            QFAIL(e.what());
        }
        if (init == "fisher")
            QCOMPARE(next, examples.size());
        std::map<std::string, at::Tensor> byReferenceName;
        for (const auto& [ladderName, p] : method->namedTrainableParameters())
            byReferenceName[referenceSideName(ladderName)] = p.detach();

        // The reference holds the kept backbone rows and columns in CPython's set order
        // (pruning_methods.select_weights), LadderBench in ascending order: compare the reference's tensors
        // sorted into ascending backbone order, and count those stored in that order already.
        const std::string stem = dataPath(name.toStdString() + "/init_" + init.toStdString());
        const auto expected = readSafetensors(stem + ".safetensors");
        std::ifstream indexFile(stem + "_indices.json");
        const auto indices = nlohmann::json::parse(indexFile);
        const auto ascendingOrder = [](const nlohmann::json& list) {
            return std::get<1>(at::sort(at::tensor(list.get<std::vector<std::int64_t>>())));
        };
        std::string differing;
        std::size_t same = 0, sameOrder = 0;
        for (const auto& [referenceName, value] : expected) {
            const auto it = byReferenceName.find(referenceName);
            if (it == byReferenceName.end()) {
                differing += referenceName + " (no such side parameter) ";
                continue;
            }
            auto sorted = value;
            if (indices.contains(referenceName)) {
                const auto& where = indices.at(referenceName);
                sorted = sorted.index_select(0, ascendingOrder(where.at("rows")));
                if (where.contains("cols"))
                    sorted = sorted.index_select(1, ascendingOrder(where.at("cols")));
            }
            if (!at::equal(it->second, sorted)) {
                differing += referenceName + " ";
                continue;
            }
            ++same;
            sameOrder += at::equal(it->second, value) ? 1 : 0;
        }
        qInfo("init %s, '%s' (r %lld, keep %s): %zu of %zu initialised side tensors hold the reference's "
              "backbone slices (%zu also in the reference's order)%s%s",
            qPrintable(init), qPrintable(name), static_cast<long long>(options.r),
            c.at("keep").dump().c_str(), same, expected.size(), sameOrder,
            differing.empty() ? "" : "; differing: ", differing.c_str());
        QVERIFY(!expected.empty());
        QVERIFY2(differing.empty(), differing.c_str());
    }

    // ---- the CLI: ladder forward --method ladder --side-weights ------------------------------------
    void cliForward()
    {
        const auto c = configuration("keep");
        const auto out = test::makeTempDir() + "/lst.safetensors";
        const auto r = test::runCli(
            { "forward", "--model", q(dataPath("backbone")), "--inputs", q(dataPath("inputs.json")), "--out",
                q(out), "--method", "ladder", "--r", QString::number(c.at("r").get<int>()), "--keep", "1,3",
                "--side-weights", q(dataPath("keep/side_weights.safetensors")) });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto got = readSafetensors(out);
        const auto expected = readSafetensors(dataPath("keep/expected.safetensors"));
        QCOMPARE(got.size(), std::size_t(2));
        const double logitsError = test::relativeError(got.at("logits"), expected.at("logits"));
        const double lossError = test::relativeError(got.at("loss"), expected.at("loss"));
        qInfo("ladder forward --method ladder --r 8 --keep 1,3: logits rel. error %.3g, loss rel. error %.3g",
            logitsError, lossError);
        QVERIFY(logitsError < kTolerance);
        QVERIFY(lossError < kTolerance);

        // The side flags need --method ladder; a misshapen weight names itself and the file.
        const auto noMethod = test::runCli({ "forward", "--model", q(dataPath("backbone")), "--inputs",
            q(dataPath("inputs.json")), "--out", q(out), "--r", "8" });
        QCOMPARE(noMethod.exitCode, 1);
        QVERIFY2(noMethod.err.find("--method ladder") != std::string::npos, noMethod.err.c_str());
        const auto wrongR = test::runCli({ "forward", "--model", q(dataPath("backbone")), "--inputs",
            q(dataPath("inputs.json")), "--out", q(out), "--method", "ladder", "--r", "4", "--keep", "1,3",
            "--side-weights", q(dataPath("keep/side_weights.safetensors")) });
        QCOMPARE(wrongR.exitCode, 1);
        QVERIFY2(wrongR.err.find("keep/side_weights.safetensors: tensor ") != std::string::npos,
            wrongR.err.c_str());
        QVERIFY2(wrongR.err.find("has shape") != std::string::npos, wrongR.err.c_str());
    }

    // ---- loading errors ----------------------------------------------------------------------------
    void missingUnexpectedOrMisshapenWeights()
    {
        const auto c = configuration("keep");
        auto loaded = loadT5(dataPath("backbone"));
        auto method = createMethod(loaded.model, optionsOf(c));
        auto side = dynamic_cast<LadderMethod&>(*method).sideNetwork();
        const auto weights = readSafetensors(dataPath("keep/side_weights.safetensors"));
        const std::string source = "side.safetensors";
        auto expectError = [&](const TensorMap& tensors, const std::vector<std::string>& parts) {
            try {
                loadReferenceSideWeights(side, tensors, source);
            } catch (const Error& e) {
                const std::string what = e.what();
                for (const auto& part : parts)
                    if (what.find(part) == std::string::npos)
                        return "'" + part + "' not in: " + what;
                return std::string();
            }
            return std::string("no error");
        };

        const std::string q1 = "decoder.side_block.3.layer.1.EncDecAttention.q.weight";
        auto missing = weights;
        QVERIFY(missing.erase(q1));
        auto error = expectError(missing, { source, "missing tensor " + q1, "side_decoder.block.3.layer.1" });
        QVERIFY2(error.empty(), error.c_str());

        auto misshapen = weights;
        misshapen["encoder.side_downsamples.1.weight"] = at::zeros({ 4, 16 });
        error = expectError(
            misshapen, { source, "encoder.side_downsamples.1.weight", "[4, 16]", "expected [4, 32]" });
        QVERIFY2(error.empty(), error.c_str());

        auto unexpected = weights;
        unexpected["encoder.side_downsamples.2.weight"] = at::zeros({ 4, 32 }); // layer 2 is dropped
        error = expectError(unexpected, { source, "unexpected tensor encoder.side_downsamples.2.weight" });
        QVERIFY2(error.empty(), error.c_str());

        auto badGate = weights;
        badGate["encoder.side_gate_params.0"] = at::zeros({ 2 });
        error = expectError(badGate, { source, "encoder.side_gate_params.0", "expected [1]" });
        QVERIFY2(error.empty(), error.c_str());

        // The file as written loads, unused gates of dropped layers included.
        QVERIFY(weights.count("encoder.side_gate_params.0"));
        loadReferenceSideWeights(side, weights, source);
        const auto names = method->namedTrainableParameters();
        for (const auto& [ladderName, p] : names)
            QVERIFY2(at::equal(p, weights.at(referenceSideName(ladderName))), ladderName.c_str());
    }
};

QTEST_GUILESS_MAIN(TestLadderReference)
#include "test_ladder_reference.moc"
