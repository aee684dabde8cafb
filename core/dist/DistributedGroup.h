#pragma once

// A data-parallel run's process group: c10d's TCPStore for the rendezvous and c10d's ProcessGroupGloo
// (CPU) or ProcessGroupNCCL (CUDA, one rank per GPU) for the collectives, as torch.distributed builds them
// (docs/SCALING.md). The c10d types stay behind this header: the trainer sees tensors and strings only.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "dist/DistributedEnv.h"
#include "util/Error.h"

namespace ladder {

// A collective that failed: a peer that died or hung past the collective timeout, a broken connection.
class CollectiveError : public Error {
public:
    using Error::Error;
};

// A collective in flight (DistributedGroup::allreduceSumAsync); wait() returns once it is done and throws
// what the backend reports (a peer that died, the collective timeout).
class CollectiveHandle {
public:
    virtual ~CollectiveHandle() = default;
    virtual void wait() = 0;
};

// An in-process rendezvous for tests: ranks on threads of one process share a c10d HashStore.
class InProcessRendezvous {
public:
    InProcessRendezvous();
    ~InProcessRendezvous();
    struct Impl;
    Impl& impl() { return *m_impl; }

private:
    std::unique_ptr<Impl> m_impl;
};

class DistributedGroup {
public:
    static constexpr std::chrono::minutes kDefaultTimeout { 10 };
    struct Options {
        // "cpu": Gloo. "cuda": NCCL on cuda:LOCAL_RANK, bound (c10::cuda::set_device) before the group's
        // first collective.
        std::string deviceType = "cpu";
        // Every collective and every wait on the store ends with an error after this long (a dead or stuck
        // peer): LADDER_DIST_TIMEOUT seconds, default 600 s.
        std::chrono::milliseconds timeout { kDefaultTimeout };
    };

    // Joins the group `env` describes: rank 0 serves the TCPStore at MASTER_ADDR:MASTER_PORT (unless
    // torchrun's agent serves it), every rank connects, builds the backend and runs a first all-reduce
    // that checks that all WORLD_SIZE ranks are there. Throws Error naming what failed.
    static std::shared_ptr<DistributedGroup> join(const DistributedEnv& env, const Options& options);
    // Tests: rank `rank` of `world` on a thread of this process (Gloo over loopback).
    static std::shared_ptr<DistributedGroup> joinInProcess(
        InProcessRendezvous& rendezvous, int rank, int world, std::chrono::milliseconds timeout);

    ~DistributedGroup(); // shuts the group down if shutdown() was not called
    DistributedGroup(const DistributedGroup&) = delete;
    DistributedGroup& operator=(const DistributedGroup&) = delete;

    int rank() const;
    int worldSize() const;
    int localRank() const;
    const std::string& backendName() const; // "gloo" or "nccl"
    // Where this rank computes and where collectives want their tensors: cpu, or cuda:LOCAL_RANK.
    c10::Device device() const;
    std::chrono::milliseconds timeout() const;
    // "gloo, rank 0 of 2 (torchrun), rendezvous 127.0.0.1:29500, collective timeout 600 s"
    std::string describe() const;

    // Sum over the ranks, in place. A CPU tensor reduced by NCCL travels through the rank's GPU.
    void allreduceSum(at::Tensor& tensor);
    // Sum over the ranks, in place, started now; `tensor` must be contiguous and on device().
    std::unique_ptr<CollectiveHandle> allreduceSumAsync(at::Tensor tensor);
    // Rank `root`'s tensor into every rank's, in place (same shape and dtype everywhere).
    void broadcast(at::Tensor& tensor, int root = 0);
    // Every rank's text, in rank order, through the store (no size limit of the backend's; evaluation's
    // predictions are gathered so).
    std::vector<std::string> allgatherText(const std::string& mine);
    void barrier();
    // Ends the group explicitly (NCCL's communicators can hang at destruction otherwise); idempotent.
    void shutdown();

    struct Impl;

private:
    explicit DistributedGroup(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace ladder
