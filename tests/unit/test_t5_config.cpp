// config.json parsing: every missing or wrong field is an error naming the field; published shapes.
#include <fstream>

#include <QtTest>
#include <nlohmann/json.hpp>

#include "LadderTestHelpers.h"
#include "TestSupport.h"
#include "model/T5Checkpoint.h"
#include "model/T5Config.h"
#include "model/T5Model.h"
#include "util/Error.h"

using namespace ladder;

class TestT5Config : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void readsFixtureConfigs()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto v10
            = T5Config::fromJsonFile(test::fixture("t5-synthetic-hf/t5-v1_0-relu-synth/config.json"));
        QCOMPARE(v10.dKv, std::int64_t(12));
        QVERIFY(v10.tieWordEmbeddings);
        QVERIFY(!v10.isGatedAct());
        const auto v11
            = T5Config::fromJsonFile(test::fixture("t5-synthetic-hf/t5-v1_1-gated-gelu-synth/config.json"));
        QVERIFY(v11.isGatedAct());
        QCOMPARE(QString::fromStdString(v11.denseActFn()), QString("gelu_new"));
        QVERIFY(!v11.tieWordEmbeddings);
        QCOMPARE(v11.numLayers, std::int64_t(3));
        QCOMPARE(v11.numDecoderLayers, std::int64_t(2));
        QCOMPARE(v11.relativeAttentionMaxDistance, std::int64_t(20));
    }

    void badFieldsNameTheField_data()
    {
        QTest::addColumn<QString>("patch");
        QTest::addColumn<QString>("expect");
        QTest::newRow("not an object") << "[1,2]"
                                       << "JSON object";
        QTest::newRow("missing d_model") << R"({"d_model": null})"
                                         << "d_model";
        QTest::newRow("string d_ff") << R"({"d_ff": "big"})"
                                     << "d_ff";
        QTest::newRow("zero heads") << R"({"num_heads": 0})"
                                    << "num_heads";
        QTest::newRow("negative layers") << R"({"num_decoder_layers": -1})"
                                         << "num_decoder_layers";
        QTest::newRow("float vocab") << R"({"vocab_size": 32.5})"
                                     << "vocab_size";
        QTest::newRow("unknown activation") << R"({"feed_forward_proj": "gated-swish9"})"
                                            << "feed_forward_proj";
        QTest::newRow("activation not string") << R"({"feed_forward_proj": 3})"
                                               << "feed_forward_proj";
        QTest::newRow("tie not bool") << R"({"tie_word_embeddings": "yes"})"
                                      << "tie_word_embeddings";
        QTest::newRow("dropout > 1") << R"({"dropout_rate": 3})"
                                     << "dropout_rate";
        QTest::newRow("eos outside vocab") << R"({"eos_token_id": 99999})"
                                           << "outside the vocabulary";
        QTest::newRow("model type") << R"({"model_type": "bert"})"
                                    << "model_type";
        QTest::newRow("few buckets") << R"({"relative_attention_num_buckets": 2})"
                                     << "relative_attention_num_buckets";
    }

    void badFieldsNameTheField()
    {
        QFETCH(QString, patch);
        QFETCH(QString, expect);
        nlohmann::json base = T5Config::preset("t5-small").toJson();
        const auto p = nlohmann::json::parse(patch.toStdString());
        nlohmann::json doc;
        if (p.is_object()) {
            doc = base;
            for (const auto& [k, v] : p.items()) {
                if (v.is_null())
                    doc.erase(k);
                else
                    doc[k] = v;
            }
        } else {
            doc = p;
        }
        const auto path = test::makeTempDir() + "/config.json";
        std::ofstream(path) << doc.dump();
        try {
            T5Config::fromJsonFile(path);
            QFAIL("expected ladder::Error");
        } catch (const Error& e) {
            const std::string what = e.what();
            QVERIFY2(what.find("config.json") != std::string::npos, what.c_str());
            QVERIFY2(what.find(expect.toStdString()) != std::string::npos, what.c_str());
        }
    }

    void notJsonAtAll()
    {
        const auto path = test::makeTempDir() + "/config.json";
        std::ofstream(path) << "\x89PNG garbage {";
        QVERIFY_THROWS_EXCEPTION(Error, T5Config::fromJsonFile(path));
    }

    // HF's num_parameters() for t5-small is 60,506,624 (tied LM head counted once).
    void t5SmallParameterCount()
    {
        T5ForConditionalGeneration model(T5Config::preset("t5-small"));
        QCOMPARE(countParameters(*model), std::int64_t(60506624));
        const auto names = model->named_parameters(true).keys();
        QVERIFY(std::find(names.begin(), names.end(),
                    "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
            != names.end());
        QVERIFY(std::find(names.begin(), names.end(), "decoder.block.5.layer.2.DenseReluDense.wo.weight")
            != names.end());
        QVERIFY(std::find(names.begin(), names.end(), "lm_head.weight") == names.end());
    }

    // The count from the sizes alone (what the workbench's backbone picker shows before loading anything)
    // against the model's own count, for each feed-forward kind and both LM-head tyings, and against HF's
    // num_parameters() for t5-small.
    void parameterCountFromTheShape_data()
    {
        QTest::addColumn<QString>("ffn");
        QTest::addColumn<bool>("tied");
        QTest::addColumn<int>("decoderLayers");
        QTest::newRow("relu tied") << "relu" << true << 2;
        QTest::newRow("gated-gelu untied") << "gated-gelu" << false << 3;
        QTest::newRow("gated-silu tied") << "gated-silu" << true << 1;
    }

    void parameterCountFromTheShape()
    {
        QFETCH(QString, ffn);
        QFETCH(bool, tied);
        QFETCH(int, decoderLayers);
        T5Config c = test::lst::tinyConfig(2, decoderLayers);
        c.feedForwardProj = ffn.toStdString();
        c.tieWordEmbeddings = tied;
        T5ForConditionalGeneration model(c);
        QCOMPARE(c.parameterCount(), countParameters(*model));
        QCOMPARE(T5Config::preset("t5-small").parameterCount(), std::int64_t(60506624));
    }

    void mismatchedTensorIsNamed()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto dir = test::fixture("t5-synthetic-hf/t5-v1_0-relu-synth");
        auto tensors = readSafetensors(dir + "/model.safetensors");
        const auto config = T5Config::fromJsonFile(dir + "/config.json");
        {
            auto bad = tensors;
            bad.erase("encoder.block.1.layer.1.DenseReluDense.wo.weight");
            T5ForConditionalGeneration m(config);
            try {
                loadT5StateDict(m, bad, "model.safetensors");
                QFAIL("expected missing tensor error");
            } catch (const Error& e) {
                QVERIFY(std::string(e.what()).find(
                            "missing tensor encoder.block.1.layer.1.DenseReluDense.wo.weight")
                    != std::string::npos);
            }
        }
        {
            auto bad = tensors;
            bad["encoder.block.0.layer.0.SelfAttention.q.weight"] = at::zeros({ 24, 31 });
            T5ForConditionalGeneration m(config);
            try {
                loadT5StateDict(m, bad, "model.safetensors");
                QFAIL("expected shape error");
            } catch (const Error& e) {
                QVERIFY2(std::string(e.what()).find("q.weight has shape [24, 31], expected [24, 32]")
                        != std::string::npos,
                    e.what());
            }
        }
        {
            auto bad = tensors;
            bad["encoder.block.9.layer.0.SelfAttention.q.weight"] = at::zeros({ 24, 32 });
            T5ForConditionalGeneration m(config);
            QVERIFY_THROWS_EXCEPTION(Error, loadT5StateDict(m, bad, "model.safetensors"));
        }
        {
            // Tied keys may be absent.
            auto ok = tensors;
            ok.erase("lm_head.weight");
            ok.erase("encoder.embed_tokens.weight");
            ok.erase("decoder.embed_tokens.weight");
            T5ForConditionalGeneration m(config);
            loadT5StateDict(m, ok, "model.safetensors");
        }
    }
};

LADDER_TEST_GUILESS_MAIN(TestT5Config)
#include "test_t5_config.moc"
