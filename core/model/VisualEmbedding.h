#pragma once

#include <cstdint>
#include <functional>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include "model/VisualInput.h"

namespace ladder {

// The visual projection of CLIP-T5 (VL-T5's VisualEmbedding, as the LST reference builds it with its
// defaults: individual_vis_layer_norm, use_vis_order_embedding, n_images 2; docs/VL.md):
//
//   feat_embedding.0               Linear(D, d_model)    the projection of the frozen encoder's features
//   feat_embedding.1.weight        T5LayerNorm(d_model)
//   absolute_vis_pos_embedding.0   Linear(5, d_model)    (x1, x2, y1, y2, area) of each box
//   absolute_vis_pos_embedding.1.weight  T5LayerNorm(d_model)
//   img_order_embedding.weight     Embedding(images, d_model)
//
// plus the object-order embedding: the backbone's own token embeddings read backwards (token vocab - 1 - j
// for the j-th token of an image), a frozen (or, under full fine-tuning, trainable) part of the backbone.
// visual embedding = feat + position + image order + object order, at d_model: what is concatenated after
// the text embeddings.
class VisualEmbeddingImpl : public torch::nn::Module {
public:
    // Token ids -> embeddings (batch, n, d_model): the backbone's embed().
    using TokenEmbed = std::function<at::Tensor(const at::Tensor& ids)>;

    VisualEmbeddingImpl(std::int64_t visualDim, std::int64_t dModel, double layerNormEps,
        std::int64_t vocabSize, std::int64_t images = 2);

    // (batch, V, d_model). Errors name what does not fit: "visual input: features are 512 wide, the visual
    // projection expects 2048".
    at::Tensor forward(const VisualInput& input, const TokenEmbed& tokenEmbed);

    std::int64_t visualDim() const { return m_visualDim; }
    std::int64_t images() const { return m_images; }

    torch::nn::Sequential feat_embedding { nullptr };
    torch::nn::Sequential absolute_vis_pos_embedding { nullptr };
    torch::nn::Embedding img_order_embedding { nullptr };

private:
    std::int64_t m_visualDim;
    std::int64_t m_dModel;
    std::int64_t m_vocab;
    std::int64_t m_images;
};
TORCH_MODULE(VisualEmbedding);

// The parameters of a VisualEmbedding of this shape (the count `ladder params --vl` adds).
std::int64_t visualEmbeddingParameterCount(
    std::int64_t visualDim, std::int64_t dModel, std::int64_t images = 2);

} // namespace ladder
