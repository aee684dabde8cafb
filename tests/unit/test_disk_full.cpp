// A full disk (docs/RELIABILITY.md, "A full disk"): a store and its files on a 2 MiB tmpfs that fills while
// a run writes. The run ends failed with a reason that says "no space left on device" and names the file,
// the store passes integrity_check and opens again, and nothing crashes. First the recorder alone (a metric
// batch, the best checkpoint), then `ladder train` end to end. Each test mounts its own tmpfs (as root) and
// reports SKIP with the reason where mounting is refused.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "TmpfsMount.h"
#include "model/T5Model.h"
#include "peft/Method.h"
#include "store/ResultsStore.h"
#include "train/StoreRecorder.h"

using namespace ladder;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kDiskBytes = 2 * 1024 * 1024;

#define MOUNT_TMPFS_OR_SKIP(mount)                                                                           \
    if (!(mount).mounted())                                                                                  \
    QSKIP((mount).reason().c_str())

// A tiny T5 with BitFit: a real Method whose trainable weights the recorder saves.
std::unique_ptr<Method> tinyBitfit()
{
    T5Config c;
    c.vocabSize = 64;
    c.dModel = 16;
    c.dKv = 4;
    c.numHeads = 4;
    c.dFf = 32;
    c.numLayers = 1;
    c.numDecoderLayers = 1;
    c.relativeAttentionNumBuckets = 8;
    c.relativeAttentionMaxDistance = 16;
    T5ForConditionalGeneration backbone(c);
    MethodOptions options;
    options.method = "bitfit";
    return createMethod(backbone, options);
}

struct Quiet : TrainerObserver {
    std::vector<std::string> lines;
    void onLog(const std::string& level, const std::string& message) override
    {
        lines.push_back(level + ": " + message);
    }
};

NewRun runningRun()
{
    NewRun r;
    r.name = "full disk";
    r.specJson = R"({"seed":1})";
    r.method = "bitfit";
    r.backbone = "tiny";
    r.task = "fruit";
    r.status = RunState::Running;
    return r;
}

RunSummary failedWith(const std::string& message)
{
    RunSummary s;
    s.status = RunOutcome::Failed;
    s.message = message;
    return s;
}

bool contains(const std::string& text, const std::string& part)
{
    return text.find(part) != std::string::npos;
}

std::string lower(std::string text)
{
    for (auto& c : text)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// What every full-disk outcome must leave: the run failed with a reason that says no space left and names a
// file on the disk, a sound store that opens for writing again, no reserve or temporary file left.
void checkStoreAfterFullDisk(const std::string& store, const std::string& disk, std::int64_t runId)
{
    ResultsStore s;
    std::string error;
    QVERIFY2(s.open(store, &error), error.c_str()); // for writing: the disk is still full
    std::string integrity;
    QVERIFY2(s.integrityCheck(&integrity, &error), error.c_str());
    QCOMPARE(integrity, std::string("ok"));
    RunRecord run;
    QVERIFY2(s.getRun(runId, &run, &error), error.c_str());
    QVERIFY2(run.status == RunState::Failed,
        (std::string(toString(run.status)) + ": " + run.errorMessage).c_str());
    QVERIFY2(contains(lower(run.errorMessage), "no space left on device"), run.errorMessage.c_str());
    QVERIFY2(contains(run.errorMessage, disk + "/"), run.errorMessage.c_str());
    QVERIFY(!fs::exists(s.reservePath(runId)));
    for (const auto& entry : fs::recursive_directory_iterator(s.filesDir()))
        QVERIFY2(entry.path().extension() != ".tmp", entry.path().c_str());
    qInfo("run %lld: %s", static_cast<long long>(runId), run.errorMessage.c_str());
}

} // namespace

class TestDiskFull : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void cleanup() { m_failed = m_failed || QTest::currentTestFailed(); }
    void cleanupTestCase() { test::reportTmpfsSkips(m_failed); }
    // The disk fills while metric batches are written: the batch that does not fit ends the run (onStep
    // throws), its points are dropped, and the run's reserve gives the failure room to be recorded.
    void metricBatchOnAFullDiskFailsTheRun()
    {
        test::TmpfsMount disk(test::makeTempDir() + "/disk", kDiskBytes);
        MOUNT_TMPFS_OR_SKIP(disk);
        const std::string path = disk.dir() + "/results.sqlite";
        ResultsStore store;
        std::string error;
        QVERIFY2(store.open(path, &error), error.c_str());
        std::int64_t id = -1;
        QVERIFY2(store.createRun(runningRun(), &id, &error), error.c_str());
        Quiet log;
        StoreRecorder recorder(store, id, log);
        QVERIFY2(fs::file_size(store.reservePath(id)) == std::uintmax_t(ResultsStore::kRunReserveBytes),
            store.reservePath(id).c_str());
        QVERIFY(disk.fillLeaving(0));
        std::string reason;
        std::int64_t step = 1;
        for (; step <= 20000 && reason.empty(); ++step) {
            if (step == 1 || step % 50 == 0)
                continue; // the recorder sets the run's progress at these steps: only metric batches here
            TrainStep s;
            s.step = step;
            s.totalSteps = 20000;
            s.loss = 1.0;
            try {
                recorder.onStep(s);
            } catch (const std::exception& e) {
                reason = e.what();
            }
        }
        QVERIFY2(!reason.empty(), "20,000 steps fitted on a full disk");
        QVERIFY2(contains(reason, "no space left on device") && contains(reason, path)
                && contains(reason, "appending"),
            reason.c_str());
        QCOMPARE(recorder.diskFull(), reason);
        QVERIFY(!fs::exists(store.reservePath(id))); // released for the last writes
        recorder.onLog("error", reason); // as the trainer does when it fails the run
        // A summary that says finished is recorded as the failure all the same.
        RunSummary finished;
        finished.status = RunOutcome::Finished;
        QVERIFY2(recorder.finish(finished), error.c_str());
        QCOMPARE(recorder.recorded(finished).status, RunOutcome::Failed);
        checkStoreAfterFullDisk(path, disk.dir(), id);
        std::vector<LogLine> logs;
        QVERIFY(store.getLogs(id, 0, &logs));
        QVERIFY(!logs.empty());
        QCOMPARE(logs.back().message, reason);
        qInfo("failed at step %lld of a full disk", static_cast<long long>(step - 1));
    }

    // The best checkpoint does not fit: its temporary file goes, and the run fails naming it.
    void checkpointOnAFullDiskFailsTheRun()
    {
        test::TmpfsMount disk(test::makeTempDir() + "/disk", kDiskBytes);
        MOUNT_TMPFS_OR_SKIP(disk);
        const std::string path = disk.dir() + "/results.sqlite";
        ResultsStore store;
        std::string error;
        QVERIFY2(store.open(path, &error), error.c_str());
        std::int64_t id = -1;
        QVERIFY2(store.createRun(runningRun(), &id, &error), error.c_str());
        auto method = tinyBitfit();
        Quiet log;
        StoreRecorder recorder(store, id, log);
        QVERIFY(disk.fillLeaving(0));
        std::string reason;
        try {
            recorder.onBestModel(*method);
        } catch (const std::exception& e) {
            reason = e.what();
        }
        const std::string checkpoint = store.checkpointPath(id);
        QVERIFY2(contains(reason, "no space left on device") && contains(reason, checkpoint), reason.c_str());
        QVERIFY(!fs::exists(checkpoint));
        QVERIFY(recorder.finish(failedWith(reason)));
        checkStoreAfterFullDisk(path, disk.dir(), id);
        RunRecord run;
        QVERIFY(store.getRun(id, &run));
        QVERIFY(run.checkpointFile.empty());
    }

    // `ladder train` of a full fine-tune (4.3 MB of trainable weights) on a 2 MiB disk: the store is
    // created and the steps are recorded, then the run's files fill the disk. Exit 1, the run failed with
    // the reason, the store sound, `ladder runs` still reads it.
    void ladderTrainOnAFullDisk()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        test::TmpfsMount disk(root + "/disk", kDiskBytes);
        MOUNT_TMPFS_OR_SKIP(disk);
        const auto backbone = root + "/tiny-t5";
        test::writeTinyBackbone(backbone, 1);
        const auto task = test::writeFruitTask(root);
        const nlohmann::json spec { { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
            { "method", { { "method", "full" } } },
            { "training",
                { { "max_steps", 12 }, { "batch_size", 8 }, { "learning_rate", 0.01 },
                    { "max_source_length", 16 }, { "threads", 1 } } },
            { "seed", 0 } };
        std::ofstream(root + "/run.json") << spec.dump(2);
        const std::string store = disk.dir() + "/results.sqlite";
        const auto r = test::runCli({ "train", "--config", QString::fromStdString(root + "/run.json"),
            "--store", QString::fromStdString(store) });
        QVERIFY2(r.exitCode == 1, (r.out + r.err).c_str());
        QVERIFY2(!contains(r.err, "terminate called") && !contains(r.err, "Aborted"), r.err.c_str());
        // One line says it: "run 1: failed (... no space left on device ... <file on the disk> ...)".
        const auto first = r.out.substr(0, r.out.find('\n'));
        QVERIFY2(first.rfind("run 1: failed (", 0) == 0 && contains(lower(first), "no space left on device")
                && contains(first, disk.dir() + "/"),
            r.out.c_str());
        checkStoreAfterFullDisk(store, disk.dir(), 1);
        const auto list = test::runCli({ "runs", "--store", QString::fromStdString(store), "list" });
        QVERIFY2(list.exitCode == 0 && contains(list.out, "failed"), (list.out + list.err).c_str());
        qInfo("%s (%lld bytes free after)", first.c_str(), static_cast<long long>(disk.freeBytes()));
    }

    // A LoRA run of 300 steps whose metric rows fill the disk (about 450 KiB free when it starts): the same
    // outcome from the store's side ("results store ...: no space left on device").
    void ladderTrainWhoseMetricsFillTheDisk()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        test::TmpfsMount disk(root + "/disk", kDiskBytes);
        MOUNT_TMPFS_OR_SKIP(disk);
        const auto backbone = root + "/tiny-t5";
        test::writeTinyBackbone(backbone, 1);
        const auto task = test::writeFruitTask(root);
        const nlohmann::json spec { { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
            { "method", { { "method", "lora" }, { "rank", 4 } } },
            { "training",
                { { "max_steps", 300 }, { "batch_size", 8 }, { "learning_rate", 0.01 },
                    { "max_source_length", 16 }, { "eval_every_steps", 100 }, { "threads", 1 } } },
            { "seed", 0 } };
        std::ofstream(root + "/run.json") << spec.dump(2);
        QVERIFY(disk.fillLeaving(450 * 1024));
        const std::string store = disk.dir() + "/results.sqlite";
        const auto r = test::runCli({ "train", "--config", QString::fromStdString(root + "/run.json"),
            "--store", QString::fromStdString(store) });
        QVERIFY2(r.exitCode == 1, (r.out + r.err).c_str());
        QVERIFY2(!contains(r.err, "terminate called") && !contains(r.err, "Aborted"), r.err.c_str());
        const auto first = r.out.substr(0, r.out.find('\n'));
        QVERIFY2(first.rfind("run 1: failed (", 0) == 0 && contains(lower(first), "no space left on device"),
            r.out.c_str());
        checkStoreAfterFullDisk(store, disk.dir(), 1);
        ResultsStore s;
        QVERIFY(s.open(store, ResultsStore::OpenMode::ReadOnly));
        RunRecord run;
        QVERIFY(s.getRun(1, &run));
        QVERIFY2(run.step < 300, std::to_string(run.step).c_str()); // it filled during the run
        qInfo("%s (step %lld)", first.c_str(), static_cast<long long>(run.step));
    }

private:
    bool m_failed = false;
};

LADDER_TEST_GUILESS_MAIN(TestDiskFull)
#include "test_disk_full.moc"
