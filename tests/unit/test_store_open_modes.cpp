// Opening a results store that is missing, read-only or old (issue 15): read-only and existing-only opens
// never create or change a store; a store of the frozen schema version 1 is listed read-only and migrated.
#include <QtTest>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "StoreSafetyTestHelpers.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "store/StoreMigrations.h"

using namespace ladder;
using ladder::test::store_safety::contains;
using ladder::test::store_safety::freshDir;
using ladder::test::store_safety::sampleRun;

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

class TestStoreOpenModes : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void readingNeverCreatesAStore();
    void readOnlyStoreCanBeListed();
    void migratesExactVersion1Schema();
};

void TestStoreOpenModes::readingNeverCreatesAStore()
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
void TestStoreOpenModes::readOnlyStoreCanBeListed()
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
void TestStoreOpenModes::migratesExactVersion1Schema()
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

QTEST_GUILESS_MAIN(TestStoreOpenModes)
#include "test_store_open_modes.moc"
