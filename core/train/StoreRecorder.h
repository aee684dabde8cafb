#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/MetricsWriter.h"
#include "store/ResultsStore.h"
#include "train/Trainer.h"

namespace ladder {

// A TrainerObserver that records a run in the results store (time series in batches, evaluations, logs,
// final figures, the best trainable weights) and forwards every event to an inner observer (a progress
// bar, the GUI's worker). Store errors never stop training: they are logged to the inner observer.
class StoreRecorder : public TrainerObserver {
public:
    // Keeps ResultsStore::kRunReserveBytes back for the run's last writes (ResultsStore::reserveSpace()).
    StoreRecorder(ResultsStore& store, std::int64_t runId, TrainerObserver& inner);
    ~StoreRecorder() override;

    void onStarted(const RunSummary& figures) override;
    void onStep(const TrainStep& step) override;
    void onEval(const TrainEval& eval) override;
    void onLog(const std::string& level, const std::string& message) override;
    void onBestModel(const Method& method) override;
    // Writes the pending metric points: a state saved at `step` finds its history stored.
    void onStateSaving(std::int64_t step) override;
    void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) override
    {
        m_inner.onInitProgress(what, done, total); // shown live, not stored (the log lines are)
    }
    bool cancelRequested() override { return m_inner.cancelRequested(); }

    // Writes what is pending and the run's final status and figures. While another connection holds the
    // store's write lock past its busy timeout, the writes are tried again with growing pauses (0.1 s
    // doubling up to 5 s) until finalWriteRetry() has passed; a run whose final write still fails stays
    // "running" until the next open of the store after this process ends marks it interrupted. Returns
    // whether the final status was written.
    bool finish(const RunSummary& summary);
    // A full disk. When a write of the run (a metric batch, an evaluation, a log line, its best checkpoint)
    // meets a full disk, the recorder drops its unwritten metric points, releases the run's reserve (so
    // that the failure and the final status fit) and ends the run: onStep, onEval and onBestModel throw
    // an Error whose message says "no space left on device" and names the file (the trainer fails the run
    // with it). recorded() turns a summary that finished regardless (the last log line did not fit) into
    // that failure: a run whose records are incomplete is not "finished".
    const std::string& diskFull() const { return m_diskFull; }
    RunSummary recorded(RunSummary summary) const;
    // How long finish() keeps trying (default 60 s; zero: one try).
    void setFinalWriteRetry(std::chrono::milliseconds budget) { m_finalWriteRetry = budget; }
    std::chrono::milliseconds finalWriteRetry() const { return m_finalWriteRetry; }

    // Where a run's best trainable weights are kept: in the store's own files folder,
    // <store file>.files/checkpoints/run-<id>.safetensors (ResultsStore::checkpointPathFor()). Before use,
    // check the file with ResultsStore::verifyCheckpoint(), which also gives its path.
    static std::string checkpointPath(const ResultsStore& store, std::int64_t runId);
    static std::string checkpointPath(const std::string& storePath, std::int64_t runId);

private:
    void reportStoreError(const std::string& what);
    // Notes the first full-disk failure (see diskFull()); a no-op for other errors.
    void noteStoreFailure(const std::string& error);
    void throwIfDiskFull() const;

    ResultsStore& m_store;
    std::int64_t m_runId;
    TrainerObserver& m_inner;
    MetricsWriter m_writer;
    std::chrono::milliseconds m_finalWriteRetry { 60000 };
    std::string m_diskFull;
};

// The run a spec is recorded as (name, spec JSON and hash, method, backbone, task, seed, device): what
// `ladder train` creates, and what the workbench queues, so GUI and CLI runs look the same in the store.
NewRun newRunFor(const RunSpec& spec, RunState status);

// Trains `spec` as the existing run `runId` (already set running, e.g. claimed from the queue) and records
// the outcome. The run saves its training state (ResultsStore::statePath(), train/TrainState.h); when a
// state of its own is there (a run resumed with ResultsStore::resumeRun()), training continues from it,
// after rewinding what the run recorded past it (ResultsStore::rewindRun()). A state file that cannot be
// read fails the run, naming it. A finished run's state is removed. Never throws. With `group`, this
// process is rank 0 of a data-parallel run (Trainer::setDistributed): it alone records.
RunSummary trainRecordedRun(const RunSpec& spec, ResultsStore& store, std::int64_t runId,
    TrainerObserver& observer, std::shared_ptr<DistributedGroup> group = {});

// The store a spec names, else the default store.
std::string storePathFor(const RunSpec& spec, const std::string& overridePath = {});

// The spec's identity for "skip finished runs": its canonical JSON without the store and name fields.
std::string runSpecHash(const RunSpec& spec);

// For a batch of specs (a sweep queued from the workbench), the run that already finished each one, as
// `ladder sweep` skips them: (*finished)[i] is the most recent finished run whose spec hash is
// runSpecHash(specs[i]), or nullopt. One read of the store (ResultsStore::findFinishedRuns()).
bool findFinishedRunsFor(ResultsStore& store, const std::vector<RunSpec>& specs,
    std::vector<std::optional<RunRecord>>* finished, std::string* error = nullptr);

} // namespace ladder
