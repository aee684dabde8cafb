// The results store's safety features (issue 15): each store's own files folder with checkpoint hashes
// checked before use and removed with their run (two stores in one folder, a tampered checkpoint), final
// writes retried while the store is busy and runs of a dead owner repaired at the next open, read-only
// opening of a store that cannot be written, a migration from a frozen copy of schema version 1, device
// leases, and enqueueing a batch of runs in one transaction.
#include <QtTest>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "model/T5Model.h"
#include "peft/Method.h"
#include "store/FileHash.h"
#include "store/ResultsStore.h"
#include "store/StoreMigrations.h"
#include "train/StoreRecorder.h"

using namespace ladder;

namespace {

namespace fs = std::filesystem;

// Schema version 1 exactly as LadderBench 1 created it (a frozen copy of migration 1, so that the migration
// test below does not follow an accidental edit of the shipped migration: it checks that too).
constexpr const char* kFrozenSchemaV1 = R"sql(
CREATE TABLE runs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at             TEXT    NOT NULL,
    started_at             TEXT,
    finished_at            TEXT,
    name                   TEXT    NOT NULL DEFAULT '',
    spec_json              TEXT    NOT NULL,
    spec_hash              TEXT    NOT NULL,
    method                 TEXT    NOT NULL DEFAULT '',
    method_options_json    TEXT    NOT NULL DEFAULT '{}',
    backbone               TEXT    NOT NULL DEFAULT '',
    task                   TEXT    NOT NULL DEFAULT '',
    seed                   INTEGER,
    device                 TEXT    NOT NULL DEFAULT 'cpu',
    status                 TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled', 'interrupted')),
    error_message          TEXT,
    queue_position         INTEGER,
    owner_pid              INTEGER,
    owner_start_ticks      INTEGER,
    step                   INTEGER NOT NULL DEFAULT 0,
    total_steps            INTEGER NOT NULL DEFAULT 0,
    main_metric_name       TEXT,
    best_validation_metric REAL,
    best_step              INTEGER,
    test_metric            REAL,
    last_metric            REAL,
    peak_allocated_bytes   INTEGER,
    peak_reserved_bytes    INTEGER,
    weight_bytes           INTEGER,
    gradient_bytes         INTEGER,
    optimizer_bytes        INTEGER,
    trainable_params       INTEGER,
    total_params           INTEGER,
    backbone_params        INTEGER,
    wall_seconds           REAL,
    tokens_per_second      REAL,
    CHECK ((status = 'queued') = (queue_position IS NOT NULL))
);
CREATE INDEX runs_by_status    ON runs (status, device, queue_position);
CREATE INDEX runs_by_task      ON runs (task, backbone);
CREATE INDEX runs_by_backbone  ON runs (backbone);
CREATE INDEX runs_by_method    ON runs (method);
CREATE INDEX runs_by_spec_hash ON runs (spec_hash, status);

CREATE TABLE metrics (
    run_id               INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step                 INTEGER NOT NULL,
    epoch                REAL,
    loss                 REAL,
    learning_rate        REAL,
    allocated_bytes      INTEGER,
    peak_allocated_bytes INTEGER,
    reserved_bytes       INTEGER,
    tokens_per_second    REAL,
    elapsed_seconds      REAL,
    time                 TEXT    NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

CREATE TABLE evaluations (
    id               INTEGER PRIMARY KEY,
    run_id           INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step             INTEGER NOT NULL,
    epoch            REAL,
    split            TEXT    NOT NULL CHECK (split IN ('validation', 'test')),
    metrics_json     TEXT    NOT NULL DEFAULT '{}',
    main_metric_name TEXT,
    main_metric      REAL,
    predictions_json TEXT,
    time             TEXT    NOT NULL
);
CREATE INDEX evaluations_by_run ON evaluations (run_id, step);

CREATE TABLE logs (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    time    TEXT    NOT NULL,
    level   TEXT    NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error')),
    message TEXT    NOT NULL
);
CREATE INDEX logs_by_run ON logs (run_id, id);
)sql";

std::string freshDir()
{
    return ladder::test::makeTempDir();
}

NewRun sampleRun(const std::string& name = "lst-r8", RunState status = RunState::Queued,
    const std::string& device = "cpu", int seed = 1)
{
    NewRun r;
    r.name = name;
    r.specJson = nlohmann::json {
        { "method", { { "name", "lst" }, { "r", 8 } } }, { "task", "rte" }, { "seed", seed }, { "name", name }
    }.dump();
    r.method = "lst";
    r.methodOptionsJson = R"({"r":8})";
    r.backbone = "demo";
    r.task = "rte";
    r.seed = seed;
    r.device = device;
    r.status = status;
    return r;
}

// Another writer: holds the store's write lock (BEGIN IMMEDIATE) until release().
class WriteLock {
public:
    explicit WriteLock(const std::string& path)
    {
        sqlite3_open_v2(path.c_str(), &m_db, SQLITE_OPEN_READWRITE, nullptr);
        m_held = sqlite3_exec(m_db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    ~WriteLock()
    {
        release();
        sqlite3_close(m_db);
    }
    bool held() const { return m_held; }
    void release()
    {
        if (m_held)
            sqlite3_exec(m_db, "COMMIT", nullptr, nullptr, nullptr);
        m_held = false;
    }

private:
    sqlite3* m_db = nullptr;
    bool m_held = false;
};

std::string readFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool contains(const std::string& text, const std::string& part)
{
    return text.find(part) != std::string::npos;
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

// Runs `body` in a child process as the user nobody (when this test runs as root, so that file
// permissions apply) or in this process; returns "ok" or the failure the body reported.
std::string asUnprivileged(const std::function<std::string()>& body)
{
    if (geteuid() != 0)
        return body();
    int fds[2];
    if (pipe(fds) != 0)
        return "pipe failed";
    const pid_t child = fork();
    if (child == 0) {
        close(fds[0]);
        std::string result;
        if (setgid(65534) != 0 || setuid(65534) != 0)
            result = "cannot become nobody";
        else
            result = body();
        const auto written = write(fds[1], result.data(), result.size());
        (void)written;
        _exit(0);
    }
    close(fds[1]);
    std::string result;
    char buffer[4096];
    ssize_t n = 0;
    while ((n = read(fds[0], buffer, sizeof buffer)) > 0)
        result.append(buffer, static_cast<std::size_t>(n));
    close(fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    return result;
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
    void readingNeverCreatesAStore();
    void readOnlyStoreCanBeListed();
    void migratesExactVersion1Schema();
    void deviceLeases();
    void deviceLeaseRace();
    void claimUnderLease();
    void createRunsIsAllOrNothing();
    void findFinishedRunsForABatch();
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

void TestStoreSafety::readingNeverCreatesAStore()
{
    const std::string dir = freshDir();
    ResultsStore store;
    std::string error;
    for (const auto mode : { ResultsStore::OpenMode::ReadOnly, ResultsStore::OpenMode::Existing }) {
        const std::string missing = dir + "/no/such/folder/results.sqlite";
        QVERIFY(!store.open(missing, mode, &error));
        QCOMPARE(error, "no results store at " + missing);
        QCOMPARE(store.lastError(), error);
        QVERIFY(!fs::exists(dir + "/no"));
        const std::string alsoMissing = dir + "/results.sqlite";
        QVERIFY(!store.open(alsoMissing, mode, &error));
        QCOMPARE(error, "no results store at " + alsoMissing);
        QVERIFY(!fs::exists(alsoMissing));
        // An empty file is no store either, and stays empty.
        std::ofstream(dir + "/empty.sqlite").flush();
        QVERIFY(!store.open(dir + "/empty.sqlite", mode, &error));
        QCOMPARE(error, "no results store at " + dir + "/empty.sqlite");
        QCOMPARE(fs::file_size(dir + "/empty.sqlite"), std::uintmax_t(0));
    }
    QVERIFY(!fs::exists(dir + "/no") && !fs::exists(dir + "/results.sqlite"));
    // A file that is not a store is still called what it is.
    std::ofstream(dir + "/notes.txt") << "hello, this is not a database, but long enough to be read as one\n";
    QVERIFY(!store.open(dir + "/notes.txt", ResultsStore::OpenMode::ReadOnly, &error));
    QVERIFY2(contains(error, "not an SQLite database"), error.c_str());
    // Existing opens (and migrates) a store that is there.
    {
        ResultsStore creator;
        QVERIFY(creator.open(dir + "/results.sqlite"));
    }
    QVERIFY2(store.open(dir + "/results.sqlite", ResultsStore::OpenMode::Existing, &error), error.c_str());
    QVERIFY(!store.isReadOnly());
    QVERIFY(store.createRun(sampleRun(), nullptr));
}

// A store whose file and folder cannot be written (a copy chmod'ed 0444 / 0555) opens read-only and lists
// its runs; nothing is written beside it. Runs as the user nobody when the test runs as root.
void TestStoreSafety::readOnlyStoreCanBeListed()
{
    const std::string base = freshDir();
    const std::string source = base + "/source.sqlite";
    {
        ResultsStore writer;
        QVERIFY(writer.open(source));
        std::int64_t id = 0;
        QVERIFY(writer.createRun(sampleRun("finished run", RunState::Running), &id));
        QVERIFY(writer.finishRun(id, RunState::Finished, {}));
        QVERIFY(writer.createRun(sampleRun("queued run"), &id));
    }
    QVERIFY(!fs::exists(source + "-wal")); // closed cleanly: no -wal or -shm left to read with

    const std::string folder = base + "/readonly";
    fs::create_directory(folder);
    const std::string copy = folder + "/results.sqlite";
    fs::copy_file(source, copy);
    fs::permissions(copy, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
    fs::permissions(folder,
        fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec
            | fs::perms::others_read | fs::perms::others_exec);
    fs::permissions(base,
        fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read
            | fs::perms::others_exec);
    if (geteuid() == 0)
        qInfo("running as root (id -u is 0): the read-only checks run in a child process as the user nobody");

    const std::string result = asUnprivileged([&]() -> std::string {
        ResultsStore store;
        std::string error;
        // For writing it cannot be opened (the folder takes no -wal file).
        if (store.open(copy, &error))
            return "opened for writing: the check is void";
        if (!store.open(copy, ResultsStore::OpenMode::ReadOnly, &error))
            return "read-only open failed: " + error;
        if (!store.isReadOnly())
            return "not read-only";
        std::vector<RunRecord> runs;
        if (!store.listRuns({}, &runs, &error))
            return "listing failed: " + error;
        if (runs.size() != 2 || runs[0].name != "finished run" || runs[0].status != RunState::Finished
            || runs[1].status != RunState::Queued)
            return "wrong runs listed";
        int version = 0;
        if (!store.schemaVersion(&version, &error) || version != ResultsStore::latestSchemaVersion())
            return "schema version " + std::to_string(version);
        if (store.createRun(sampleRun(), nullptr, &error))
            return "a write succeeded";
        if (store.deleteRun(runs[0].id, &error))
            return "a delete succeeded";
        return "ok:" + error;
    });
    QVERIFY2(result.rfind("ok:", 0) == 0, result.c_str());
    qInfo("a write to the read-only store fails with: %s", result.substr(3).c_str());
    QVERIFY(!fs::exists(copy + "-wal"));
    QVERIFY(!fs::exists(copy + "-shm"));

    // A writable store opened read-only reads what a writer commits meanwhile and changes nothing itself,
    // not even an old schema: a version-1 file stays version 1 and lists its runs.
    const std::string v1 = base + "/v1.sqlite";
    QCOMPARE(test::rawQuery(v1,
                 std::string(kFrozenSchemaV1) + "PRAGMA user_version = 1; PRAGMA application_id = "
                     + std::to_string(store_detail::kApplicationId)
                     + "; INSERT INTO runs (id, created_at, spec_json, spec_hash, status) VALUES "
                       "(4, 't', '{}', 'h', 'running');"),
        std::string());
    ResultsStore reader;
    std::string error;
    QVERIFY2(reader.open(v1, ResultsStore::OpenMode::ReadOnly, &error), error.c_str());
    std::vector<RunRecord> runs;
    QVERIFY2(reader.listRuns({}, &runs, &error), error.c_str());
    QCOMPARE(runs.size(), std::size_t(1));
    QCOMPARE(runs[0].status, RunState::Running); // no owner, but a reader marks nothing
    QVERIFY(!runs[0].figures.initPeakAllocatedBytes.has_value());
    QVERIFY(runs[0].checkpointFile.empty());
    QCOMPARE(test::rawQuery(v1, "PRAGMA user_version"), std::string("1"));
}

// A store built from the frozen version-1 schema with rows in every table opens with the current code,
// migrates to the latest version, and keeps every row and value; the columns added since read NULL.
void TestStoreSafety::migratesExactVersion1Schema()
{
    // Migration 1 is never edited once shipped.
    QCOMPARE(std::string(store_detail::migrations().front().sql), std::string(kFrozenSchemaV1));

    const std::string path = freshDir() + "/v1.sqlite";
    const std::string setup = std::string(kFrozenSchemaV1)
        + "PRAGMA user_version = 1; PRAGMA application_id = " + std::to_string(store_detail::kApplicationId)
        + R"sql(;
INSERT INTO runs (id, created_at, started_at, finished_at, name, spec_json, spec_hash, method,
    method_options_json, backbone, task, seed, device, status, error_message, owner_pid, owner_start_ticks,
    step, total_steps, main_metric_name, best_validation_metric, best_step, test_metric, last_metric,
    peak_allocated_bytes, peak_reserved_bytes, weight_bytes, gradient_bytes, optimizer_bytes,
    trainable_params, total_params, backbone_params, wall_seconds, tokens_per_second)
VALUES (3, '2025-03-01T14:05:09.123Z', '2025-03-01T14:05:10.000Z', '2025-03-01T15:00:00.000Z', 'lst r=8',
    '{"method":{"name":"lst"}}', '0123456789abcdef', 'lst', '{"r":8}', '/models/t5-base', 'rte', 42, 'cuda:0',
    'finished', NULL, 1234, 5678, 500, 500, 'accuracy', 0.6931, 450, 0.6812, 0.6755, 987654321, 1073741824,
    891289600, 1234567, 2469134, 308641, 222000000, 222903552, 3600.5, 812.25);
INSERT INTO runs (id, created_at, spec_json, spec_hash, status, error_message, step, total_steps)
VALUES (5, '2025-03-02T09:00:00.000Z', '{}', 'fedcba9876543210', 'failed', 'out of memory', 12, 500);
INSERT INTO runs (id, created_at, spec_json, spec_hash, status, queue_position, device)
VALUES (9, '2025-03-03T09:00:00.000Z', '{"q":1}', 'aaaaaaaaaaaaaaaa', 'queued', 1, 'cuda:1');
INSERT INTO metrics VALUES
    (3, 10, 0.5, 2.5, 0.0003, 1000, 2000, 4096, 800.5, 1.25, '2025-03-01T14:05:11.000Z'),
    (3, 20, 1.0, 1.25, 0.0002, 1100, 2100, 4096, 810.5, 2.5, '2025-03-01T14:05:12.000Z');
INSERT INTO evaluations (id, run_id, step, epoch, split, metrics_json, main_metric_name, main_metric,
    predictions_json, time)
VALUES (1, 3, 450, 9.0, 'validation', '{"accuracy":0.6931}', 'accuracy', 0.6931, '[{"id":"0"}]', 't1'),
       (2, 3, 450, 9.0, 'test', '{"accuracy":0.6812}', 'accuracy', 0.6812, NULL, 't2');
INSERT INTO logs (id, run_id, time, level, message) VALUES (1, 3, 't', 'info', 'started'),
    (2, 5, 't', 'error', 'CUDA out of memory');
)sql";
    QCOMPARE(test::rawQuery(path, setup), std::string());
    QCOMPARE(test::rawQuery(path, "PRAGMA user_version"), std::string("1"));

    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(path, &error), error.c_str());
    int version = 0;
    QVERIFY(store.schemaVersion(&version));
    QCOMPARE(version, ResultsStore::latestSchemaVersion());
    QCOMPARE(version, 3);
    std::string integrity;
    QVERIFY(store.integrityCheck(&integrity));
    QCOMPARE(integrity, std::string("ok"));
    QCOMPARE(test::rawQuery(path, "PRAGMA foreign_key_check"), std::string());

    std::vector<RunRecord> runs;
    QVERIFY2(store.listRuns({}, &runs, &error), error.c_str());
    QCOMPARE(runs.size(), std::size_t(3));
    const RunRecord& r = runs[0];
    QCOMPARE(r.id, std::int64_t(3));
    QCOMPARE(r.createdAt, std::string("2025-03-01T14:05:09.123Z"));
    QCOMPARE(r.startedAt, std::string("2025-03-01T14:05:10.000Z"));
    QCOMPARE(r.finishedAt, std::string("2025-03-01T15:00:00.000Z"));
    QCOMPARE(r.name, std::string("lst r=8"));
    QCOMPARE(r.specJson, std::string(R"({"method":{"name":"lst"}})"));
    QCOMPARE(r.specHash, std::string("0123456789abcdef"));
    QCOMPARE(r.method, std::string("lst"));
    QCOMPARE(r.methodOptionsJson, std::string(R"({"r":8})"));
    QCOMPARE(r.backbone, std::string("/models/t5-base"));
    QCOMPARE(r.task, std::string("rte"));
    QCOMPARE(*r.seed, std::int64_t(42));
    QCOMPARE(r.device, std::string("cuda:0"));
    QCOMPARE(r.status, RunState::Finished);
    QCOMPARE(*r.ownerPid, std::int64_t(1234));
    QCOMPARE(r.step, std::int64_t(500));
    QCOMPARE(r.totalSteps, std::int64_t(500));
    const FinalFigures& f = r.figures;
    QCOMPARE(f.mainMetricName, std::string("accuracy"));
    QCOMPARE(*f.bestValidationMetric, 0.6931);
    QCOMPARE(*f.bestStep, std::int64_t(450));
    QCOMPARE(*f.testMetric, 0.6812);
    QCOMPARE(*f.lastMetric, 0.6755);
    QCOMPARE(*f.peakAllocatedBytes, std::int64_t(987654321));
    QCOMPARE(*f.peakReservedBytes, std::int64_t(1073741824));
    QCOMPARE(*f.weightBytes, std::int64_t(891289600));
    QCOMPARE(*f.gradientBytes, std::int64_t(1234567));
    QCOMPARE(*f.optimizerBytes, std::int64_t(2469134));
    QCOMPARE(*f.trainableParams, std::int64_t(308641));
    QCOMPARE(*f.totalParams, std::int64_t(222000000));
    QCOMPARE(*f.backboneParams, std::int64_t(222903552));
    QCOMPARE(*f.wallSeconds, 3600.5);
    QCOMPARE(*f.tokensPerSecond, 812.25);
    // Added by versions 2 and 3: NULL for the old rows.
    QVERIFY(!f.initPeakAllocatedBytes && !f.evalPeakAllocatedBytes);
    QVERIFY(r.checkpointFile.empty() && r.checkpointSha256.empty() && !r.checkpointBytes);
    QCOMPARE(
        test::rawQuery(path,
            "SELECT count(*) FROM runs WHERE init_peak_allocated_bytes IS NULL AND eval_peak_allocated_bytes "
            "IS NULL AND checkpoint_file IS NULL AND checkpoint_sha256 IS NULL AND checkpoint_bytes IS NULL"),
        std::string("3"));
    QCOMPARE(runs[1].status, RunState::Failed);
    QCOMPARE(runs[1].errorMessage, std::string("out of memory"));
    QCOMPARE(runs[2].status, RunState::Queued);
    QCOMPARE(*runs[2].queuePosition, std::int64_t(1));
    QCOMPARE(runs[2].device, std::string("cuda:1"));

    std::vector<MetricPoint> points;
    QVERIFY(store.getMetrics(3, ResultsStore::kAllSteps, &points));
    QCOMPARE(points.size(), std::size_t(2));
    QCOMPARE(points[0].step, std::int64_t(10));
    QCOMPARE(*points[0].epoch, 0.5);
    QCOMPARE(*points[0].loss, 2.5);
    QCOMPARE(*points[0].learningRate, 0.0003);
    QCOMPARE(*points[0].allocatedBytes, std::int64_t(1000));
    QCOMPARE(*points[1].peakAllocatedBytes, std::int64_t(2100));
    QCOMPARE(*points[1].reservedBytes, std::int64_t(4096));
    QCOMPARE(*points[1].tokensPerSecond, 810.5);
    QCOMPARE(*points[1].elapsedSeconds, 2.5);
    QCOMPARE(points[1].time, std::string("2025-03-01T14:05:12.000Z"));
    std::vector<Evaluation> evaluations;
    QVERIFY(store.getEvaluations(3, &evaluations));
    QCOMPARE(evaluations.size(), std::size_t(2));
    QCOMPARE(evaluations[0].split, std::string("validation"));
    QCOMPARE(evaluations[0].metrics.at("accuracy"), 0.6931);
    QCOMPARE(evaluations[0].predictionsJson, std::string(R"([{"id":"0"}])"));
    QCOMPARE(*evaluations[1].mainMetric, 0.6812);
    std::vector<LogLine> logs;
    QVERIFY(store.getLogs(5, 0, &logs));
    QCOMPARE(logs.size(), std::size_t(1));
    QCOMPARE(logs[0].level, LogLevel::Error);
    QCOMPARE(logs[0].message, std::string("CUDA out of memory"));

    // What the new version adds works on the migrated file: a checkpoint, a lease, the queue, new runs.
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun("after", RunState::Running), &id));
    QVERIFY(id > 9); // AUTOINCREMENT kept its sequence
    fs::create_directories(fs::path(store.checkpointPath(id)).parent_path());
    std::ofstream(store.checkpointPath(id)) << "weights";
    QVERIFY2(store.recordCheckpoint(id, &error), error.c_str());
    QVERIFY2(store.verifyCheckpoint(id, nullptr, &error), error.c_str());
    bool acquired = false;
    QVERIFY2(store.acquireDeviceLease("cuda:1", "window", 60, &acquired, &error), error.c_str());
    QVERIFY(acquired);
    std::optional<RunRecord> claimed;
    QVERIFY2(store.claimNextQueuedUnderLease("cuda:1", "window", &claimed, nullptr, &error), error.c_str());
    QVERIFY(claimed && claimed->id == 9);
}

void TestStoreSafety::deviceLeases()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore first, second;
    QVERIFY(first.open(path));
    QVERIFY(second.open(path));
    const std::string a = ResultsStore::newLeaseOwner();
    const std::string b = ResultsStore::newLeaseOwner();
    QVERIFY(a != b);
    QVERIFY2(contains(a, ":" + std::to_string(getpid()) + ":"), a.c_str());
    std::string error;
    bool ok = false;

    QVERIFY2(first.acquireDeviceLease("cuda:0", a, 60, &ok, &error), error.c_str());
    QVERIFY(ok);
    QVERIFY(second.acquireDeviceLease("cuda:0", b, 60, &ok));
    QVERIFY(!ok); // one window per device
    QVERIFY(second.acquireDeviceLease("cpu", b, 60, &ok));
    QVERIFY(ok); // another device is free
    std::optional<DeviceLease> lease;
    QVERIFY(second.getDeviceLease("cuda:0", &lease));
    QVERIFY(lease && lease->owner == a && lease->expiresAt > utcNowIso8601());
    const std::string acquiredAt = lease->acquiredAt;
    QVERIFY(first.acquireDeviceLease("cuda:0", a, 60, &ok));
    QVERIFY(ok); // asking again renews
    QVERIFY(first.getDeviceLease("cuda:0", &lease));
    QCOMPARE(lease->acquiredAt, acquiredAt);
    QVERIFY(first.renewDeviceLease("cuda:0", a, 60, &ok));
    QVERIFY(ok);
    QVERIFY(second.renewDeviceLease("cuda:0", b, 60, &ok));
    QVERIFY(!ok); // not b's
    QVERIFY(second.releaseDeviceLease("cuda:0", b)); // not b's: a no-op
    QVERIFY(second.getDeviceLease("cuda:0", &lease));
    QVERIFY(lease && lease->owner == a);
    QVERIFY(first.releaseDeviceLease("cuda:0", a));
    QVERIFY(second.getDeviceLease("cuda:0", &lease));
    QVERIFY(!lease);
    QVERIFY(first.renewDeviceLease("cuda:0", a, 60, &ok));
    QVERIFY(!ok); // released: lost
    QVERIFY(second.acquireDeviceLease("cuda:0", b, 1, &ok));
    QVERIFY(ok);

    // A lease that is not renewed expires: then another owner takes it, and the old one's renewal fails.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    QVERIFY(first.getDeviceLease("cuda:0", &lease));
    QVERIFY(!lease);
    QVERIFY(first.acquireDeviceLease("cuda:0", a, 60, &ok));
    QVERIFY(ok);
    QVERIFY(second.renewDeviceLease("cuda:0", b, 60, &ok));
    QVERIFY(!ok);
    // An expired lease that nobody took is renewed by its owner.
    QVERIFY(first.acquireDeviceLease("cuda:2", a, 1, &ok));
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    QVERIFY(first.renewDeviceLease("cuda:2", a, 60, &ok));
    QVERIFY(ok);

    QVERIFY(!first.acquireDeviceLease("", a, 60, &ok, &error));
    QVERIFY2(contains(error, "a lease needs a device name"), error.c_str());
    QVERIFY(!first.acquireDeviceLease("cuda:0", a, 0, &ok, &error));
    QVERIFY2(contains(error, "positive number of seconds"), error.c_str());
}

// Windows asking for the same device at once: exactly one gets it.
void TestStoreSafety::deviceLeaseRace()
{
    const std::string path = freshDir() + "/results.sqlite";
    {
        ResultsStore setup;
        QVERIFY(setup.open(path));
    }
    constexpr int kThreads = 6;
    std::atomic<int> winners { 0 }, failures { 0 }, ready { 0 };
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&] {
            ResultsStore store;
            if (!store.open(path)) {
                ++failures;
                return;
            }
            ++ready;
            while (ready.load() < kThreads)
                std::this_thread::yield();
            bool acquired = false;
            if (!store.acquireDeviceLease("cuda:0", ResultsStore::newLeaseOwner(), 60, &acquired))
                ++failures;
            else if (acquired)
                ++winners;
        });
    }
    for (auto& t : threads)
        t.join();
    QCOMPARE(failures.load(), 0);
    QCOMPARE(winners.load(), 1);
}

void TestStoreSafety::claimUnderLease()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    QVERIFY(store.open(path));
    std::int64_t first = 0, second = 0;
    QVERIFY(store.createRun(sampleRun("q1", RunState::Queued, "cuda:0"), &first));
    QVERIFY(store.createRun(sampleRun("q2", RunState::Queued, "cuda:0"), &second));
    const std::string mine = ResultsStore::newLeaseOwner();
    const std::string theirs = ResultsStore::newLeaseOwner();
    std::optional<RunRecord> run;
    bool held = true;
    std::string error;
    // Without the lease nothing is claimed.
    QVERIFY2(store.claimNextQueuedUnderLease("cuda:0", mine, &run, &held, &error), error.c_str());
    QVERIFY(!held && !run);
    bool ok = false;
    QVERIFY(store.acquireDeviceLease("cuda:0", theirs, 60, &ok));
    QVERIFY(store.claimNextQueuedUnderLease("cuda:0", mine, &run, &held));
    QVERIFY(!held && !run);
    QVERIFY(store.claimNextQueuedUnderLease("cuda:0", theirs, &run, &held));
    QVERIFY(held && run && run->id == first && run->status == RunState::Running);
    // claimNextQueued works as before, with no lease.
    QVERIFY(store.claimNextQueued("cuda:0", &run));
    QVERIFY(run && run->id == second);
    QVERIFY(store.claimNextQueuedUnderLease("cuda:0", theirs, &run, &held));
    QVERIFY(held && !run); // nothing left
}

void TestStoreSafety::createRunsIsAllOrNothing()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    QVERIFY(store.open(path));
    std::int64_t before = 0;
    QVERIFY(store.createRun(sampleRun("already queued"), &before));
    std::vector<NewRun> batch = { sampleRun("s1", RunState::Queued, "cpu", 1),
        sampleRun("s2", RunState::Queued, "cpu", 2), sampleRun("s3", RunState::Queued, "cuda:0", 3) };
    std::vector<std::int64_t> ids;
    std::string error;
    QVERIFY2(store.createRuns(batch, &ids, &error), error.c_str());
    QCOMPARE(ids.size(), std::size_t(3));
    QVERIFY(ids[0] > before && ids[1] == ids[0] + 1 && ids[2] == ids[1] + 1);
    std::vector<RunRecord> queue;
    RunFilter filter;
    filter.statuses = { RunState::Queued };
    filter.order = RunFilter::Order::QueuePosition;
    QVERIFY(store.listRuns(filter, &queue));
    QCOMPARE(queue.size(), std::size_t(4));
    QCOMPARE(queue[0].id, before);
    for (std::size_t i = 0; i < 3; ++i)
        QCOMPARE(queue[i + 1].id, ids[i]);

    // One bad run in the middle: nothing of the batch is stored.
    batch[1].specJson = "{not json";
    ids = { 99 };
    QVERIFY(!store.createRuns(batch, &ids, &error));
    QVERIFY2(contains(error, "run 2 of 3 (\"s2\")"), error.c_str());
    QVERIFY2(contains(error, "not valid JSON"), error.c_str());
    QCOMPARE(ids, std::vector<std::int64_t> { 99 }); // untouched on failure
    QCOMPARE(test::rawQuery(path, "SELECT count(*) FROM runs"), std::string("4"));
    // While another writer holds the store, the batch waits for it and then goes in whole (or not at all).
    batch[1] = sampleRun("s2 again");
    QVERIFY(store.setBusyTimeout(50));
    {
        WriteLock lock(path);
        QVERIFY(!store.createRuns(batch, &ids, &error));
        QVERIFY(store.lastErrorWasBusy());
    }
    QCOMPARE(test::rawQuery(path, "SELECT count(*) FROM runs"), std::string("4"));
    QVERIFY(store.createRuns(batch, &ids));
    QCOMPARE(test::rawQuery(path, "SELECT count(*) FROM runs"), std::string("7"));
    QVERIFY(store.createRuns({}, &ids));
    QVERIFY(ids.empty());
}

void TestStoreSafety::findFinishedRunsForABatch()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    QVERIFY(store.open(path));
    std::vector<NewRun> runs = { sampleRun("a", RunState::Running, "cpu", 1),
        sampleRun("b", RunState::Running, "cpu", 2), sampleRun("a again", RunState::Running, "cpu", 1) };
    runs[0].specHash = runs[2].specHash = "aaaaaaaaaaaaaaaa";
    runs[1].specHash = "bbbbbbbbbbbbbbbb";
    std::vector<std::int64_t> ids;
    QVERIFY(store.createRuns(runs, &ids));
    QVERIFY(store.finishRun(ids[0], RunState::Finished, {}));
    QVERIFY(store.finishRun(ids[1], RunState::Failed, {}, "diverged"));
    QVERIFY(store.finishRun(ids[2], RunState::Finished, {}));
    std::vector<std::optional<RunRecord>> found;
    std::string error;
    QVERIFY2(store.findFinishedRuns(
                 { "bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa", "cccccccccccccccc" }, &found, &error),
        error.c_str());
    QCOMPARE(found.size(), std::size_t(3));
    QVERIFY(!found[0]); // failed runs do not count
    QVERIFY(found[1] && found[1]->id == ids[2]); // the most recent finished one
    QVERIFY(!found[2]);
    // The same answer as findFinishedRun(), one hash at a time.
    std::optional<RunRecord> one;
    QVERIFY(store.findFinishedRun("aaaaaaaaaaaaaaaa", &one));
    QCOMPARE(one->id, found[1]->id);
    QVERIFY(store.findFinishedRuns({}, &found));
    QVERIFY(found.empty());
}

QTEST_GUILESS_MAIN(TestStoreSafety)
#include "test_store_safety.moc"
