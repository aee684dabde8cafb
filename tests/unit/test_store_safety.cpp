// The results store's safety (issue 15): each store's own files folder, checkpoint hashes checked before use
// and files removed with their run, and final writes retried while the store is busy (a dead owner's run is
// repaired at the next open). Its opening modes and leases: test_store_open_modes, test_store_leases.
#include <QtTest>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "StoreSafetyTestHelpers.h"
#include "TestSupport.h"
#include "model/T5Model.h"
#include "peft/Method.h"
#include "store/FileHash.h"
#include "store/ResultsStore.h"
#include "train/StoreRecorder.h"

using namespace ladder;
using ladder::test::store_safety::contains;
using ladder::test::store_safety::freshDir;
using ladder::test::store_safety::sampleRun;
using ladder::test::store_safety::WriteLock;

namespace {

namespace fs = std::filesystem;

std::string readFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A tiny T5 with BitFit: a real Method whose trainable weights (the biases) the recorder saves.
std::unique_ptr<Method> tinyBitfit(float biasValue)
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
    c.dropoutRate = 0.0;
    at::manual_seed(3);
    T5ForConditionalGeneration backbone(c);
    MethodOptions options;
    options.method = "bitfit";
    auto method = createMethod(backbone, options);
    c10::NoGradGuard noGrad;
    for (auto& [name, p] : method->namedTrainableParameters())
        p.fill_(biasValue);
    return method;
}

// The first trainable weight's first value as saved in a checkpoint (loaded into a fresh method).
float savedBias(const std::string& checkpoint)
{
    auto method = tinyBitfit(0.0f);
    method->loadTrainable(checkpoint);
    return method->namedTrainableParameters().front().second.flatten()[0].item<float>();
}

// Collects what the recorder forwards.
struct LogObserver : TrainerObserver {
    std::vector<std::string> lines;
    void onLog(const std::string& level, const std::string& message) override
    {
        lines.push_back(level + ": " + message);
    }
    std::string all() const
    {
        std::string text;
        for (const auto& l : lines)
            text += l + "\n";
        return text;
    }
};

RunSummary finishedSummary()
{
    RunSummary s;
    s.status = RunOutcome::Finished;
    s.mainMetric = "accuracy";
    s.bestValidation = 0.75;
    s.bestStep = 10;
    s.steps = 10;
    return s;
}

} // namespace

class TestStoreSafety : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void filesFolderIsTheStoresOwn();
    void twoStoresInOneFolderKeepTheirCheckpoints();
    void tamperedOrMissingCheckpointIsRefused();
    void deletingARunRemovesItsFiles();
    void busyWriteIsReportedAsBusy();
    void finalWriteIsRetriedWhileTheStoreIsBusy();
    void runOfADeadOwnerIsRepairedOnOpen();
};

void TestStoreSafety::filesFolderIsTheStoresOwn()
{
    const std::string dir = freshDir();
    const std::string path = dir + "/results.sqlite";
    QCOMPARE(ResultsStore::filesDirFor(path), path + ".files");
    QCOMPARE(ResultsStore::checkpointPathFor(path, 7), path + ".files/checkpoints/run-7.safetensors");
    QCOMPARE(StoreRecorder::checkpointPath(path, 7), ResultsStore::checkpointPathFor(path, 7));
    ResultsStore store;
    QVERIFY(store.open(path));
    QCOMPARE(store.filesDir(), path + ".files");
    QCOMPARE(store.checkpointPath(3), path + ".files/checkpoints/run-3.safetensors");
    QCOMPARE(StoreRecorder::checkpointPath(store, 3), store.checkpointPath(3));
    // One store under two names (a symbolic link) has one folder; a relative name is made absolute.
    fs::create_symlink(path, dir + "/alias.sqlite");
    QCOMPARE(ResultsStore::filesDirFor(dir + "/alias.sqlite"), path + ".files");
    const auto cwd = fs::current_path();
    fs::current_path(dir);
    QCOMPARE(ResultsStore::filesDirFor("results.sqlite"), path + ".files");
    fs::current_path(cwd);
    // The hash is SHA-256 (a known vector).
    {
        std::ofstream out(dir + "/abc.txt", std::ios::binary);
        out << "abc";
    }
    const FileDigest digest = hashFile(dir + "/abc.txt");
    QCOMPARE(digest.sha256, std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    QCOMPARE(digest.bytes, std::int64_t(3));
}

// Two stores in one folder each record a run with id 1 through a StoreRecorder: each keeps its own
// checkpoint (before the files folders, both wrote <folder>/checkpoints/run-1.safetensors).
void TestStoreSafety::twoStoresInOneFolderKeepTheirCheckpoints()
{
    const std::string dir = freshDir();
    const std::string pathA = dir + "/a.sqlite";
    const std::string pathB = dir + "/b.sqlite";
    ResultsStore a, b;
    std::string error;
    QVERIFY2(a.open(pathA, &error), error.c_str());
    QVERIFY2(b.open(pathB, &error), error.c_str());
    for (auto [store, bias] : { std::pair<ResultsStore*, float> { &a, 0.25f }, { &b, -0.5f } }) {
        std::int64_t id = 0;
        QVERIFY2(store->createRun(sampleRun("run", RunState::Running), &id, &error), error.c_str());
        QCOMPARE(id, std::int64_t(1));
        LogObserver log;
        StoreRecorder recorder(*store, id, log);
        auto method = tinyBitfit(bias);
        recorder.onBestModel(*method);
        QVERIFY(recorder.finish(finishedSummary()));
        QVERIFY2(log.lines.empty(), log.all().c_str());
    }
    std::string checkpointA, checkpointB;
    QVERIFY2(a.verifyCheckpoint(1, &checkpointA, &error), error.c_str());
    QVERIFY2(b.verifyCheckpoint(1, &checkpointB, &error), error.c_str());
    QCOMPARE(checkpointA, pathA + ".files/checkpoints/run-1.safetensors");
    QCOMPARE(checkpointB, pathB + ".files/checkpoints/run-1.safetensors");
    QCOMPARE(savedBias(checkpointA), 0.25f);
    QCOMPARE(savedBias(checkpointB), -0.5f);
    QVERIFY(!fs::exists(dir + "/checkpoints")); // the shared folder of before is gone
    QVERIFY(!fs::exists(checkpointA + ".tmp"));

    RunRecord run;
    QVERIFY(a.getRun(1, &run));
    QCOMPARE(run.status, RunState::Finished);
    QCOMPARE(run.checkpointFile, std::string("checkpoints/run-1.safetensors"));
    QCOMPARE(run.checkpointSha256, hashFile(checkpointA).sha256);
    QCOMPARE(*run.checkpointBytes, static_cast<std::int64_t>(fs::file_size(checkpointA)));
    QCOMPARE(test::rawQuery(
                 pathA, "SELECT length(checkpoint_sha256), checkpoint_bytes > 0 FROM runs WHERE id = 1"),
        std::string("64|1"));

    // Deleting run 1 of a removes a's file only.
    QVERIFY2(a.deleteRun(1, &error), error.c_str());
    QVERIFY(!fs::exists(checkpointA));
    QVERIFY2(b.verifyCheckpoint(1, &checkpointB, &error), error.c_str());
    QCOMPARE(savedBias(checkpointB), -0.5f);
}

void TestStoreSafety::tamperedOrMissingCheckpointIsRefused()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    std::string error;
    QVERIFY(store.open(path));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun("run", RunState::Running), &id));

    // No checkpoint recorded (a run from before version 3, or one that stopped early).
    QVERIFY(!store.verifyCheckpoint(id, nullptr, &error));
    QVERIFY2(contains(error, "run 1 has no recorded checkpoint"), error.c_str());
    // A file at the shared place of before is named, as unchecked.
    fs::create_directories(fs::path(path).parent_path() / "checkpoints");
    std::ofstream(fs::path(path).parent_path() / "checkpoints" / "run-1.safetensors") << "old";
    QVERIFY(!store.verifyCheckpoint(id, nullptr, &error));
    QVERIFY2(contains(error, "checkpoints/run-1.safetensors is from before then, unchecked"), error.c_str());

    LogObserver log;
    StoreRecorder recorder(store, id, log);
    recorder.onBestModel(*tinyBitfit(0.125f));
    QVERIFY(recorder.finish(finishedSummary()));
    std::string checkpoint;
    QVERIFY2(store.verifyCheckpoint(id, &checkpoint, &error), error.c_str());
    const std::string recorded = hashFile(checkpoint).sha256;

    // One byte changed: refused, naming the file and both hashes.
    std::string bytes = readFile(checkpoint);
    bytes[bytes.size() - 1] ^= 0x01;
    std::ofstream(checkpoint, std::ios::binary | std::ios::trunc) << bytes;
    const std::string found = hashFile(checkpoint).sha256;
    QVERIFY(found != recorded);
    QVERIFY(!store.verifyCheckpoint(id, nullptr, &error));
    QVERIFY2(contains(error, checkpoint), error.c_str());
    QVERIFY2(contains(error, "its SHA-256 is " + found), error.c_str());
    QVERIFY2(contains(error, "the store recorded " + recorded), error.c_str());
    qInfo("%s", error.c_str());

    // Cut short: refused as well, with both sizes.
    const std::string head = readFile(checkpoint).substr(0, 10);
    std::ofstream(checkpoint, std::ios::binary | std::ios::trunc) << head;
    QVERIFY(!store.verifyCheckpoint(id, nullptr, &error));
    QVERIFY2(contains(error, "(10 bytes)"), error.c_str());

    // Gone.
    fs::remove(checkpoint);
    QVERIFY(!store.verifyCheckpoint(id, nullptr, &error));
    QVERIFY2(contains(error, "its checkpoint " + checkpoint + " is missing"), error.c_str());
}

void TestStoreSafety::deletingARunRemovesItsFiles()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    std::string error;
    QVERIFY(store.open(path));
    std::int64_t kept = 0, doomed = 0, unrecorded = 0;
    QVERIFY(store.createRun(sampleRun("kept", RunState::Running), &kept));
    QVERIFY(store.createRun(sampleRun("doomed", RunState::Running), &doomed));
    QVERIFY(store.createRun(sampleRun("unrecorded", RunState::Running), &unrecorded));
    fs::create_directories(fs::path(store.checkpointPath(kept)).parent_path());
    for (const auto id : { kept, doomed, unrecorded })
        std::ofstream(store.checkpointPath(id)) << "weights of run " << id;
    std::ofstream(store.checkpointPath(doomed) + ".tmp") << "half written";
    QVERIFY2(store.recordCheckpoint(kept, &error), error.c_str());
    QVERIFY2(store.recordCheckpoint(doomed, &error), error.c_str());
    for (const auto id : { kept, doomed, unrecorded })
        QVERIFY(store.finishRun(id, RunState::Finished, {}));

    QVERIFY2(store.deleteRun(doomed, &error), error.c_str());
    QVERIFY(!fs::exists(store.checkpointPath(doomed)));
    QVERIFY(!fs::exists(store.checkpointPath(doomed) + ".tmp"));
    // A checkpoint written but never recorded (a crash between the two) goes with its run too.
    QVERIFY2(store.deleteRun(unrecorded, &error), error.c_str());
    QVERIFY(!fs::exists(store.checkpointPath(unrecorded)));
    QVERIFY2(store.verifyCheckpoint(kept, nullptr, &error), error.c_str());

    // A file that cannot be removed (here: a non-empty folder in its place) fails the call, naming it,
    // after the run itself is gone.
    std::int64_t stuck = 0;
    QVERIFY(store.createRun(sampleRun("stuck", RunState::Running), &stuck));
    QVERIFY(store.finishRun(stuck, RunState::Finished, {}));
    fs::create_directories(store.checkpointPath(stuck) + "/inside");
    QVERIFY(!store.deleteRun(stuck, &error));
    QVERIFY2(
        contains(error, "the run is deleted, but its file " + store.checkpointPath(stuck)), error.c_str());
    RunRecord run;
    QVERIFY(!store.getRun(stuck, &run));
}

void TestStoreSafety::busyWriteIsReportedAsBusy()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    std::string error;
    QVERIFY(store.open(path));
    QVERIFY(store.setBusyTimeout(50));
    {
        WriteLock lock(path);
        QVERIFY(lock.held());
        QVERIFY(!store.createRun(sampleRun(), nullptr, &error));
        QVERIFY2(contains(error, "database is locked"), error.c_str());
        QVERIFY(store.lastErrorWasBusy());
    }
    QVERIFY(!store.setStatus(999, RunState::Finished, {}, &error));
    QVERIFY(!store.lastErrorWasBusy()); // "no run 999" is not worth a retry
    QVERIFY2(store.createRun(sampleRun(), nullptr, &error), error.c_str());
}

// A run whose final write meets a busy store is written once the other writer lets go, within the
// recorder's retry time; with no retry time it stays running and says why.
void TestStoreSafety::finalWriteIsRetriedWhileTheStoreIsBusy()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    QVERIFY(store.open(path));
    QVERIFY(store.setBusyTimeout(50));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun("busy end", RunState::Running), &id));
    LogObserver log;
    {
        StoreRecorder recorder(store, id, log);
        recorder.setFinalWriteRetry(std::chrono::milliseconds(0));
        WriteLock lock(path);
        QVERIFY(lock.held());
        QVERIFY(!recorder.finish(finishedSummary()));
    }
    QVERIFY2(contains(log.all(), "database is locked"), log.all().c_str());
    RunRecord run;
    QVERIFY(store.getRun(id, &run));
    QCOMPARE(run.status, RunState::Running);

    log.lines.clear();
    StoreRecorder recorder(store, id, log);
    recorder.setFinalWriteRetry(std::chrono::seconds(20));
    auto lock = std::make_unique<WriteLock>(path);
    QVERIFY(lock->held());
    std::thread releaser([&lock] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        lock->release();
    });
    const auto start = std::chrono::steady_clock::now();
    const bool written = recorder.finish(finishedSummary());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    releaser.join();
    QVERIFY2(written, log.all().c_str());
    QVERIFY2(seconds >= 1.4 && seconds < 10.0, std::to_string(seconds).c_str());
    QVERIFY2(contains(log.all(), "trying again for up to 20 s"), log.all().c_str());
    QVERIFY2(contains(log.all(), "the final write succeeded at try"), log.all().c_str());
    QVERIFY(store.getRun(id, &run));
    QCOMPARE(run.status, RunState::Finished);
    QCOMPARE(*run.figures.bestValidationMetric, 0.75);
    qInfo("final write written after %.2f s of a busy store", seconds);
}

// A process whose final write fails (the store stays busy past its retries) and that then ends leaves its
// run "running"; the next open of the store marks it interrupted, naming the process.
void TestStoreSafety::runOfADeadOwnerIsRepairedOnOpen()
{
    const std::string path = freshDir() + "/results.sqlite";
    {
        ResultsStore setup;
        QVERIFY(setup.open(path));
    }
    int ready[2], go[2];
    QVERIFY(pipe(ready) == 0 && pipe(go) == 0);
    const pid_t child = fork();
    if (child == 0) {
        ResultsStore store;
        std::int64_t id = 0;
        if (!store.open(path) || !store.setBusyTimeout(20)
            || !store.createRun(sampleRun("owner dies", RunState::Running), &id))
            _exit(2);
        char byte = 1;
        if (write(ready[1], &byte, 1) != 1 || read(go[0], &byte, 1) != 1) // parent now holds the lock
            _exit(3);
        LogObserver log;
        StoreRecorder recorder(store, id, log);
        recorder.setFinalWriteRetry(std::chrono::milliseconds(300));
        _exit(recorder.finish(finishedSummary()) ? 4 : 0);
    }
    char byte = 0;
    QVERIFY(read(ready[0], &byte, 1) == 1);
    int status = 0;
    {
        WriteLock lock(path);
        QVERIFY(lock.held());
        QVERIFY(write(go[1], &byte, 1) == 1);
        QCOMPARE(waitpid(child, &status, 0), child);
    }
    QVERIFY(WIFEXITED(status));
    QCOMPARE(WEXITSTATUS(status), 0); // its final write failed
    QCOMPARE(test::rawQuery(path, "SELECT status FROM runs WHERE id = 1"), std::string("running"));

    ResultsStore store;
    QVERIFY(store.open(path));
    QCOMPARE(store.interruptedAtOpen(), 1);
    RunRecord run;
    QVERIFY(store.getRun(1, &run));
    QCOMPARE(run.status, RunState::Interrupted);
    QVERIFY2(contains(run.errorMessage, "pid " + std::to_string(child)), run.errorMessage.c_str());
    for (int fd : { ready[0], ready[1], go[0], go[1] })
        close(fd);
}

QTEST_GUILESS_MAIN(TestStoreSafety)
#include "test_store_safety.moc"
