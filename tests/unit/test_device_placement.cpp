// Several runs per device (core/train/DevicePlacement.h, issue 19): the queue's placement policy on
// pretend device budgets, with the estimates of real run shapes (T5-base LST and full fine-tuning, T5-3B):
// two LST runs share a device when both fit, a third waits with the reason, a run above the device's limit
// never starts, and queue order holds per device. Then the budgets as users write them, the margins of
// measured devices, and the estimate of a run spec read from its backbone folder and task.
#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "train/DevicePlacement.h"
#include "train/MemoryEstimate.h"
#include "train/MemoryPlan.h"
#include "train/RunEstimate.h"
#include "util/Error.h"

using namespace ladder;
using Verdict = Placement::Verdict;

namespace {

// The estimated peak of a T5 run of `shape` (batch 16, source 128, target 4, fp32).
std::uint64_t peakOf(const std::string& shape, const std::string& method)
{
    MemoryEstimateInput in;
    in.config = T5Config::preset(shape);
    in.method = MethodOptions::defaults(method);
    if (method == "ladder")
        in.method.init = "random";
    in.batch = 16;
    in.srcLen = 128;
    in.tgtLen = 4;
    in.device = "cuda:0";
    return estimateTrainingMemory(in).total;
}

QueuedRun queued(std::int64_t id, std::optional<std::uint64_t> charge, const std::string& device = "cuda:0")
{
    QueuedRun r;
    r.id = id;
    r.device = device;
    r.chargeBytes = charge;
    return r;
}

std::vector<Verdict> verdicts(const std::vector<Placement>& placements)
{
    std::vector<Verdict> out;
    for (const auto& p : placements)
        out.push_back(p.verdict);
    return out;
}

} // namespace

class TestDevicePlacement : public QObject {
    Q_OBJECT
private Q_SLOTS:
    // Two LST runs of T5-base fit a budget of two and a half of them: both start at once, the third waits
    // and says what it needs, what is left and which runs hold the rest.
    void twoLstRunsShareADevice()
    {
        const std::uint64_t lst = runCharge(peakOf("t5-base", "ladder"), "cuda:0");
        const std::uint64_t budget = 2 * lst + lst / 2;
        const auto devices = deviceBudgets({}, { { "cuda:0", budget } });
        const auto p = placeQueuedRuns(devices, {}, { queued(4, lst), queued(7, lst), queued(9, lst) });
        QCOMPARE(verdicts(p), (std::vector<Verdict> { Verdict::Start, Verdict::Start, Verdict::Wait }));
        QCOMPARE(QString::fromStdString(p[2].device), QStringLiteral("cuda:0"));
        const std::string expected = "needs " + formatBinaryBytes(lst) + ", cuda:0 has "
            + formatBinaryBytes(budget - 2 * lst) + " left of its " + formatBinaryBytes(budget)
            + " pretend budget with runs 4 and 7 on it";
        QCOMPARE(QString::fromStdString(p[2].reason), QString::fromStdString(expected));
        qInfo("T5-base LST charge %s; run 9: %s", formatBinaryBytes(lst).c_str(), p[2].reason.c_str());

        // Run 4 ends: the third starts beside run 7.
        PlacedRun seven { 7, "cuda:0", lst };
        const auto later = placeQueuedRuns(devices, { seven }, { queued(9, lst) });
        QCOMPARE(verdicts(later), (std::vector<Verdict> { Verdict::Start }));
        QVERIFY2(later[0].reason.find("with run 7 on it") != std::string::npos, later[0].reason.c_str());

        // Full fine-tuning of T5-base takes several LST runs' memory: it waits alone in the same budget.
        const std::uint64_t full = runCharge(peakOf("t5-base", "full"), "cuda:0");
        QVERIFY2(full > lst, formatBinaryBytes(full).c_str());
    }

    // A run above the device's limit never starts, and says so: against a pretend budget, and against a
    // measured GPU (its memory less the margin); it holds no line, so the run after it starts.
    void aRunThatFitsNowhere()
    {
        const std::uint64_t big = runCharge(peakOf("t5-3b", "full"), "cuda:0");
        const auto pretend = deviceBudgets({}, { { "cuda:0", 8 * kGiB } });
        auto p = placeQueuedRuns(pretend, {}, { queued(1, big), queued(2, kGiB) });
        QCOMPARE(verdicts(p), (std::vector<Verdict> { Verdict::Never, Verdict::Start }));
        QCOMPARE(QString::fromStdString(p[0].reason),
            QString::fromStdString(
                "needs " + formatBinaryBytes(big) + ", more than cuda:0's pretend budget of 8.0 GiB"));

        ComputeDevice gpu { "cuda:0", "NVIDIA H100", 80 * kGiB, 80 * kGiB };
        const auto measured = deviceBudgets({ gpu }, {});
        p = placeQueuedRuns(measured, {}, { queued(1, 90 * kGiB) });
        QCOMPARE(QString::fromStdString(p[0].reason),
            QStringLiteral(
                "needs 90.0 GiB, more than cuda:0 can ever give: 76.0 GiB (80.0 GiB less a 4.0 GiB "
                "margin)"));
        qInfo("%s", p[0].reason.c_str());
    }

    // Queue order per device: a small run queued after a big one that waits does not overtake it (the big
    // one would starve behind small ones); a run for another device goes on.
    void queueOrderHoldsPerDevice()
    {
        const auto devices = deviceBudgets({}, { { "cuda:0", 10 * kGiB }, { "cpu", 4 * kGiB } });
        const std::vector<PlacedRun> placed { { 3, "cuda:0", 6 * kGiB } };
        const auto p = placeQueuedRuns(devices, placed,
            { queued(5, 6 * kGiB), queued(6, kGiB), queued(8, kGiB, "cpu"), queued(9, kGiB, "cuda") });
        QCOMPARE(verdicts(p),
            (std::vector<Verdict> { Verdict::Wait, Verdict::Wait, Verdict::Start, Verdict::Wait }));
        QCOMPARE(QString::fromStdString(p[0].reason),
            QStringLiteral(
                "needs 6.0 GiB, cuda:0 has 4.0 GiB left of its 10.0 GiB pretend budget with run 3 on it"));
        QCOMPARE(QString::fromStdString(p[1].reason),
            QStringLiteral("behind run 5, queued before it for cuda:0 (queue order)"));
        QCOMPARE(QString::fromStdString(p[3].device), QStringLiteral("cuda:0")); // "cuda" is the first GPU
    }

    // Without an estimate a run runs alone; while its estimate is made it waits; a device without a budget
    // takes one run at a time, estimated or not.
    void unknownsRunAlone()
    {
        const auto devices = deviceBudgets({}, { { "cpu", 4 * kGiB } });
        QueuedRun noEstimate = queued(2, std::nullopt, "cpu");
        noEstimate.noEstimate = "no spiece.model";
        auto p = placeQueuedRuns(devices, {}, { noEstimate, queued(3, kGiB, "cpu") });
        QCOMPARE(verdicts(p), (std::vector<Verdict> { Verdict::Start, Verdict::Wait }));
        QCOMPARE(QString::fromStdString(p[0].reason),
            QStringLiteral("runs alone on cpu: no memory estimate (no spiece.model)"));
        QCOMPARE(QString::fromStdString(p[1].reason),
            QStringLiteral("cpu runs run 2 alone (it has no memory estimate)"));

        p = placeQueuedRuns(devices, { { 1, "cpu", kGiB } }, { noEstimate });
        QCOMPARE(verdicts(p), (std::vector<Verdict> { Verdict::Wait }));
        QCOMPARE(QString::fromStdString(p[0].reason),
            QStringLiteral(
                "no memory estimate (no spiece.model): waits to run alone on cpu with run 1 on it"));

        QueuedRun pending = queued(4, std::nullopt, "cpu");
        pending.estimatePending = true;
        p = placeQueuedRuns(devices, {}, { pending, queued(5, kGiB, "cpu") });
        QCOMPARE(verdicts(p), (std::vector<Verdict> { Verdict::Wait, Verdict::Wait }));
        QCOMPARE(QString::fromStdString(p[0].reason), QStringLiteral("estimating its memory"));

        p = placeQueuedRuns({}, {}, { queued(6, kGiB, "cuda:1"), queued(7, kGiB, "cuda:1") });
        QCOMPARE(verdicts(p), (std::vector<Verdict> { Verdict::Start, Verdict::Wait }));
        QCOMPARE(QString::fromStdString(p[1].reason),
            QStringLiteral("cuda:1 takes one run at a time (no memory budget for it) with run 6 on it"));
        pending.device = "cuda:1"; // without a budget the estimate does not matter
        p = placeQueuedRuns({}, {}, { pending });
        QCOMPARE(verdicts(p), (std::vector<Verdict> { Verdict::Start }));
    }

    // A measured device gives its free memory less the margin; the charge adds 10% and the process.
    void marginsAndCharges()
    {
        ComputeDevice cpu { "cpu", "CPU", 16 * kGiB, 10 * kGiB };
        const auto b = deviceBudget(cpu, {});
        QCOMPARE(b.limitBytes, 16 * kGiB - 16 * kGiB / 10);
        QCOMPARE(b.capacityBytes, 10 * kGiB - 16 * kGiB / 10);
        QVERIFY(!b.pretend);
        ComputeDevice small { "cuda:0", "GPU", 4 * kGiB, 3 * kGiB };
        QCOMPARE(deviceBudget(small, {}).capacityBytes, 3 * kGiB - 512 * kMiB); // at least 512 MiB
        QCOMPARE(runCharge(1000 * kMiB, "cpu"), 1000 * kMiB + 100 * kMiB + 256 * kMiB);
        QCOMPARE(runCharge(1000 * kMiB, "cuda:0"), 1000 * kMiB + 100 * kMiB + kGiB);
        const auto pretend = deviceBudget(cpu, { { "cpu", 2 * kGiB } });
        QCOMPARE(pretend.capacityBytes, 2 * kGiB);
        QCOMPARE(pretend.limitBytes, 2 * kGiB);
    }

    void parsesBudgets()
    {
        const auto b = parseDeviceBudgets("cpu=600MiB, cuda=20GiB", "--device-budget");
        QCOMPARE(b.size(), std::size_t(2));
        QCOMPARE(b.at("cpu"), 600 * kMiB);
        QCOMPARE(b.at("cuda:0"), 20 * kGiB);
        for (const char* bad : { "cpu", "gpu=2GiB", "cpu=2GiB,cpu=1GiB", "cpu=lots", "" }) {
            try {
                parseDeviceBudgets(bad, "--device-budget");
                QFAIL(bad);
            } catch (const Error& e) {
                QVERIFY2(QString(e.what()).startsWith("--device-budget"), e.what());
            }
        }
    }

    // The estimate of a spec from its backbone folder and task, as the queue asks for it: the shape of
    // estimateInputFor at the task's longest batch; a folder without a tokenizer is named.
    void estimatesASpecFromItsFiles()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        const auto backbone = root + "/tiny-t5";
        test::writeTinyBackbone(backbone, 1);
        nlohmann::json j { { "backbone", backbone },
            { "task", test::fruitTaskSpec(test::writeFruitTask(root)) },
            { "method", { { "method", "ladder" }, { "r", 4 } } },
            { "training", { { "batch_size", 8 }, { "max_source_length", 16 } } } };
        const auto spec = RunSpec::fromJson(j, "spec");
        const auto e = estimateRunSpec(spec);
        QVERIFY(e.total > 0);
        j["method"] = { { "method", "full" } };
        QVERIFY(estimateRunSpec(RunSpec::fromJson(j, "spec")).total > e.total); // full trains everything
        j["backbone"] = root;
        try {
            estimateRunSpec(RunSpec::fromJson(j, "spec"));
            QFAIL("no error for a folder without spiece.model");
        } catch (const Error& err) {
            QVERIFY2(QString(err.what()).contains("spiece.model"), err.what());
        }
    }
};

LADDER_TEST_MAIN(TestDevicePlacement)
#include "test_device_placement.moc"
