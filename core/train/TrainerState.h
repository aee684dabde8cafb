#pragma once

// The trainer's side of a training state (train/TrainState.h): the best checkpoint kept in host memory,
// and moving weights, AdamW moments and generator states between a run and a TrainState. Used by
// Trainer.cpp only; the header reaches torch/optim, which the light train/Trainer.h must not.

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include "train/TrainState.h"

namespace ladder {

// The best checkpoint's trainable weights, kept as plain host bytes: outside every memory meter (neither
// a CPU tensor the tracking allocator counts nor device memory), so the stored peak is training's alone.
class HostSnapshot {
public:
    void take(const std::vector<at::Tensor>& params)
    {
        m_bytes.resize(params.size());
        for (std::size_t i = 0; i < params.size(); ++i) {
            const auto host
                = params[i].detach().to(at::kCPU).contiguous(); // on the CPU: the parameter itself
            auto& b = m_bytes[i];
            b.resize(host.nbytes());
            std::memcpy(b.data(), host.data_ptr(), host.nbytes());
        }
    }
    bool empty() const { return m_bytes.empty(); }
    // The snapshot as CPU tensors shaped like `params`, over the snapshot's own bytes (no copy): valid
    // while the snapshot is unchanged.
    std::vector<at::Tensor> view(const std::vector<at::Tensor>& params) const
    {
        std::vector<at::Tensor> out;
        for (std::size_t i = 0; i < params.size() && i < m_bytes.size(); ++i) {
            auto* data = const_cast<unsigned char*>(m_bytes[i].data());
            out.push_back(
                at::from_blob(data, params[i].sizes(), at::TensorOptions().dtype(params[i].scalar_type())));
        }
        return out;
    }
    void restore(const std::vector<at::Tensor>& params) const
    {
        at::NoGradGuard noGrad;
        for (std::size_t i = 0; i < params.size(); ++i) {
            auto& p = params[i];
            // copy_ only reads the source: the snapshot's own bytes, wrapped without a copy.
            auto* data = const_cast<unsigned char*>(m_bytes[i].data());
            p.copy_(at::from_blob(data, p.sizes(), at::TensorOptions().dtype(p.scalar_type())));
        }
    }

private:
    std::vector<std::vector<unsigned char>> m_bytes;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The state's weights and AdamW moments into the run's parameters and optimizer (which has not stepped
// yet). Names, shapes and dtypes must be the method's, else Error naming the file and the tensor.
void applyTrainState(const TrainState& state, const std::string& path, const NamedTensors& named,
    torch::optim::AdamW& optimizer);

// The run's weights, AdamW moments and steps, and the best snapshot (views of its bytes), into *state.
void captureTrainState(const NamedTensors& named, const torch::optim::AdamW& optimizer,
    const HostSnapshot& best, TrainState* state);

// The default generator of `device`: its state, and setting it.
at::Tensor generatorState(const c10::Device& device);
void setGeneratorState(const c10::Device& device, const at::Tensor& state);

} // namespace ladder
