#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/StoreTypes.h"

namespace ladder {

// The results store: one SQLite file holding runs, their metric time series, evaluations and log lines
// (docs/STORE.md documents the schema, the concurrency rules and the migration policy).
//
// Errors. Every operation that can fail returns bool: true on success; on failure false, with a message
// that names the file and the operation ("results store /x/results.sqlite: appending 100 metric points
// to run 5: database or disk is full") written to *error when error is not null and kept in lastError().
// Nothing in this class throws (beyond std::bad_alloc escaping a constructor). Outputs come through
// pointer parameters, which are left unchanged on failure.
//
// Safety. Every write runs inside one transaction (BEGIN IMMEDIATE ... COMMIT) that is rolled back on
// any error, so a failed call changes nothing and a process killed mid-write (kill -9, power loss
// aside) leaves the store as of its last commit.
//
// Threads and processes. A ResultsStore is one SQLite connection and is not shared across threads: give
// each thread (the GUI thread, each worker, the CLI) its own ResultsStore on the same file. The file is
// in WAL mode, so readers never block the writer and the writer never blocks readers; writers take turns
// (busy timeout of 10 s). Keep write transactions short: this class never holds one across calls.
//
// Interrupted runs. open() (for writing) marks as "interrupted" every run left "running" whose process is
// gone (runs record the pid and start time of the process that set them running), so a writer killed
// mid-run leaves an interrupted run, while a run that another live process is training stays running.
//
// Files. Each store has a folder of its own beside it, "<store file>.files", for its runs' checkpoints;
// each checkpoint's size and SHA-256 are in its run's row and checked before use (verifyCheckpoint()), and
// deleteRun() removes the files with the run.
class ResultsStore {
public:
    // Passed as afterStep to getMetrics() to read every point.
    static constexpr std::int64_t kAllSteps = std::numeric_limits<std::int64_t>::min();

    // $XDG_DATA_HOME/ladderbench/results.sqlite, or ~/.local/share/ladderbench/results.sqlite when
    // XDG_DATA_HOME is unset or not absolute.
    static std::string defaultPath();
    // The schema version (PRAGMA user_version) this code creates and migrates to.
    static int latestSchemaVersion();

    ResultsStore();
    ~ResultsStore();
    ResultsStore(const ResultsStore&) = delete;
    ResultsStore& operator=(const ResultsStore&) = delete;

    // How open() treats the file.
    enum class OpenMode {
        // Read and write; a missing file (and its folder) is created. Migrates, then marks interrupted runs.
        Create,
        // Read and write an existing store only: a missing path fails with exactly "no results store at
        // PATH" and nothing is created. Migrates, then marks interrupted runs. For commands that write into
        // runs that must already exist (ladder eval).
        Existing,
        // Read only, for listing: never creates, migrates or marks anything, and works on a file and folder
        // that cannot be written (docs/STORE.md, "Opening: for writing, existing only, read only"). A
        // missing path fails with exactly "no results store at PATH". Every write fails.
        ReadOnly,
    };

    // Opens the store at `path`, creating the file and its folder when missing (OpenMode::Create): WAL
    // mode, foreign keys, busy timeout, migrations up to latestSchemaVersion(), then interrupted-run
    // recovery. Fails with a clear message (and leaves the object closed) for a folder, a file that is not
    // an SQLite database, an SQLite database of another application, a store written by a newer
    // LadderBench (schema version above latestSchemaVersion()) and a location that cannot be written.
    bool open(const std::string& path, std::string* error = nullptr);
    bool open(const std::string& path, OpenMode mode, std::string* error = nullptr);
    void close();
    bool isOpen() const;
    // The path given to open(); empty when closed.
    const std::string& path() const;
    // The message of the last failed call (empty when none failed yet).
    const std::string& lastError() const;
    // How many runs the last open() marked "interrupted".
    int interruptedAtOpen() const;
    // Whether the store was opened with OpenMode::ReadOnly.
    bool isReadOnly() const;
    // Whether the last failed call failed because another connection held the write lock past the busy
    // timeout ("database is locked"): a transient failure worth retrying later.
    bool lastErrorWasBusy() const;
    // Whether the last failed call failed because the disk is full (SQLite's "database or disk is full";
    // the message then says "no space left on device"). Retrying helps only once space is freed.
    bool lastErrorWasDiskFull() const;
    // How long a write waits for another writer before failing (default 10 s).
    bool setBusyTimeout(int milliseconds, std::string* error = nullptr);

    // PRAGMA user_version of the open file.
    bool schemaVersion(int* version, std::string* error = nullptr);
    // PRAGMA integrity_check: "ok" for a sound file, else SQLite's list of problems.
    bool integrityCheck(std::string* result, std::string* error = nullptr);
    // PRAGMA data_version: changes whenever another connection (thread or process) commits. The GUI polls
    // it on a timer and reloads only when it changed.
    bool dataVersion(std::int64_t* version, std::string* error = nullptr);
    // Marks runs left "running" by a process that no longer exists as "interrupted" (open() does this);
    // *count (optional) receives how many.
    bool markInterruptedRuns(int* count = nullptr, std::string* error = nullptr);

    // ---- Runs ----------------------------------------------------------------------------------------
    // Creates a run, queued (appended to the end of the queue) or running (started now by this process).
    bool createRun(const NewRun& run, std::int64_t* runId, std::string* error = nullptr);
    // Creates every run in one transaction, all or none (a sweep enqueued at once); queued runs join the
    // queue in this order. *runIds (optional) receives their ids in the same order.
    bool createRuns(
        const std::vector<NewRun>& runs, std::vector<std::int64_t>* runIds, std::string* error = nullptr);
    // Changes the status (see RunState for the allowed changes; setting the current status again is a
    // no-op). running sets started_at and the owner process; a final status sets finished_at; both leave
    // the queue. A non-empty errorMessage is stored in error_message, as one line of at most 1,000 characters
    // (util/Text.h).
    bool setStatus(std::int64_t runId, RunState status, const std::string& errorMessage = {},
        std::string* error = nullptr);
    // A running run's owner process becomes this one (owner_pid and its start time): how a `ladder worker`
    // takes over the run its supervisor claimed, so that the run is "interrupted" when the process that
    // trains it dies, not when the supervisor does. Fails for a run that is not running.
    bool adoptRun(std::int64_t runId, std::string* error = nullptr);
    // Sets runs.step and runs.total_steps (appendMetrics() also advances step).
    bool setProgress(
        std::int64_t runId, std::int64_t step, std::int64_t totalSteps, std::string* error = nullptr);
    // Renames a run (runs.name only: its spec, and so its hash, stay). The name is kept as one line of at
    // most kMaxRunNameLength characters; an empty or blank name is refused. Any state, running included.
    bool renameRun(std::int64_t runId, const std::string& name, std::string* error = nullptr);
    static constexpr std::size_t kMaxRunNameLength = 200;
    // Writes the final figures; fields that are empty in `figures` keep their stored values.
    bool setFinalFigures(std::int64_t runId, const FinalFigures& figures, std::string* error = nullptr);
    // setFinalFigures() and setStatus() in one transaction: how a trainer ends a run.
    bool finishRun(std::int64_t runId, RunState status, const FinalFigures& figures,
        const std::string& errorMessage = {}, std::string* error = nullptr);
    // Resume: the one way back from a final state. An interrupted, failed or cancelled run becomes running
    // again, owned by this process (`ladder train --resume`), or queued at the end of the queue (Resume in
    // the workbench; the worker that claims it resumes it). Its error message and finish time are cleared;
    // its metrics, evaluations and logs stay until rewindRun(). Fails for a run in any other state.
    bool resumeRun(std::int64_t runId, RunState to, std::string* error = nullptr);
    // Drops what a resumed run will record again: its metric points and validation evaluations after
    // `step`, and its test evaluations; runs.step becomes `step`. One transaction.
    bool rewindRun(std::int64_t runId, std::int64_t step, std::string* error = nullptr);
    // Deletes a run with its metrics, evaluations, logs and files (its checkpoint). A running run cannot be
    // deleted. The row goes first, in its transaction; when a file then cannot be removed the call fails
    // with a message naming it, although the run is gone.
    bool deleteRun(std::int64_t runId, std::string* error = nullptr);

    // Fails with "no run N" when there is none.
    bool getRun(std::int64_t runId, RunRecord* run, std::string* error = nullptr);
    bool listRuns(const RunFilter& filter, std::vector<RunRecord>* runs, std::string* error = nullptr);
    // The most recent finished run whose spec_hash is `specHash` (see specHash()), or nullopt: how a sweep
    // skips the runs it already has.
    bool findFinishedRun(
        const std::string& specHash, std::optional<RunRecord>* run, std::string* error = nullptr);
    // findFinishedRun() for many hashes in one read: (*runs)[i] is the most recent finished run with
    // specHashes[i], or nullopt. How a batch (the workbench's sweep) skips the specs it already has.
    bool findFinishedRuns(const std::vector<std::string>& specHashes,
        std::vector<std::optional<RunRecord>>* runs, std::string* error = nullptr);
    // How writers sharing a store (two `ladder sweep`s, a sweep and the workbench's queue) train each spec
    // once: in one transaction, creates `run` as running (owned by this process) unless a run with the
    // same spec hash holds the spec: one that is finished, queued, or running in a live process. *runId
    // receives the new run's id, or -1 when the spec is held; then *holder (optional) receives the run that
    // holds it (the most recent finished one, else the newest queued or running one). A run left running by
    // a process that is gone holds nothing: it is marked interrupted in the same transaction, as open()
    // would. Failed, cancelled and interrupted runs hold nothing: their spec is claimed as a new run.
    // `run.status` must be Running.
    bool claimSpec(const NewRun& run, std::int64_t* runId, std::optional<RunRecord>* holder = nullptr,
        std::string* error = nullptr);
    // The queue's side of claimSpec (a sweep queued from the workbench): in one transaction, queues each
    // run (status Queued) whose spec no run holds, by claimSpec's rule; (*runIds)[i] is the new run's id or
    // -1, and (*holders)[i] (optional) the run that holds it. Holders are looked up before any run is
    // queued, so a batch that repeats a spec queues every entry.
    bool createRunsUnlessHeld(const std::vector<NewRun>& runs, std::vector<std::int64_t>* runIds,
        std::vector<std::optional<RunRecord>>* holders = nullptr, std::string* error = nullptr);

    // ---- Files -------------------------------------------------------------------------------------------
    // Each store keeps its files (the runs' checkpoints) in a folder of its own beside it, named after the
    // store file: "<store file>.files", e.g. /data/results.sqlite.files (the store's path made absolute,
    // symbolic links resolved, so two stores never share one and two names of one store share it).
    static std::string filesDirFor(const std::string& storePath);
    // "<files folder>/checkpoints/run-<id>.safetensors": where a run's best trainable weights are written.
    static std::string checkpointPathFor(const std::string& storePath, std::int64_t runId);
    // The same for the open store (empty when closed).
    std::string filesDir() const;
    std::string checkpointPath(std::int64_t runId) const;
    // "<files folder>/state/run-<id>.state": a run's training state, from which an interrupted, failed or
    // cancelled run resumes (train/TrainState.h). Removed with the run, and when the run finishes.
    static std::string statePathFor(const std::string& storePath, std::int64_t runId);
    std::string statePath(std::int64_t runId) const;
    // Records the file now at checkpointPath(runId) as the run's checkpoint: its path, size and SHA-256
    // go into the run's row (the file is read once to hash it, outside the write transaction).
    bool recordCheckpoint(std::int64_t runId, std::string* error = nullptr);
    // Checks the run's recorded checkpoint before use: it exists, and its size and SHA-256 are the
    // recorded ones. *path (optional) receives the file's path. Fails, naming the file, for a run without
    // a recorded checkpoint, a missing file, and a file whose hash differs ("its SHA-256 is X, the store
    // recorded Y": overwritten, damaged or tampered with).
    bool verifyCheckpoint(std::int64_t runId, std::string* path, std::string* error = nullptr);
    // Space kept back for a run's last writes when the disk fills: a file of `bytes` allocated at
    // reservePath(runId), "<files folder>/reserve/run-<id>.reserve". A run's recorder reserves it when the
    // run starts and releases it when a write meets a full disk (so that the failure, its reason and the
    // final status still fit) and when the run ends. Open (for writing) removes the reserve of every run
    // that is not running (its process was killed). A reserve that cannot be allocated fails the call and
    // leaves no file.
    static constexpr std::int64_t kRunReserveBytes = 256 * 1024;
    std::string reservePath(std::int64_t runId) const;
    bool reserveSpace(
        std::int64_t runId, std::int64_t bytes = kRunReserveBytes, std::string* error = nullptr);
    // Removes the run's reserve; true when there was one to remove.
    bool releaseReserve(std::int64_t runId);

    // ---- Time series -----------------------------------------------------------------------------------
    // Writes all points in one transaction (all or none) and advances runs.step to the largest step.
    // A point whose step the run already has replaces it.
    bool appendMetrics(
        std::int64_t runId, const std::vector<MetricPoint>& points, std::string* error = nullptr);
    // Points with step > afterStep (kAllSteps: all), in step order. The live chart passes the last step it
    // has to read only what is new.
    bool getMetrics(std::int64_t runId, std::int64_t afterStep, std::vector<MetricPoint>* points,
        std::string* error = nullptr);
    bool countMetrics(std::int64_t runId, std::int64_t* count, std::string* error = nullptr);

    // Stores an evaluation; *id (optional) receives its id.
    bool addEvaluation(
        const Evaluation& evaluation, std::int64_t* id = nullptr, std::string* error = nullptr);
    // In order of step, then insertion.
    bool getEvaluations(
        std::int64_t runId, std::vector<Evaluation>* evaluations, std::string* error = nullptr);

    bool addLog(std::int64_t runId, LogLevel level, const std::string& message, std::string* error = nullptr);
    // Lines with id > afterId (0: all), oldest first.
    bool getLogs(
        std::int64_t runId, std::int64_t afterId, std::vector<LogLine>* lines, std::string* error = nullptr);

    // ---- Queue -------------------------------------------------------------------------------------------
    // The first queued run for `device` (empty: any device), or nullopt.
    bool nextQueued(const std::string& device, std::optional<RunRecord>* run, std::string* error = nullptr);
    // nextQueued() and setStatus(running) in one transaction, so two workers never start the same run.
    // *run receives the run as it is after the change (nullopt when nothing is queued).
    bool claimNextQueued(
        const std::string& device, std::optional<RunRecord>* run, std::string* error = nullptr);
    // claimNextQueued() only while `leaseOwner` holds a live lease on `device` (checked in the same
    // transaction); *run is nullopt when nothing is queued for it, *leaseHeld (optional) false when the
    // lease is not held (then nothing is claimed).
    bool claimNextQueuedUnderLease(const std::string& device, const std::string& leaseOwner,
        std::optional<RunRecord>* run, bool* leaseHeld = nullptr, std::string* error = nullptr);
    // One queued run, chosen by the caller (the window's placement: train/DevicePlacement.h), claimed while
    // `leaseOwner` holds a live lease on `leaseDevice` (checked in the same transaction). *run is nullopt
    // when the run is no longer queued (cancelled, removed or claimed elsewhere meanwhile) or the lease is
    // not held (*leaseHeld false); nothing is claimed then.
    bool claimQueuedUnderLease(std::int64_t runId, const std::string& leaseDevice,
        const std::string& leaseOwner, std::optional<RunRecord>* run, bool* leaseHeld = nullptr,
        std::string* error = nullptr);
    // Puts the given queued runs first, in this order; the other queued runs follow in their present order.
    bool setQueueOrder(const std::vector<std::int64_t>& runIds, std::string* error = nullptr);
    // Moves a queued run `offset` places (negative: towards the front), clamped to the queue.
    bool moveQueuedRun(std::int64_t runId, int offset, std::string* error = nullptr);
    // Deletes a run that is still queued (fails for any other status).
    bool removeQueuedRun(std::int64_t runId, std::string* error = nullptr);

    // ---- Device leases -------------------------------------------------------------------------------
    // One device is claimed by one window (or other queue runner) at a time: a lease in the store that
    // its owner renews and that expires when it is not renewed (a window that crashed or hangs frees the
    // device after ttlSeconds). `owner` is the caller's name for itself, unique per holder: see
    // newLeaseOwner(). Times are the store's ISO-8601 UTC text; the clocks of the processes sharing a
    // store are one machine's.
    //
    // A unique owner name: "<host>:<pid>:<16 random hex digits>".
    static std::string newLeaseOwner();
    // Takes the lease on `device` for ttlSeconds when it is free, expired or already `owner`'s (then it is
    // renewed): *acquired is true. When another owner holds a live lease, *acquired is false and nothing
    // changes. One transaction, so of two windows asking at once exactly one gets it.
    bool acquireDeviceLease(const std::string& device, const std::string& owner, int ttlSeconds,
        bool* acquired, std::string* error = nullptr);
    // Extends `owner`'s lease to now + ttlSeconds. *renewed is false when the lease was lost (expired and
    // taken by another owner, or released): the caller must stop starting runs on the device. An expired
    // lease nobody took is renewed.
    bool renewDeviceLease(const std::string& device, const std::string& owner, int ttlSeconds, bool* renewed,
        std::string* error = nullptr);
    // Gives the lease up when `owner` holds it (a no-op otherwise).
    bool releaseDeviceLease(
        const std::string& device, const std::string& owner, std::string* error = nullptr);
    // The live (unexpired) lease on `device`, or nullopt.
    bool getDeviceLease(
        const std::string& device, std::optional<DeviceLease>* lease, std::string* error = nullptr);

    // ---- Import -------------------------------------------------------------------------------------
    // Copies the runs of the store at `sourcePath` (another results store, e.g. one task's store of a
    // sweep run on Slurm) into this one, with their metrics, evaluations and logs and their checkpoints
    // (copied into this store's files folder and checked against the SHA-256 the source recorded), plus a
    // log line naming where each came from. Idempotent: a run is already present when this store has a
    // run of the same spec hash and seed that is finished, or that was created at the same time (the same
    // record, imported before); it is counted, not copied. The source is only read, and is refused (false,
    // with the reason in result->skipReason and the error naming both files) when it is missing, not a
    // LadderBench store, of a newer schema version, fails SQLite's integrity check, is locked by a writer,
    // or is half-finished (a run still queued or running); so is a missing or damaged checkpoint. One
    // transaction per source: on any failure this store is left as it was, files folder included.
    bool importStore(const std::string& sourcePath, StoreImport* result, std::string* error = nullptr);

    // ---- Export --------------------------------------------------------------------------------------
    // Writes the runs that match `filter` with their final figures as CSV (writeRunsCsv()) to `path`,
    // through a temporary file renamed into place.
    bool exportRunsCsv(const std::string& path, const RunFilter& filter = {}, std::string* error = nullptr);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace ladder
