#include "train/TrainerState.h"

#include <mutex>

#include "util/Error.h"

namespace ladder {

void applyTrainState(const TrainState& state, const std::string& path, const NamedTensors& named,
    torch::optim::AdamW& optimizer)
{
    const auto fail
        = [&path](const std::string& what) { throw Error("training state " + path + ": " + what); };
    if (state.params.size() != named.size())
        fail("it holds " + std::to_string(state.params.size()) + " trainable tensors, the run's method has "
            + std::to_string(named.size()) + " (was the run's method changed?)");
    at::NoGradGuard noGrad;
    for (const auto& [name, p] : named) {
        const auto it = state.params.find(name);
        if (it == state.params.end())
            fail("no tensor param/" + name + " (the method's trainable parameter)");
        if (!it->second.sizes().equals(p.sizes()) || it->second.scalar_type() != p.scalar_type())
            fail("tensor param/" + name + " has another shape or dtype than the method's parameter");
        p.copy_(it->second);
        const auto steps = state.adamSteps.find(name);
        if (steps == state.adamSteps.end())
            continue; // the optimizer had not stepped it
        auto ps = std::make_unique<torch::optim::AdamWParamState>();
        ps->step(steps->second);
        ps->exp_avg(state.expAvg.at(name).to(p.device(), p.scalar_type()).clone());
        ps->exp_avg_sq(state.expAvgSq.at(name).to(p.device(), p.scalar_type()).clone());
        optimizer.state()[p.unsafeGetTensorImpl()] = std::move(ps);
    }
}

at::Tensor generatorState(const c10::Device& device)
{
    auto gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
}

void setGeneratorState(const c10::Device& device, const at::Tensor& state)
{
    auto gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
}

void captureTrainState(const NamedTensors& named, const torch::optim::AdamW& optimizer,
    const HostSnapshot& best, TrainState* state)
{
    std::vector<at::Tensor> plain;
    for (const auto& [name, p] : named) {
        plain.push_back(p);
        state->params[name] = p.detach();
        const auto it = optimizer.state().find(p.unsafeGetTensorImpl());
        if (it == optimizer.state().end())
            continue; // not stepped yet
        const auto& ps = static_cast<const torch::optim::AdamWParamState&>(*it->second);
        state->expAvg[name] = ps.exp_avg();
        state->expAvgSq[name] = ps.exp_avg_sq();
        state->adamSteps[name] = ps.step();
    }
    if (!best.empty()) {
        const auto views = best.view(plain);
        for (std::size_t k = 0; k < named.size(); ++k)
            state->best[named[k].first] = views[k];
    }
}

} // namespace ladder
