// The workbench form's memory estimate on a decoder-only backbone (issue #21): on the llama-gqa fixture
// folder (a Llama with GQA and its SentencePiece tokenizer.model) and a generic JSONL task written through a
// prompt template, the form measures the task's lengths with the folder's tokenizer over the prompts, and
// the figure it shows is estimateRunSpec's (what the queue places runs by), `ladder estimate --model DIR`'s
// at those lengths, and within 1% of the training peak the same run then stores (the trainer's CPU meter).
#include <filesystem>

#include <QtTest>
#include <nlohmann/json.hpp>

#include "BackbonePicker.h"
#include "ExperimentForm.h"
#include "MemoryEstimateView.h"
#include "TestSupport.h"
#include "train/MemoryMeter.h"
#include "train/RunEstimate.h"
#include "train/Trainer.h"

using namespace ladder;
using namespace ladder::widgets;

class TestFormDecoderEstimate : public QObject {
    Q_OBJECT

private:
    std::string m_folder;
    std::string m_task;

private Q_SLOTS:
    void initTestCase()
    {
        installCpuMemoryTracker(); // before any tensor: the trainer's CPU meter counts from here
        // The bf16 row checks the replay of PyTorch's own CPU kernels; on a CPU with AVX-512 BF16 or AMX,
        // oneDNN's bf16 products add buffers the estimate does not replay (test_decoder_memory does the
        // same).
        if (qEnvironmentVariableIsEmpty("ONEDNN_MAX_CPU_ISA"))
            qputenv("ONEDNN_MAX_CPU_ISA", "AVX2");
        m_folder = (std::filesystem::path(test::testDataDir()) / ".." / "fixtures" / "decoder" / "llama-gqa")
                       .lexically_normal()
                       .string();
        if (!std::filesystem::exists(m_folder + "/model.safetensors"))
            QSKIP("tests/fixtures/decoder is missing");
        m_task = test::writeFruitTask(test::makeTempDir());
    }

    void formEstimateIsTheRunSpecsAndTheCliAndTheRun_data()
    {
        QTest::addColumn<QString>("method");
        QTest::addColumn<QString>("dtype");
        for (const char* m : { "full", "lora", "qlora", "ladder" })
            QTest::newRow(qPrintable(QString("%1 fp32").arg(m))) << m << "fp32";
        QTest::newRow("ladder bf16") << "ladder"
                                     << "bf16";
    }

    void formEstimateIsTheRunSpecsAndTheCliAndTheRun()
    {
        QFETCH(QString, method);
        QFETCH(QString, dtype);
        nlohmann::json methodJson { { "method", method.toStdString() } };
        if (method == "ladder") {
            methodJson["r"] = 2;
            methodJson["init"] = "random";
        }
        nlohmann::json task { { "type", "generic" }, { "path", m_task }, { "name", "fruit" },
            { "validation_fraction", 0.2 }, { "test_fraction", 0.2 },
            { "prompt_template", "Sentence: {text}\nWhat is it?" } };
        const nlohmann::json spec { { "backbone", m_folder }, { "task", task }, { "method", methodJson },
            { "training",
                { { "epochs", 1 }, { "batch_size", 8 }, { "max_source_length", 64 }, { "warmup_steps", 0 },
                    { "max_eval_examples", 4 }, { "dtype", dtype.toStdString() } } },
            { "device", "cpu" }, { "seed", 0 } };
        ExperimentForm form;
        QString error;
        QVERIFY2(form.setSpecJson(spec, &error), qPrintable(error));
        QVERIFY(form.backbonePicker()->info().llama.has_value());
        QTRY_VERIFY_WITH_TIMEOUT(form.trainingLengths().has_value(), 30000);
        QVERIFY(form.memoryEstimate()->estimate().has_value());
        const auto shown = form.memoryEstimate()->estimate()->total;
        const auto lengths = *form.trainingLengths();
        QCOMPARE(lengths.examples, std::size_t(48));

        std::vector<RunSpec> specs;
        QVERIFY2(form.specs(&specs, &error), qPrintable(error));
        QCOMPARE(estimateRunSpec(specs.front()).total, shown);

        // `ladder estimate` on the folder at the lengths the form measured.
        QStringList args { QStringLiteral("estimate"), QStringLiteral("--model"),
            QString::fromStdString(m_folder), QStringLiteral("--method"), method, QStringLiteral("--batch"),
            QStringLiteral("8"), QStringLiteral("--src-len"), QString::number(lengths.source),
            QStringLiteral("--tgt-len"), QString::number(lengths.target), QStringLiteral("--dtype"), dtype,
            QStringLiteral("--json") };
        if (method == "ladder")
            args << QStringLiteral("--r") << QStringLiteral("2");
        const auto cli = test::runCli(args);
        QVERIFY2(cli.exitCode == 0, cli.err.c_str());
        QCOMPARE(nlohmann::json::parse(cli.out).at("estimated_bytes").get<std::uint64_t>(), shown);

        TrainerObserver observer;
        const auto summary = Trainer(specs.front()).run(observer);
        QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());
        const double err = static_cast<double>(shown) / static_cast<double>(summary.peakAllocatedBytes) - 1.0;
        qInfo("%s %s: form %llu, stored %llu, error %+.3f%% (source %lld, target %lld)", qPrintable(method),
            qPrintable(dtype), static_cast<unsigned long long>(shown),
            static_cast<unsigned long long>(summary.peakAllocatedBytes), 100.0 * err,
            static_cast<long long>(lengths.source), static_cast<long long>(lengths.target));
        QVERIFY2(std::abs(err) < 0.01, qPrintable(QString("error %1%").arg(100.0 * err)));
    }
};

QTEST_MAIN(TestFormDecoderEstimate)
#include "test_form_decoder_estimate.moc"
