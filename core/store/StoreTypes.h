#pragma once

// Plain value types of the results store (docs/STORE.md describes the tables they map to). No SQLite,
// LibTorch or Qt here: the GUI carries these through queued signals by value.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ladder {

// runs.status. Allowed changes: queued -> running | cancelled | failed; running -> finished | failed |
// cancelled | interrupted. finished, failed, cancelled and interrupted are final.
enum class RunState { Queued, Running, Finished, Failed, Cancelled, Interrupted };

// "queued", "running", ... as stored in runs.status.
const char* toString(RunState status);
// Parses the stored text; false for anything else.
bool parseRunState(const std::string& text, RunState* status);
// True for finished, failed, cancelled and interrupted.
bool isFinalState(RunState status);

// logs.level
enum class LogLevel { Debug, Info, Warning, Error };
const char* toString(LogLevel level);
bool parseLogLevel(const std::string& text, LogLevel* level);

// Now as ISO-8601 UTC with milliseconds, "2025-03-01T14:05:09.123Z", the form of every time column.
std::string utcNowIso8601();
// The same form for any time.
std::string utcIso8601(std::chrono::system_clock::time_point time);

// What a new run is created from: its spec stored verbatim plus the summary columns the GUI and the CLI
// filter and sort on (taken out of the spec by the caller, which knows the spec format).
struct NewRun {
    std::string name; // free text shown in lists; may be empty
    std::string specJson; // the run spec, stored byte for byte; must be valid JSON
    std::string specHash; // empty: specHash(specJson) is computed
    std::string method; // "lst", "lora", "adapter", "bitfit", "prompt", "full", ...
    std::string methodOptionsJson = "{}"; // the method's options object; must be valid JSON
    std::string backbone; // backbone folder or "demo"
    std::string task; // task name, e.g. "rte" or "demo-supersense"
    std::optional<std::int64_t> seed;
    std::string device = "cpu"; // "cpu", "cuda:0", ...
    RunState status = RunState::Queued; // Queued or Running only
    std::int64_t totalSteps = 0; // 0 when not known yet
};

// The final figures of a run (runs columns). Empty fields are NULL in the store; setFinalFigures()
// leaves stored values alone for fields that are empty here, so figures can be written in parts.
struct FinalFigures {
    std::optional<double> bestValidationMetric; // main metric of the best validation evaluation
    std::optional<std::int64_t> bestStep; // optimizer step of that evaluation (the checkpoint kept)
    std::optional<double> testMetric; // main metric of the best checkpoint on the test split
    std::string mainMetricName; // "accuracy", "matthews_correlation", ...; empty: unset
    std::optional<double> lastMetric; // main metric of the last validation evaluation
    std::optional<std::int64_t> peakAllocatedBytes; // the training steps only (docs/STORE.md)
    std::optional<std::int64_t> peakReservedBytes;
    std::optional<std::int64_t> initPeakAllocatedBytes; // building and initialising the method (Fisher pass)
    std::optional<std::int64_t> evalPeakAllocatedBytes; // the highest of the run's evaluations by generation
    std::optional<std::int64_t> weightBytes; // static memory: all weights (frozen and trainable)
    std::optional<std::int64_t> gradientBytes; // static memory: gradients of the trainable parameters
    std::optional<std::int64_t> optimizerBytes; // static memory: optimizer state
    std::optional<std::int64_t> trainableParams;
    std::optional<std::int64_t> totalParams; // every parameter that takes memory (backbone + method)
    std::optional<std::int64_t> backboneParams; // the backbone's parameters: the paper's denominator
    std::optional<double> wallSeconds;
    std::optional<double> tokensPerSecond; // training throughput over the whole run
};

// One row of the runs table.
struct RunRecord {
    std::int64_t id = 0;
    std::string createdAt; // ISO-8601 UTC
    std::string startedAt; // empty until running
    std::string finishedAt; // empty until final
    std::string name;
    std::string specJson;
    std::string specHash;
    std::string method;
    std::string methodOptionsJson;
    std::string backbone;
    std::string task;
    std::optional<std::int64_t> seed;
    std::string device;
    RunState status = RunState::Queued;
    std::string errorMessage;
    std::optional<std::int64_t> queuePosition; // set only while queued; lower runs first
    std::int64_t step = 0;
    std::int64_t totalSteps = 0;
    FinalFigures figures;
    std::optional<std::int64_t> ownerPid; // process that ran (or runs) it
    // The run's best trainable weights, when recorded (ResultsStore::recordCheckpoint()): the file's path
    // relative to the store's files folder ("checkpoints/run-5.safetensors"), its SHA-256 (64 hex digits)
    // and its size. Empty / nullopt when the run has none (queued, stopped before its best model, or
    // recorded before schema version 3).
    std::string checkpointFile;
    std::string checkpointSha256;
    std::optional<std::int64_t> checkpointBytes;

    // trainable parameters in percent of the backbone's (the paper's definition), or of the total when
    // the backbone count is unknown; nullopt when neither is known.
    std::optional<double> trainablePercent() const;
};

// One row of the metrics time series.
struct MetricPoint {
    std::int64_t step = 0; // optimizer step; unique per run
    std::optional<double> epoch; // may be fractional (progress through the epochs)
    std::optional<double> loss; // NaN is stored as NULL
    std::optional<double> learningRate;
    std::optional<std::int64_t> allocatedBytes;
    std::optional<std::int64_t> peakAllocatedBytes;
    std::optional<std::int64_t> reservedBytes;
    std::optional<double> tokensPerSecond;
    std::optional<double> elapsedSeconds; // since the run started
    std::string time; // ISO-8601 UTC; empty: the time it is written (MetricsWriter fills it on add())
};

// One evaluation of a run on a split. Metrics are stored as a JSON object (name -> value).
struct Evaluation {
    std::int64_t id = 0; // set by the store
    std::int64_t runId = 0;
    std::int64_t step = 0;
    std::optional<double> epoch;
    std::string split = "validation"; // "validation" or "test"
    std::map<std::string, double> metrics;
    std::string mainMetricName;
    std::optional<double> mainMetric;
    std::string predictionsJson; // optional: empty means none stored
    std::string time; // empty: now
};

// One log line of a run.
struct LogLine {
    std::int64_t id = 0;
    std::int64_t runId = 0;
    std::string time;
    LogLevel level = LogLevel::Info;
    std::string message;
};

// One row of device_leases: who may start runs on a device, until when (ResultsStore::acquireDeviceLease()).
struct DeviceLease {
    std::string device; // "cpu", "cuda:0", ...
    std::string owner; // the holder's own name for itself, e.g. ResultsStore::newLeaseOwner()
    std::string acquiredAt; // ISO-8601 UTC
    std::string renewedAt;
    std::string expiresAt; // the lease is free from this time on unless renewed before
};

// What ResultsStore::importStore() did with one store file.
struct StoreImport {
    std::string source; // the file imported
    int runsInSource = 0; // the runs it holds (0 when it could not be read)
    int imported = 0; // runs copied into this store
    int alreadyPresent = 0; // runs this store holds already (same spec hash and seed)
    std::vector<std::int64_t> importedIds; // the copies' ids in this store, in the source's order
    std::string skipReason; // why nothing was imported (the file is not named); empty when it was imported
};

// Filters and order of ResultsStore::listRuns(). Empty fields do not filter.
struct RunFilter {
    enum class Order { IdAscending, IdDescending, QueuePosition };
    std::vector<RunState> statuses; // any of these
    std::string task;
    std::string backbone;
    std::string method;
    std::string device;
    Order order = Order::IdAscending;
    std::int64_t limit = -1; // -1: no limit
};

} // namespace ladder
