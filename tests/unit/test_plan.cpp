// "What fits?" (core/train/MemoryPlan.h, issue 18 part 5): budgets as users write them, the binary search
// against a linear scan of the estimate (which grows with batch and source length), the choice of memory
// options, and on the CPU the plan against real AdamW steps: the planned batch's measured peak is within
// the budget and one example more is not.
#include <QtTest>
#include <nlohmann/json.hpp>

#include "MemoryTestHelpers.h"
#include "TestSupport.h"
#include "train/MemoryBench.h"
#include "train/MemoryMeter.h"
#include "train/MemoryPlan.h"
#include "util/Error.h"

using namespace ladder;

namespace {

using test::memory::optionsFor;
using test::memory::tinyConfig;

MemoryEstimateInput requestFor(const std::string& method, std::int64_t batch = 4)
{
    MemoryEstimateInput in;
    in.config = tinyConfig();
    in.method = optionsFor(method);
    in.batch = batch;
    in.srcLen = 64;
    in.tgtLen = 8;
    return in;
}

// The budget of the measured test: a few MB, where each of full, LoRA and LST fits a batch of several
// examples and one example is a step of 5-15% of the peak (far above the estimate's error).
constexpr std::uint64_t kMeasuredBudget = 12'000'000;

} // namespace

class TestPlan : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { installCpuMemoryTracker(); }

    void parsesBudgets_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<qulonglong>("bytes");
        QTest::newRow("GiB") << "24GiB" << qulonglong(24) * 1024 * 1024 * 1024;
        QTest::newRow("GB") << "24GB" << qulonglong(24'000'000'000);
        QTest::newRow("MiB") << "800MiB" << qulonglong(800) * 1024 * 1024;
        QTest::newRow("MB") << "800MB" << qulonglong(800'000'000);
        QTest::newRow("KiB") << "512KiB" << qulonglong(512) * 1024;
        QTest::newRow("bytes") << "123456" << qulonglong(123456);
        QTest::newRow("B") << "4096B" << qulonglong(4096);
        QTest::newRow("fraction") << "1.5GiB" << qulonglong(1536) * 1024 * 1024;
        QTest::newRow("space, lower case") << " 2 gib " << qulonglong(2) * 1024 * 1024 * 1024;
        QTest::newRow("G alone is binary") << "3G" << qulonglong(3) * 1024 * 1024 * 1024;
        QTest::newRow("TiB") << "1TiB" << (qulonglong(1) << 40);
    }

    void parsesBudgets()
    {
        QFETCH(QString, text);
        QFETCH(qulonglong, bytes);
        QCOMPARE(qulonglong(parseByteSize(text.toStdString())), bytes);
    }

    void refusesBadBudgets_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("message");
        QTest::newRow("empty") << ""
                               << "is not a size";
        QTest::newRow("word") << "lots"
                              << "is not a size";
        QTest::newRow("unknown unit") << "24XB"
                                      << "unknown unit 'xb'";
        QTest::newRow("negative") << "-1GiB"
                                  << "is negative";
        QTest::newRow("zero") << "0"
                              << "is zero";
        QTest::newRow("too large") << "9000000TiB"
                                   << "more than 2^62";
        QTest::newRow("two numbers") << "1 2"
                                     << "unknown unit";
    }

    void refusesBadBudgets()
    {
        QFETCH(QString, text);
        QFETCH(QString, message);
        try {
            parseByteSize(text.toStdString(), "--budget");
            QFAIL("no error");
        } catch (const Error& e) {
            const QString what = QString::fromStdString(e.what());
            QVERIFY2(what.startsWith("--budget: '"), qPrintable(what));
            QVERIFY2(what.contains(message), qPrintable(what));
            QVERIFY2(what.contains("e.g. 24GiB"), qPrintable(what));
        }
    }

    void formatsBinaryBytes()
    {
        QCOMPARE(QString::fromStdString(formatBinaryBytes(512)), QString("512 bytes"));
        QCOMPARE(QString::fromStdString(formatBinaryBytes(std::uint64_t(24) << 30)), QString("24.0 GiB"));
        QCOMPARE(QString::fromStdString(formatBinaryBytes(std::uint64_t(1536) << 10)), QString("1.5 MiB"));
    }

    // The binary search relies on it: every method's estimate grows (never shrinks) with the batch and
    // with the source length.
    void estimateGrowsWithBatchAndSourceLength()
    {
        for (const char* method : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" }) {
            auto in = requestFor(method);
            std::uint64_t previous = 0;
            for (std::int64_t batch = 1; batch <= 64; ++batch) {
                in.batch = batch;
                const auto peak = estimateTrainingMemory(in).total;
                QVERIFY2(peak >= previous, qPrintable(QString("%1 batch %2").arg(method).arg(batch)));
                previous = peak;
            }
            in = requestFor(method);
            previous = 0;
            for (std::int64_t length = 1; length <= 160; ++length) {
                in.srcLen = length;
                const auto peak = estimateTrainingMemory(in).total;
                QVERIFY2(peak >= previous, qPrintable(QString("%1 source %2").arg(method).arg(length)));
                previous = peak;
            }
        }
    }

    // largestFittingBatch and largestFittingSourceLength against a linear scan of the estimate.
    void searchEqualsLinearScan()
    {
        for (const char* method : { "full", "lora", "ladder" }) {
            for (std::uint64_t budget : { 3'000'000ull, 7'000'000ull, 12'000'000ull, 30'000'000ull }) {
                auto in = requestFor(method);
                std::int64_t expected = 0;
                for (std::int64_t b = 1; b <= 200; ++b) {
                    in.batch = b;
                    if (estimateTrainingMemory(in).total > budget)
                        break;
                    expected = b;
                }
                const auto fit = largestFittingBatch(requestFor(method), budget, 200);
                QCOMPARE(fit.value, expected);
                QCOMPARE(fit.capped, expected == 200);
                if (expected > 0) {
                    in.batch = expected;
                    QCOMPARE(fit.peak, estimateTrainingMemory(in).total);
                    QVERIFY(fit.peak <= budget);
                } else {
                    QVERIFY(fit.peak > budget); // the peak of batch 1, which does not fit
                }
                in = requestFor(method);
                expected = 0;
                for (std::int64_t l = 1; l <= 300; ++l) {
                    in.srcLen = l;
                    if (estimateTrainingMemory(in).total > budget)
                        break;
                    expected = l;
                }
                QCOMPARE(largestFittingSourceLength(requestFor(method), budget, 300).value, expected);
            }
        }
        // A budget that holds the cap says so.
        const auto huge = largestFittingBatch(requestFor("ladder"), std::uint64_t(1) << 40, 16);
        QCOMPARE(huge.value, std::int64_t(16));
        QVERIFY(huge.capped);
    }

    // The plan against the meter: on the CPU, the planned batch's measured peak over real AdamW steps is
    // within the budget, and the next batch's is not.
    void plannedBatchFitsMeasuredPeak_data()
    {
        QTest::addColumn<QString>("method");
        for (const char* m : { "full", "lora", "ladder" })
            QTest::newRow(m) << m;
    }

    void plannedBatchFitsMeasuredPeak()
    {
        QFETCH(QString, method);
        const auto options = optionsFor(method.toStdString());
        const auto plan = planTrainingMemory(requestFor(method.toStdString()), kMeasuredBudget, { options });
        QCOMPARE(plan.rows.size(), std::size_t(1));
        const auto& row = plan.rows.front();
        QVERIFY2(row.error.empty(), row.error.c_str());
        const auto batch = row.batch.value;
        QVERIFY2(batch >= 2 && !row.batch.capped, qPrintable(QString("planned batch %1").arg(batch)));
        auto measure = [&](std::int64_t b) {
            MemoryBenchSpec spec;
            spec.config = tinyConfig();
            spec.batch = b;
            spec.sourceLength = 64;
            spec.targetLength = 8;
            spec.steps = 2;
            spec.inferenceRepeats = 1;
            return measureTrainingMemory(spec, options);
        };
        const auto fits = measure(batch);
        const auto over = measure(batch + 1);
        qInfo(
            "%s: budget %llu, planned batch %lld (estimated %llu): measured %llu; batch %lld: measured %llu "
            "(estimated %llu)",
            qPrintable(method), static_cast<unsigned long long>(kMeasuredBudget),
            static_cast<long long>(batch), static_cast<unsigned long long>(row.batch.peak),
            static_cast<unsigned long long>(fits.peakBytes), static_cast<long long>(batch + 1),
            static_cast<unsigned long long>(over.peakBytes),
            static_cast<unsigned long long>(over.estimate.total));
        QCOMPARE(fits.estimate.total, row.batch.peak); // the bench's own estimate is the plan's
        QVERIFY2(fits.peakBytes <= kMeasuredBudget, "the planned batch's measured peak is over the budget");
        QVERIFY2(over.peakBytes > kMeasuredBudget, "one example more still fits: the plan is short");
    }

    void ladderChoiceKeepsTheGivenOptionsWhenTheyFit()
    {
        auto in = requestFor("ladder");
        const auto given = estimateTrainingMemory(in).total;
        const auto choice = cheapestFittingOptions(in, given);
        QVERIFY(choice.found);
        QVERIFY(choice.chosen.changes.empty());
        QCOMPARE(choice.chosen.peak, given);
        QVERIFY2(QString::fromStdString(choice.why).contains("nothing to change"), choice.why.c_str());
        QVERIFY(choice.candidates > 100); // r, keep, checkpoint, attention, ladder dtype, backbone dtype
    }

    // When the given options do not fit, the fewest changes that fit win, those that keep training exact
    // first, then the smallest peak; every candidate is a valid option set the estimate prices.
    void ladderChoiceHasTheFewestChanges()
    {
        auto in = requestFor("ladder", 16);
        const auto given = estimateTrainingMemory(in).total;
        const auto candidates = memoryOptionCandidates(in.method, in.config);
        QVERIFY(candidates.front().changes.empty());
        std::uint64_t smallest = given;
        for (const auto& c : candidates) {
            c.options.validate(in.config);
            auto priced = in;
            priced.method = c.options;
            smallest = std::min(smallest, estimateTrainingMemory(priced).total);
        }
        QVERIFY2(smallest < given, "no option set saves memory on this shape");
        const std::uint64_t budget = smallest + (given - smallest) / 2;
        const auto choice = cheapestFittingOptions(in, budget);
        QVERIFY2(choice.found, choice.why.c_str());
        QVERIFY(!choice.chosen.changes.empty());
        QVERIFY(choice.chosen.peak <= budget);
        QVERIFY(!choice.given.fits);
        QCOMPARE(choice.given.peak, given);
        QVERIFY(choice.fitting > 0 && choice.fitting < choice.candidates);
        for (auto c : candidates) {
            auto priced = in;
            priced.method = c.options;
            c.peak = estimateTrainingMemory(priced).total;
            if (c.peak > budget)
                continue;
            QVERIFY2(c.changes.size() >= choice.chosen.changes.size(), c.label().c_str());
            if (c.changes.size() == choice.chosen.changes.size()) {
                QVERIFY2(c.inexactChanges >= choice.chosen.inexactChanges, c.label().c_str());
                if (c.inexactChanges == choice.chosen.inexactChanges)
                    QVERIFY2(c.peak >= choice.chosen.peak, c.label().c_str());
            }
        }
        QVERIFY2(QString::fromStdString(choice.why).contains("over the budget"), choice.why.c_str());

        const auto none = cheapestFittingOptions(in, smallest - 1);
        QVERIFY(!none.found);
        QCOMPARE(none.smallest.peak, smallest);
        QVERIFY2(QString::fromStdString(none.why).startsWith("none of"), none.why.c_str());

        // The plan adds the chosen configuration as a row of its own.
        const auto plan = planTrainingMemory(in, budget, { in.method });
        QVERIFY(plan.planLadder);
        QCOMPARE(plan.rows.size(), std::size_t(2));
        QVERIFY(plan.rows[1].fitsRequest);
        QVERIFY2(
            QString::fromStdString(plan.rows[1].label).startsWith("ladder ("), plan.rows[1].label.c_str());
    }

    void candidatesOfEachMethod()
    {
        const auto config = tinyConfig();
        QCOMPARE(memoryOptionCandidates(optionsFor("full"), config).size(), std::size_t(1));
        // lora: fp32 -> bf16, int8, int4; qlora (int4) has nothing smaller.
        QCOMPARE(memoryOptionCandidates(optionsFor("lora"), config).size(), std::size_t(4));
        QCOMPARE(memoryOptionCandidates(optionsFor("qlora"), config).size(), std::size_t(1));
        auto int8 = optionsFor("qlora");
        int8.backboneDtype = "int8";
        QCOMPARE(memoryOptionCandidates(int8, config).size(), std::size_t(2));
        // ladder at r 4 on d_kv 16: r 8 and 16 divide it, 32 does not; of 2 layers, "3 of every 4" and
        // "every other" are both layer 1: 3 r x 2 keep x checkpoint x attention x ladder dtype x 4 dtypes.
        const auto ladder = memoryOptionCandidates(optionsFor("ladder"), config);
        QCOMPARE(ladder.size(), std::size_t(3 * 2 * 2 * 2 * 2 * 4));
        for (const auto& c : ladder)
            QVERIFY2(c.options.r != 32, c.label().c_str());
    }

    void fitToBudgetSetsTheBatchOrTheOptions()
    {
        auto in = requestFor("ladder", 1);
        in.batch = 7; // the form's batch: replaced by the plan's
        const auto fit = fitToBudget(in, kMeasuredBudget, 4096);
        QVERIFY(fit.ok);
        QVERIFY(!fit.optionsChanged);
        QCOMPARE(fit.batch, largestFittingBatch(in, kMeasuredBudget).value);
        QVERIFY2(QString::fromStdString(fit.message).startsWith("batch "), fit.message.c_str());

        // A budget below batch 1 of the given options, above the smallest option set's.
        in.batch = 1;
        const auto one = estimateTrainingMemory(in).total;
        std::uint64_t smallest = one;
        for (const auto& c : memoryOptionCandidates(in.method, in.config)) {
            auto priced = in;
            priced.method = c.options;
            smallest = std::min(smallest, estimateTrainingMemory(priced).total);
        }
        QVERIFY(smallest < one);
        const auto tight = fitToBudget(in, smallest + (one - smallest) / 2);
        QVERIFY2(tight.ok, tight.message.c_str());
        QVERIFY(tight.optionsChanged);
        QVERIFY(tight.batch >= 1);
        QVERIFY2(
            QString::fromStdString(tight.message).startsWith("even batch 1 needs"), tight.message.c_str());

        const auto nothing = fitToBudget(in, smallest - 1);
        QVERIFY(!nothing.ok);
        QVERIFY2(QString::fromStdString(nothing.message).startsWith("nothing fits"), nothing.message.c_str());
    }

    // `ladder plan`: its table, --json, and its usage errors.
    void cliPlan()
    {
        const auto text = test::runCli({ "plan", "--shape", "t5-small", "--budget", "2GiB", "--batch", "16",
            "--methods", "full,lora,ladder" });
        QVERIFY2(text.exitCode == 0, text.err.c_str());
        QVERIFY2(QString::fromStdString(text.out).contains("budget 2.0 GiB"), text.out.c_str());
        QVERIFY2(QString::fromStdString(text.out).contains("LST at batch 16"), text.out.c_str());

        const auto json = test::runCli({ "plan", "--shape", "t5-small", "--budget", "2GiB", "--batch", "16",
            "--methods", "full,ladder", "--json" });
        QVERIFY2(json.exitCode == 0, json.err.c_str());
        const auto j = nlohmann::json::parse(json.out);
        QCOMPARE(j.at("budget_bytes").get<std::uint64_t>(), std::uint64_t(2) << 30);
        QCOMPARE(j.at("methods").size(), std::size_t(2));
        const auto& full = j.at("methods").at(0);
        QCOMPARE(full.at("label").get<std::string>(), std::string("full"));
        // The CLI's figure is the core's.
        MemoryEstimateInput in;
        in.config = T5Config::preset("t5-small");
        in.method = MethodOptions::defaults("full");
        in.batch = 16;
        const auto fit = largestFittingBatch(in, std::uint64_t(2) << 30);
        QCOMPARE(full.at("max_batch").at("value").get<std::int64_t>(), fit.value);
        QCOMPARE(full.at("max_batch").at("peak_bytes").get<std::uint64_t>(), fit.peak);
        QVERIFY(j.at("ladder").at("found").get<bool>());

        const auto bad = test::runCli({ "plan", "--shape", "t5-small", "--budget", "24XB" });
        QCOMPARE(bad.exitCode, 2);
        QVERIFY2(QString::fromStdString(bad.err).contains("--budget: '24XB' has an unknown unit"),
            bad.err.c_str());
        const auto both = test::runCli({ "plan", "--budget", "1GiB" });
        QCOMPARE(both.exitCode, 2);
        const auto method
            = test::runCli({ "plan", "--shape", "t5-small", "--budget", "1GiB", "--methods", "fulll" });
        QCOMPARE(method.exitCode, 2);
        QVERIFY2(QString::fromStdString(method.err).contains("unknown method 'fulll'"), method.err.c_str());
    }
};

QTEST_GUILESS_MAIN(TestPlan)
#include "test_plan.moc"
