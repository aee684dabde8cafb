// The CPU tracking allocator and what the methods keep for backward: LST's peak grows with the batch
// only through its ladder inputs and side activations, not with the backbone's depth.
#include <ATen/ATen.h>
#include <QtTest>

#include "TestSupport.h"
#include "peft/Method.h"
#include "train/MemoryMeter.h"

using namespace ladder;

namespace {

T5Config configWithDepth(std::int64_t layers)
{
    T5Config c;
    c.vocabSize = 128;
    c.dModel = 64;
    c.dKv = 16;
    c.numHeads = 4;
    c.dFf = 256;
    c.numLayers = layers;
    c.numDecoderLayers = layers;
    c.relativeAttentionNumBuckets = 8;
    c.relativeAttentionMaxDistance = 32;
    c.dropoutRate = 0.0;
    return c;
}

// Peak bytes above the live bytes before the step, over one forward + backward.
std::uint64_t stepPeak(Method& method, std::int64_t batch, MemoryMeter& meter)
{
    at::manual_seed(5);
    Seq2SeqBatch b;
    b.inputIds = at::randint(2, 128, { batch, 48 }, at::kLong);
    b.attentionMask = at::ones_like(b.inputIds);
    b.labels = at::randint(2, 128, { batch, 8 }, at::kLong);
    for (auto& p : method.trainableParameters())
        p.mutable_grad() = at::Tensor();
    const auto before = meter.sample().allocated;
    meter.resetPeak();
    method.forward(b).loss.backward();
    const auto peak = meter.sample().peakAllocated - before;
    for (auto& p : method.trainableParameters())
        p.mutable_grad() = at::Tensor();
    return peak;
}

// Bytes the step's peak grows by per example.
double growthPerExample(const std::string& methodName, std::int64_t depth)
{
    MemoryMeter meter(c10::Device(c10::kCPU));
    at::manual_seed(1);
    T5ForConditionalGeneration backbone(configWithDepth(depth));
    auto options = withoutFisherInit(MethodOptions::defaults(methodName)); // memory does not depend on it
    options.r = 4;
    options.keep = { 1 };
    auto method = createMethod(backbone, options);
    method->train(true);
    const auto small = stepPeak(*method, 4, meter);
    const auto large = stepPeak(*method, 12, meter);
    return (static_cast<double>(large) - static_cast<double>(small)) / 8.0;
}

} // namespace

class TestMemory : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { installCpuMemoryTracker(); }

    void trackerCountsAllocations()
    {
        MemoryMeter meter(c10::Device(c10::kCPU));
        const auto before = meter.sample();
        meter.resetPeak();
        {
            auto a = at::empty({ 1000 }, at::kFloat);
            auto b = at::empty({ 500 }, at::kDouble);
            QCOMPARE(meter.sample().allocated - before.allocated, std::uint64_t(8000));
        }
        QCOMPARE(meter.sample().allocated, before.allocated);
        QCOMPARE(meter.sample().peakAllocated - before.allocated, std::uint64_t(8000));
        meter.resetPeak();
        QCOMPARE(meter.sample().peakAllocated, before.allocated);
    }

    // Tensors made on another thread are counted too (the allocator is process-wide and atomic).
    void trackerIsThreadSafe()
    {
        MemoryMeter meter(c10::Device(c10::kCPU));
        const auto before = meter.sample().allocated;
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([] {
                for (int i = 0; i < 2000; ++i) {
                    auto x = at::empty({ 256 }, at::kFloat);
                    x.fill_(1);
                }
            });
        for (auto& t : threads)
            t.join();
        QCOMPARE(meter.sample().allocated, before);
    }

    // A CPU allocation that fails is an out-of-memory error, as on CUDA (the trainer ends the run with "out
    // of memory"), and counts nothing.
    void failedAllocationIsOutOfMemory()
    {
        MemoryMeter meter(c10::Device(c10::kCPU));
        const auto before = meter.sample().allocated;
        try {
            // 2^50 bytes: more than any x86-64 address space, so the allocation fails on every machine.
            at::empty({ std::int64_t(1) << 50 }, at::kByte);
            QFAIL("no error for 2^50 bytes");
        } catch (const c10::OutOfMemoryError& e) {
            const std::string what = e.what_without_backtrace();
            QVERIFY2(
                what.find("CPU out of memory: tried to allocate 1125899906842624 bytes") != std::string::npos,
                what.c_str());
        }
        QCOMPARE(meter.sample().allocated, before);
    }

    // LST: the backbone runs without an autograd graph and releases every block output that is not a
    // ladder input, so with the same side network (keep {1}) the per-example growth of the peak does not
    // depend on how deep the backbone is. Full fine-tuning's grows with depth.
    void ladderPeakDoesNotGrowWithBackboneDepth()
    {
        const double lst2 = growthPerExample("ladder", 2);
        const double lst6 = growthPerExample("ladder", 6);
        const double full2 = growthPerExample("full", 2);
        const double full6 = growthPerExample("full", 6);
        qInfo("bytes per extra example: LST depth 2: %.0f, depth 6: %.0f; full depth 2: %.0f, depth 6: %.0f",
            lst2, lst6, full2, full6);
        QVERIFY(lst2 > 0);
        // Depth adds at most one block's transient working set (the backbone forward runs block by block).
        QVERIFY2(lst6 < 1.15 * lst2, "LST keeps backbone activations that scale with depth");
        QVERIFY(full6 > 2.0 * full2);
        QVERIFY(lst6 < 0.25 * full6);
    }
};

QTEST_GUILESS_MAIN(TestMemory)
#include "test_memory.moc"
