#include "model/Backbone.h"

#include <ATen/ATen.h>
#include <ATen/core/Reduction.h>

namespace ladder {
namespace {
thread_local std::optional<at::ScalarType> t_keptDtype;
}

KeptBlockOutputDtype::KeptBlockOutputDtype(std::optional<at::ScalarType> dtype)
    : m_previous(t_keptDtype)
{
    t_keptDtype = dtype;
}

KeptBlockOutputDtype::~KeptBlockOutputDtype()
{
    t_keptDtype = m_previous;
}

std::optional<at::ScalarType> KeptBlockOutputDtype::current()
{
    return t_keptDtype;
}

void DecoderCache::reorder(const at::Tensor& batchIndices)
{
    for (auto& b : blocks) {
        for (auto* c : { &b.self, &b.cross }) {
            if (c->key.defined()) {
                c->key = c->key.index_select(0, batchIndices);
                c->value = c->value.index_select(0, batchIndices);
            }
        }
    }
}

std::vector<at::Tensor> StackOutput::hfHiddenStates() const
{
    std::vector<at::Tensor> states { embeddings };
    for (std::size_t i = 0; i + 1 < blockOutputs.size(); ++i)
        states.push_back(blockOutputs[i]);
    states.push_back(lastHiddenState);
    return states;
}

at::Tensor Backbone::crossEntropy(const at::Tensor& logits, const at::Tensor& labels)
{
    return at::cross_entropy_loss(logits.reshape({ -1, logits.size(-1) }).to(at::kFloat),
        labels.reshape({ -1 }), {}, at::Reduction::Mean, -100);
}

} // namespace ladder
