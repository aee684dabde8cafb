// GPU checks (label gpu): the backbone on CUDA matches HF's fixture outputs, LST trains there, and the
// caching allocator's statistics see it. Skips with a message when no CUDA device is present.
#include <cstdio>

#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>

#include "TestSupport.h"
#include "device/Devices.h"
#include "model/ModelInputs.h"
#include "model/T5Checkpoint.h"
#include "peft/Method.h"
#include "train/MemoryMeter.h"

using namespace ladder;

class TestCuda : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        if (!cuda::available())
            QSKIP("no CUDA device: GPU tests run on a machine with one (this build was compiled with CUDA support)"
                  " ");
        LADDER_REQUIRE_FIXTURES();
    }

    void backboneParityOnCuda()
    {
        const auto root = test::fixture("t5-synthetic-hf/t5-v1_1-gated-gelu-synth");
        T5LoadOptions o;
        o.device = c10::Device("cuda:0");
        auto loaded = loadT5(root, o);
        const auto expected = readSafetensors(root + "/expected/expected_outputs.safetensors");
        const auto inputs = ModelInputs::fromJsonFile(root + "/expected/inputs.json", loaded.config.vocabSize);
        c10::NoGradGuard noGrad;
        const auto out = loaded.model->forward(inputs.inputIds.cuda(), inputs.attentionMask.cuda(), inputs.labels.cuda());
        const double err = test::relativeError(out.logits.cpu(), expected.at("logits"));
        qInfo("CUDA logits rel. error %.3e", err);
        QVERIFY(err < 1e-4);
    }

    void ladderStepAndMemoryStats()
    {
        MemoryMeter meter(c10::Device("cuda:0"));
        meter.resetPeak();
        at::manual_seed(0);
        T5ForConditionalGeneration backbone(T5Config::preset("t5-small"));
        backbone->to(c10::Device("cuda:0"));
        auto options = MethodOptions::defaults("ladder");
        auto method = createMethod(backbone, options);
        method->train(true);
        Seq2SeqBatch b{at::randint(2, 32000, {8, 64}, at::kLong).cuda(), at::ones({8, 64}, at::kLong).cuda(),
                       at::randint(2, 32000, {8, 4}, at::kLong).cuda()};
        method->forward(b).loss.backward();
        const auto s = meter.sample();
        qInfo("CUDA peak allocated %llu, peak reserved %llu", static_cast<unsigned long long>(s.peakAllocated),
              static_cast<unsigned long long>(s.peakReserved));
        QVERIFY(s.peakAllocated > 4ull * 60506624);
        QVERIFY(s.peakReserved >= s.peakAllocated);
        for (const auto& p : backbone->parameters())
            QVERIFY(!p.grad().defined());
    }
};

// Without a CUDA device, exit with 77 (SKIP_RETURN_CODE in tests/CMakeLists.txt) so that CTest reports the
// test as skipped instead of passed; the message still says why.
int main(int argc, char** argv)
{
    QCoreApplication app(argc, argv);
    if (!cuda::available()) {
        std::printf("SKIP: no CUDA device: GPU tests run on a machine with one (this build was compiled with "
                    "CUDA support)\n");
        return 77;
    }
    TestCuda test;
    QTEST_SET_MAIN_SOURCE_PATH
    return QTest::qExec(&test, argc, argv);
}
#include "test_cuda.moc"
