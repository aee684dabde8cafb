#pragma once

// Data-parallel gradient averaging built on c10d's all-reduce, in buckets that overlap the backward pass
// (docs/SCALING.md, "Why not c10d's Reducer"):
// - the trainable parameters, in reverse order (roughly the order backward produces their gradients), are
//   cut into buckets of `bucketBytes` (the first, which is ready first, of `firstBucketBytes`), as DDP does;
// - a post-accumulate-grad hook on each parameter counts it ready; a bucket whose parameters are all ready
//   is flattened into its buffer and its all-reduce starts at once, while backward goes on. Buckets start
//   strictly in order (bucket i after bucket i-1), so every rank issues the same collectives in the same
//   order whatever order its hooks fire in;
// - finish() starts what is left (parameters no hook reported: unused this step, or a rank with no
//   examples in this step), waits, and writes sum / world into each gradient. Each bucket also carries a
//   presence count per parameter, so a parameter that no rank gave a gradient keeps none (AdamW skips it,
//   as it would in one process), and one that some rank did gets the mean with zeros from the others;
// - each step expects the hook counts of the step before (1 for every parameter at first): a parameter the
//   last step left unused no longer holds its bucket back. A hook beyond that count (a parameter used by
//   two reentrant recomputations, or unused last step and used now) marks the step late: the ranks agree on
//   that flag and reduce every bucket again from the final gradients, so a wrong guess costs time, never
//   correctness.
// Only the trainable parameters travel: for LST, the side network's.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ladder {

class CollectiveHandle;
class DistributedGroup;

class GradientSync {
public:
    struct Options {
        std::size_t bucketBytes = 25u << 20; // DDP's bucket_cap_mb 25
        std::size_t firstBucketBytes = 1u << 20; // DDP's first bucket: 1 MiB
    };
    // `params` are fp32 leaves on group.device(), the same list in the same order on every rank.
    GradientSync(DistributedGroup& group, std::vector<at::Tensor> params, Options options);
    GradientSync(DistributedGroup& group, std::vector<at::Tensor> params);
    ~GradientSync(); // removes the hooks
    GradientSync(const GradientSync&) = delete;
    GradientSync& operator=(const GradientSync&) = delete;

    // The next backward is the last of an accumulation group: its gradients are reduced as they appear.
    void arm();
    bool armed() const { return m_armed; }
    // After that backward (also where this rank ran none, or one that failed): see above. Disarms.
    void finish();

    std::size_t bucketCount() const { return m_buckets.size(); }
    std::size_t parameterCount() const { return m_params.size(); }
    // What each step all-reduces: the buckets' fp32 elements (gradients and presence counts), in bytes.
    std::uint64_t bytesPerStep() const;
    // Of the last finish(): buckets whose all-reduce started during backward, and whether the step was late.
    std::size_t overlappedBuckets() const { return m_overlapped; }
    bool lastStepLate() const { return m_lastLate; }

    // Called by the hooks.
    void onGradientReady(std::size_t param);

private:
    struct Bucket {
        std::vector<std::size_t> params; // indices into m_params
        std::vector<std::int64_t> offsets; // of each parameter's elements in the buffer
        std::int64_t elements = 0; // gradient elements; the presence counts follow
        at::Tensor buffer;
        std::int64_t pending = 0;
        std::unique_ptr<CollectiveHandle> work;
    };
    void launch(std::size_t bucket);
    void launchReadyInOrder();
    void fill(Bucket& b);

    DistributedGroup& m_group;
    std::vector<at::Tensor> m_params;
    std::vector<std::size_t> m_bucketOf;
    std::vector<Bucket> m_buckets;
    std::vector<std::int64_t> m_expected; // hook fires per parameter per backward
    std::vector<std::int64_t> m_fired;
    std::mutex m_mutex;
    bool m_armed = false;
    bool m_late = false;
    bool m_lastLate = false;
    std::size_t m_next = 0; // the next bucket to start
    std::size_t m_overlapped = 0;
};

} // namespace ladder
