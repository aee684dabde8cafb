#include "model/Recompute.h"

#include <mutex>
#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/Generator.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/saved_variable.h>

#include "util/Error.h"

namespace ladder {
namespace {

using torch::autograd::variable_list;

// The default generator of a device type, its state copied (Generator::clone(): no tensor is allocated, so
// the memory meter sees nothing of it) and put back.
struct GeneratorSnapshot {
    c10::Device device = c10::Device(c10::kCPU);
    at::Generator copy;

    static GeneratorSnapshot take(const c10::Device& device)
    {
        GeneratorSnapshot s;
        s.device = device;
        auto gen = at::globalContext().defaultGenerator(device);
        std::lock_guard<std::mutex> lock(gen.mutex());
        s.copy = gen.clone();
        return s;
    }
    // Sets the device's generator to this snapshot; returns a snapshot of what it was.
    GeneratorSnapshot swapIn() const
    {
        auto gen = at::globalContext().defaultGenerator(device);
        std::lock_guard<std::mutex> lock(gen.mutex());
        GeneratorSnapshot before;
        before.device = device;
        before.copy = gen.clone();
        gen.set_state(copy.get_state());
        return before;
    }
};

// Autocast as it was in the forward, for the recomputation (the backward runs with the thread-local
// state of the .backward() call, outside the trainer's autocast region).
struct AutocastState {
    c10::DeviceType device = c10::kCPU;
    bool enabled = false;
    at::ScalarType dtype = at::kBFloat16;
};

class AutocastScope {
public:
    explicit AutocastScope(const AutocastState& s)
        : m_device(s.device)
        , m_on(s.enabled)
    {
        if (!m_on)
            return;
        m_previous = at::autocast::is_autocast_enabled(m_device);
        m_previousDtype = at::autocast::get_autocast_dtype(m_device);
        at::autocast::set_autocast_enabled(m_device, true);
        at::autocast::set_autocast_dtype(m_device, s.dtype);
    }
    ~AutocastScope()
    {
        if (!m_on)
            return;
        at::autocast::set_autocast_enabled(m_device, m_previous);
        at::autocast::set_autocast_dtype(m_device, m_previousDtype);
        at::autocast::clear_cache();
    }
    AutocastScope(const AutocastScope&) = delete;
    AutocastScope& operator=(const AutocastScope&) = delete;

private:
    c10::DeviceType m_device;
    bool m_on;
    bool m_previous = false;
    at::ScalarType m_previousDtype = at::kBFloat16;
};

// How many recomputations (CheckpointBackward::apply) run on this thread now.
thread_local int t_recomputing = 0;

class CheckpointBackward : public torch::autograd::Node {
public:
    std::string name() const override { return "ladder::CheckpointBackward"; }

    variable_list apply(variable_list&& grads) override
    {
        std::vector<at::Tensor> leaves;
        leaves.reserve(saved.size());
        for (std::size_t i = 0; i < saved.size(); ++i) {
            if (!defined[i]) {
                leaves.emplace_back();
                continue;
            }
            auto x = saved[i].unpack(shared_from_this()).detach();
            x.set_requires_grad(needsGrad[i]);
            leaves.push_back(std::move(x));
        }
        at::Tensor out;
        {
            std::vector<GeneratorSnapshot> before;
            for (const auto& g : generators)
                before.push_back(g.swapIn());
            at::AutoGradMode grad(true);
            AutocastScope autocast(autocastState);
            ++t_recomputing;
            try {
                out = fn(leaves);
            } catch (...) {
                --t_recomputing;
                throw;
            }
            --t_recomputing;
            for (const auto& g : before)
                g.swapIn();
        }
        if (out.requires_grad() && grads.at(0).defined())
            torch::autograd::backward({ out }, { grads[0] });
        out = at::Tensor();
        variable_list result;
        result.reserve(leaves.size());
        for (std::size_t i = 0; i < leaves.size(); ++i)
            result.push_back(defined[i] && needsGrad[i] ? leaves[i].grad() : at::Tensor());
        return result;
    }

    void release_variables() override
    {
        for (auto& s : saved)
            s.reset_data();
        fn = nullptr;
    }

    RecomputeFn fn;
    std::vector<torch::autograd::SavedVariable> saved;
    std::vector<bool> defined;
    std::vector<bool> needsGrad;
    std::vector<GeneratorSnapshot> generators;
    AutocastState autocastState;
};

} // namespace

at::Tensor checkpointed(const RecomputeFn& fn, const std::vector<at::Tensor>& inputs)
{
    // Recorded whenever grad mode is on, also when no input requires grad: the parameters fn uses may
    // (a ladder's downsample of a bf16 ladder).
    if (!at::GradMode::is_enabled())
        return fn(inputs);
    std::optional<c10::Device> cuda;
    for (const auto& x : inputs)
        if (x.defined() && x.is_cuda())
            cuda = x.device();

    auto node = std::shared_ptr<CheckpointBackward>(new CheckpointBackward(), torch::autograd::deleteNode);
    node->fn = fn;
    node->generators.push_back(GeneratorSnapshot::take(c10::Device(c10::kCPU)));
    if (cuda)
        node->generators.push_back(GeneratorSnapshot::take(*cuda));
    node->autocastState.device = cuda ? c10::kCUDA : c10::kCPU;
    node->autocastState.enabled = at::autocast::is_autocast_enabled(node->autocastState.device);
    node->autocastState.dtype = at::autocast::get_autocast_dtype(node->autocastState.device);

    at::Tensor out;
    {
        at::NoGradGuard noGrad;
        out = fn(inputs);
    }
    if (!out.defined())
        throw Error("checkpointed: the recomputed function returned no tensor");
    out = out.detach();

    for (const auto& x : inputs) {
        node->defined.push_back(x.defined());
        node->needsGrad.push_back(x.defined() && x.requires_grad());
        node->saved.emplace_back(x.defined() ? x : at::Tensor(), false);
    }
    node->set_next_edges(torch::autograd::collect_next_edges(inputs));
    torch::autograd::create_gradient_edge(out, node);
    return out;
}

at::Tensor mathAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& bias, double dropout, bool training)
{
    auto scores = at::matmul(q, k.transpose(2, 3));
    if (bias.defined())
        scores = scores + bias;
    auto weights = at::softmax(scores.to(at::kFloat), -1).to(scores.scalar_type());
    if (training && dropout > 0.0)
        weights = at::dropout(weights, dropout, true);
    return at::matmul(weights, v);
}

bool insideRecomputation()
{
    return t_recomputing > 0;
}

at::Tensor recomputedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& bias, double dropout, bool training)
{
    // Inside a recomputed unit (a side layer under side_checkpoint) the maps exist for that unit only:
    // recomputing them once more would cost a third attention pass and save nothing (measured at t5-base).
    if (insideRecomputation())
        return mathAttention(q, k, v, bias, dropout, training);
    const bool dropping = training && dropout > 0.0;
    const RecomputeFn fn = [dropout, training, dropping](const std::vector<at::Tensor>& in) -> at::Tensor {
        if (!at::GradMode::is_enabled() && !dropping) {
            // ATen's fused attention (the CPU flash kernel): equal to the math path to rounding, without
            // materialising the (q, k) maps. Only where no gradient is taken here: with a trainable bias
            // ATen falls back to the math kernel (no saving), and its CPU kernel has no dropout.
            // Detached: ATen picks its kernel by requires_grad() of the operands, not by grad mode.
            auto bias = in[3].defined() ? in[3].detach() : in[3];
            if (bias.defined() && bias.scalar_type() != in[0].scalar_type()
                && !at::autocast::is_autocast_enabled(in[0].device().type()))
                bias = bias.to(in[0].scalar_type());
            return at::scaled_dot_product_attention(
                in[0].detach(), in[1].detach(), in[2].detach(), bias, 0.0, false, 1.0);
        }
        return mathAttention(in[0], in[1], in[2], in[3], dropout, training);
    };
    return checkpointed(fn, { q, k, v, bias });
}

} // namespace ladder
