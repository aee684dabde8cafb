#include "dist/GradientSync.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "dist/DistributedGroup.h"
#include "util/Error.h"

namespace ladder {
namespace {

struct ReadyHook : torch::autograd::PostAccumulateGradHook {
    ReadyHook(GradientSync* sync, std::size_t index)
        : sync(sync)
        , index(index)
    {
    }
    void operator()(const torch::autograd::Variable&) override { sync->onGradientReady(index); }
    GradientSync* sync;
    std::size_t index;
};

} // namespace

GradientSync::GradientSync(DistributedGroup& group, std::vector<at::Tensor> params)
    : GradientSync(group, std::move(params), Options {})
{
}

GradientSync::GradientSync(DistributedGroup& group, std::vector<at::Tensor> params, Options options)
    : m_group(group)
    , m_params(std::move(params))
    , m_bucketOf(m_params.size(), 0)
    , m_expected(m_params.size(), 1)
    , m_fired(m_params.size(), 0)
{
    if (options.bucketBytes < 4 || options.firstBucketBytes < 4)
        throw Error("gradient buckets: expected at least 4 bytes a bucket");
    for (std::size_t i = 0; i < m_params.size(); ++i) {
        const auto& p = m_params[i];
        if (!p.defined() || !p.requires_grad() || !p.is_leaf())
            throw Error("gradient sync: parameter " + std::to_string(i) + " is not a trainable leaf tensor");
        if (p.scalar_type() != at::kFloat)
            throw Error("gradient sync: parameter " + std::to_string(i) + " is "
                + std::string(c10::toString(p.scalar_type())) + "; trainable weights are float32");
        if (p.device() != group.device())
            throw Error("gradient sync: parameter " + std::to_string(i) + " is on " + p.device().str()
                + ", the group's device is " + group.device().str());
    }
    // Reverse order, the first bucket small: the last layers' gradients leave while backward still runs.
    std::size_t cap = options.firstBucketBytes;
    std::size_t bytes = 0;
    for (std::size_t k = m_params.size(); k-- > 0;) {
        const auto size = static_cast<std::size_t>(m_params[k].numel()) * 4;
        if (m_buckets.empty() || (bytes > 0 && bytes + size > cap)) {
            if (!m_buckets.empty())
                cap = options.bucketBytes;
            m_buckets.emplace_back();
            bytes = 0;
        }
        auto& b = m_buckets.back();
        b.params.push_back(k);
        b.offsets.push_back(b.elements);
        b.elements += m_params[k].numel();
        bytes += size;
        m_bucketOf[k] = m_buckets.size() - 1;
    }
    for (auto& b : m_buckets)
        b.buffer = at::zeros({ b.elements + static_cast<std::int64_t>(b.params.size()) },
            at::TensorOptions().dtype(at::kFloat).device(group.device()));
    for (std::size_t i = 0; i < m_params.size(); ++i)
        torch::autograd::impl::set_post_acc_grad_hooks(m_params[i], std::make_unique<ReadyHook>(this, i));
}

GradientSync::~GradientSync()
{
    for (auto& p : m_params)
        torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

std::uint64_t GradientSync::bytesPerStep() const
{
    std::uint64_t bytes = 0;
    for (const auto& b : m_buckets)
        bytes += static_cast<std::uint64_t>(b.buffer.numel()) * 4;
    return bytes;
}

void GradientSync::arm()
{
    std::lock_guard<std::mutex> lock(m_mutex);
    m_armed = true;
    m_late = false;
    m_next = 0;
    m_overlapped = 0;
    std::fill(m_fired.begin(), m_fired.end(), 0);
    for (auto& b : m_buckets) {
        b.pending = 0;
        for (const auto p : b.params)
            b.pending += m_expected[p];
        b.work.reset();
    }
    launchReadyInOrder(); // buckets of parameters that the last step did not use leave at once
}

void GradientSync::onGradientReady(std::size_t param)
{
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_armed)
        return;
    ++m_fired[param];
    const auto bucket = m_bucketOf[param];
    if (bucket < m_next) { // its bucket already left with an earlier value of this gradient
        m_late = true;
        return;
    }
    if (m_fired[param] <= m_expected[param])
        --m_buckets[bucket].pending;
    else
        m_late = true; // more fires than expected: the bucket may still be waiting, but this step is redone
    const auto before = m_next;
    launchReadyInOrder();
    m_overlapped += m_next - before;
}

void GradientSync::launchReadyInOrder()
{
    while (m_next < m_buckets.size() && m_buckets[m_next].pending <= 0)
        launch(m_next++);
}

void GradientSync::fill(Bucket& b)
{
    for (std::size_t j = 0; j < b.params.size(); ++j) {
        const auto& p = m_params[b.params[j]];
        auto slice = b.buffer.narrow(0, b.offsets[j], p.numel());
        const auto& g = p.grad();
        if (g.defined())
            slice.copy_(g.reshape({ -1 }));
        else
            slice.zero_();
        b.buffer[b.elements + static_cast<std::int64_t>(j)].fill_(g.defined() ? 1.0 : 0.0);
    }
}

void GradientSync::launch(std::size_t bucket)
{
    auto& b = m_buckets[bucket];
    fill(b);
    b.work = m_group.allreduceSumAsync(b.buffer);
}

void GradientSync::finish()
{
    std::unique_lock<std::mutex> lock(m_mutex);
    if (!m_armed)
        throw Error("gradient sync: finish() without arm()");
    while (m_next < m_buckets.size())
        launch(m_next++);
    for (auto& b : m_buckets)
        b.work->wait();
    // Did any rank see a gradient change after its bucket left? Then every bucket again, from the final
    // gradients (still the local ones: nothing was written back yet).
    auto late = at::full({ 1 }, m_late ? 1.0f : 0.0f, at::TensorOptions().dtype(at::kFloat));
    m_group.allreduceSum(late);
    m_lastLate = late.item<float>() > 0;
    if (m_lastLate) {
        for (std::size_t i = 0; i < m_buckets.size(); ++i) {
            launch(i);
            m_buckets[i].work->wait();
        }
    }
    m_expected = m_fired; // the next step expects what this one did (a parameter left unused, say)
    const auto world = static_cast<double>(m_group.worldSize());
    for (auto& b : m_buckets) {
        const auto presence
            = b.buffer.narrow(0, b.elements, static_cast<std::int64_t>(b.params.size())).cpu();
        const auto* seen = presence.data_ptr<float>();
        for (std::size_t j = 0; j < b.params.size(); ++j) {
            auto& p = m_params[b.params[j]];
            if (seen[j] == 0.0f) { // no rank has a gradient for it
                p.mutable_grad() = at::Tensor();
                continue;
            }
            auto sum = b.buffer.narrow(0, b.offsets[j], p.numel()).view(p.sizes());
            if (p.grad().defined()) // in place: no temporary the size of the parameter
                p.mutable_grad().copy_(sum).div_(world);
            else
                p.mutable_grad() = sum.div(world);
        }
        b.work.reset();
    }
    m_armed = false;
}

} // namespace ladder
