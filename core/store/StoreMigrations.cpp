#include "store/StoreMigrations.h"

namespace ladder::store_detail {

namespace {

// Version 1: the first schema. docs/STORE.md documents every column; keep the two in step.
constexpr const char* kSchemaV1 = R"sql(
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

// Version 2: the peaks of a run's initialisation and evaluations, beside training's peak_allocated_bytes.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE runs ADD COLUMN init_peak_allocated_bytes INTEGER;
ALTER TABLE runs ADD COLUMN eval_peak_allocated_bytes INTEGER;
)sql";

// Version 3: each run's checkpoint (a file in the store's own files folder, with its size and SHA-256,
// checked before use) and the device leases of the workbench's queue.
constexpr const char* kSchemaV3 = R"sql(
ALTER TABLE runs ADD COLUMN checkpoint_file TEXT;
ALTER TABLE runs ADD COLUMN checkpoint_sha256 TEXT;
ALTER TABLE runs ADD COLUMN checkpoint_bytes INTEGER;

CREATE TABLE device_leases (
    device      TEXT NOT NULL PRIMARY KEY,
    owner       TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    renewed_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
)sql";

} // namespace

const std::vector<Migration>& migrations()
{
    // Append only. A migration that must rebuild a table (SQLite's ALTER TABLE is limited) follows
    // https://www.sqlite.org/lang_altertable.html#otheralter inside its transaction.
    static const std::vector<Migration> list = {
        { 1, "create runs, metrics, evaluations and logs", kSchemaV1 },
        { 2, "add the initialisation and evaluation peaks to runs", kSchemaV2 },
        { 3, "add the checkpoint file and its hash to runs, and the device leases", kSchemaV3 },
    };
    return list;
}

} // namespace ladder::store_detail
