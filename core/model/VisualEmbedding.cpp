#include "model/VisualEmbedding.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>

#include "model/T5Model.h"
#include "util/Error.h"

namespace ladder {

VisualInput VisualInput::select(const at::Tensor& rows) const
{
    VisualInput out = *this;
    for (auto* t : { &out.features, &out.boxes, &out.imageOrder, &out.mask })
        if (t->defined())
            *t = t->index_select(0, rows.to(t->device()));
    return out;
}

VisualInput VisualInput::to(const c10::Device& device) const
{
    VisualInput out = *this;
    for (auto* t : { &out.features, &out.boxes, &out.imageOrder, &out.mask })
        if (t->defined())
            *t = t->to(device);
    return out;
}

VisualEmbeddingImpl::VisualEmbeddingImpl(std::int64_t visualDim, std::int64_t dModel, double layerNormEps,
    std::int64_t vocabSize, std::int64_t images)
    : m_visualDim(visualDim)
    , m_dModel(dModel)
    , m_vocab(vocabSize)
    , m_images(images)
{
    if (visualDim < 1)
        throw Error("visual embedding: visual_dim must be at least 1, got " + std::to_string(visualDim));
    if (images < 1)
        throw Error("visual embedding: images must be at least 1, got " + std::to_string(images));
    feat_embedding = register_module("feat_embedding",
        torch::nn::Sequential(torch::nn::Linear(visualDim, dModel), T5LayerNorm(dModel, layerNormEps)));
    absolute_vis_pos_embedding = register_module("absolute_vis_pos_embedding",
        torch::nn::Sequential(torch::nn::Linear(5, dModel), T5LayerNorm(dModel, layerNormEps)));
    img_order_embedding = register_module("img_order_embedding", torch::nn::Embedding(images, dModel));
}

at::Tensor VisualEmbeddingImpl::forward(const VisualInput& input, const TokenEmbed& tokenEmbed)
{
    if (!input.defined())
        throw Error("visual input: the batch has no visual features");
    const auto& f = input.features;
    if (f.dim() != 3)
        throw Error(
            "visual input: features must be (batch, tokens, dim), got " + std::to_string(f.dim()) + "-D");
    if (f.size(2) != m_visualDim)
        throw Error("visual input: features are " + std::to_string(f.size(2))
            + " wide, the visual projection expects " + std::to_string(m_visualDim));
    const auto batch = f.size(0);
    const auto tokens = f.size(1);
    const auto weightType = feat_embedding->parameters().front().scalar_type();
    const auto feats = f.to(weightType);
    const auto longOpts = at::TensorOptions().dtype(at::kLong).device(f.device());

    at::Tensor boxes = input.boxes.defined() ? input.boxes.to(weightType)
                                             : at::zeros({ batch, tokens, 4 }, feats.options());
    // (x1, x2, y1, y2) -> area = (y2 - y1) * (x2 - x1), appended: (x1, x2, y1, y2, area), as VL-T5's
    // get_area.
    const auto area = (boxes.select(2, 3) - boxes.select(2, 2)) * (boxes.select(2, 1) - boxes.select(2, 0));
    const auto pos = at::cat({ boxes, area.unsqueeze(2) }, 2);

    at::Tensor imageOrder = input.imageOrder.defined() ? input.imageOrder.to(longOpts.device())
                                                       : at::zeros({ batch, tokens }, longOpts);
    if (imageOrder.numel() > 0
        && (imageOrder.min().item<std::int64_t>() < 0 || imageOrder.max().item<std::int64_t>() >= m_images))
        throw Error("visual input: image order ids must be in [0, " + std::to_string(m_images) + ")");
    // The object order: the j-th token of each image reads the backbone's token embedding vocab - 1 - j.
    const auto perImage = input.tokensPerImage > 0 ? input.tokensPerImage : tokens;
    const auto objectOrder = at::arange(tokens, longOpts).remainder(perImage);
    if (perImage > m_vocab)
        throw Error("visual input: " + std::to_string(perImage)
            + " visual tokens per image exceed the vocabulary (" + std::to_string(m_vocab)
            + ") that their order embedding reads");
    const auto objectEmbeds
        = tokenEmbed((m_vocab - 1 - objectOrder).unsqueeze(0)).to(weightType); // (1, V, d)

    return feat_embedding->forward(feats) + absolute_vis_pos_embedding->forward(pos)
        + img_order_embedding->forward(imageOrder) + objectEmbeds;
}

std::int64_t visualEmbeddingParameterCount(std::int64_t visualDim, std::int64_t dModel, std::int64_t images)
{
    return (visualDim * dModel + dModel) + dModel // feat_embedding: Linear + T5LayerNorm
        + (5 * dModel + dModel) + dModel // absolute_vis_pos_embedding
        + images * dModel; // img_order_embedding
}

} // namespace ladder
