#pragma once

// `ladder train` as one rank of a data-parallel run (docs/SCALING.md): launched by torchrun, srun or
// `ladder train --nproc N` (DistributedLaunch.h). Rank 0 records the run in the store as a single-process
// run is recorded; the other ranks train beside it and record nothing.
#include <chrono>
#include <functional>
#include <memory>

#include "dist/DistributedGroup.h"
#include "train/RunSpec.h"

namespace ladder::cli {

// The collective timeout: `flagSeconds` when > 0, else LADDER_DIST_TIMEOUT, else 600 s.
std::chrono::milliseconds collectiveTimeout(double flagSeconds);

// Joins the group of `env` on the spec's device type (Gloo for cpu, NCCL for cuda) and says so on stderr.
std::shared_ptr<DistributedGroup> joinGroupFor(
    const RunSpec& spec, const DistributedEnv& env, std::chrono::milliseconds timeout);

// A rank other than 0: trains `spec` beside rank 0, prints its warnings and errors on stderr with its
// rank, shuts the group down and returns the exit code of its outcome.
// `cancelRequested` (default: Ctrl+C) is this rank's own wish to stop, which every rank then agrees on.
int trainFollowerRank(const RunSpec& spec, const std::shared_ptr<DistributedGroup>& group,
    std::function<bool()> cancelRequested = {});

} // namespace ladder::cli
