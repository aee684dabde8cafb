#pragma once

// The trainer's side of a data-parallel run (docs/SCALING.md): which examples are this rank's, what the
// ranks agree on each micro-batch, and the evaluation's gather. The collectives are dist/'s.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ladder {

class DistributedGroup;

class DataParallel {
public:
    explicit DataParallel(std::shared_ptr<DistributedGroup> group);

    DistributedGroup& group() const { return *m_group; }
    int rank() const { return m_rank; }
    int world() const { return m_world; }

    // Rank r's strided share of `all` (positions r, r + W, r + 2W, ...): of a global batch's examples, as
    // torch's DistributedSampler shares one epoch's order (the union over the ranks is the global batch,
    // whatever its size), and of an evaluation split.
    template <class T> std::vector<T> share(const std::vector<T>& all) const
    {
        std::vector<T> mine;
        for (std::size_t i = static_cast<std::size_t>(m_rank); i < all.size();
             i += static_cast<std::size_t>(m_world))
            mine.push_back(all[i]);
        return mine;
    }
    // The per-rank batch for a global batch of `global`: ceil(global / W).
    std::int64_t localBatch(std::int64_t global) const { return (global + m_world - 1) / m_world; }

    // Rank 0's values in every rank's tensors (after the method's initialisation, as DDP's constructor).
    void broadcastFromRankZero(const std::vector<at::Tensor>& tensors);

    // What every rank learns after a micro-batch: the sums over the ranks, and who failed.
    struct Agreement {
        double lossSum = 0.0; // sum over the label tokens of the global micro-batch
        double labelTokens = 0.0;
        double tokens = 0.0; // source + target tokens, for the throughput
        bool cancel = false; // any rank's observer asked
        std::vector<int> failedRanks;
        std::string failure; // "rank 1: out of memory (...)"; empty when no rank failed
        double meanLoss() const { return labelTokens > 0 ? lossSum / labelTokens : 0.0; }
    };
    // One all-reduce of [loss sum, label tokens, tokens, cancel, failed per rank]; when a rank failed, its
    // message is gathered (through the store) so that every rank ends the run with it.
    Agreement agree(double lossSum, std::int64_t labelTokens, std::int64_t tokens, bool cancel,
        const std::string& failure);

    // The predictions of this rank's share of a split -> every example's, in split order.
    std::vector<std::string> gatherShares(const std::vector<std::string>& mine, std::size_t total);

private:
    std::shared_ptr<DistributedGroup> m_group;
    int m_rank = 0;
    int m_world = 1;
};

} // namespace ladder
