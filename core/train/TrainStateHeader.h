#pragma once

// The header of a run's training state file (train/TrainState.h), without LibTorch: what the workbench
// and the CLI read to say whether, and from where, a run resumes.

#include <cstdint>
#include <optional>
#include <string>

namespace ladder {

// Whose state a file is and how far the run got.
struct TrainStateHeader {
    std::int64_t runId = 0;
    std::string runCreatedAt; // the run's created_at in the store
    std::string specHash;
    std::int64_t step = 0; // optimizer steps done
    std::int64_t totalSteps = 0;
};

// Reads the header alone: nullopt when there is no file; throws Error, naming the file, for a file that
// is not a valid state.
std::optional<TrainStateHeader> readTrainStateHeader(const std::string& path);

} // namespace ladder
