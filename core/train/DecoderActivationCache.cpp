// The LST activation cache on a decoder-only backbone (docs/PERFORMANCE.md, "Ladder activation cache"): the
// joined layout's store and gather, and the cached forward of DecoderLadderMethod. The store, its file, its
// key and its checks are T5's (train/LadderActivationCache.cpp).
//
// What an entry holds. The backbone runs on the causal join of a batch (model/CausalJoin.h): the source
// (batch, S) moved right so that every row's real tokens end at column S - 1, then labels[:, :-1]. A row with
// s real source and t real target tokens has its inputs at columns S - s ... S + t - 2 (s + t - 1 of them;
// with t < T the join also marks column S + t - 1 real, but its output predicts a padded label and no
// earlier column reads it). Positions count from a row's first real token and attention is causal, so those
// outputs do not depend on the batch's padding (bit-equal at the same padded lengths S and T, the premise of
// padding "same"; to fp rounding across lengths, as T5's "any"). The entry is each kept layer's output over
// those columns; the embeddings, which Down_emb reads, are a lookup and are recomputed.
//
// Why zeros are exact elsewhere: every other column is left padding (masked: weight exactly 0 in every
// real row's softmax), after the row's last input (causal: no earlier column reads it) or the last label's
// column; the loss reads only real labels, so gradients there are exact zeros, as docs/PERFORMANCE.md argues
// for T5.
#include <algorithm>
#include <cstring>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "train/LadderActivationCache.h"
#include "util/Error.h"

namespace ladder {

LadderCacheLayout LadderCacheLayout::forDecoderSide(const DecoderSideOptions& side)
{
    LadderCacheLayout l;
    l.joined = true;
    l.dModel = side.backbone.hiddenSize;
    l.decoderLayers = side.backbone.numHiddenLayers;
    l.decoderStored = side.keep;
    return l;
}

LadderCacheLayout LadderCacheLayout::forMethod(Method& method)
{
    if (auto* t5 = dynamic_cast<LadderMethod*>(&method))
        return forSide(t5->sideNetwork()->options());
    if (auto* decoder = dynamic_cast<DecoderLadderMethod*>(&method))
        return forDecoderSide(decoder->sideNetwork()->options());
    throw Error("ladder cache: field cache: the method is not an LST method");
}

void LadderActivationCache::storeJoined(const std::vector<std::size_t>& examples,
    const std::vector<at::Tensor>& kept, const at::Tensor& attentionMask, const at::Tensor& labels)
{
    if (!m_layout.joined)
        throw Error("ladder cache: storeJoined() of a T5 cache (store() is its own)");
    const auto rows = static_cast<std::int64_t>(examples.size());
    const auto paddedSource = attentionMask.size(1), paddedTarget = labels.size(1);
    const auto columns = paddedSource + paddedTarget - 1;
    const auto sourceLengths = attentionMask.sum(1).to(at::kCPU).to(at::kLong).contiguous();
    const auto targetLengths = (labels != -100).sum(1).to(at::kCPU).to(at::kLong).contiguous();
    if (sourceLengths.size(0) != rows || targetLengths.size(0) != rows)
        throw Error("ladder cache: a batch of " + std::to_string(rows) + " examples has "
            + std::to_string(sourceLengths.size(0)) + " rows");
    std::vector<at::Tensor> host; // one device-to-host copy per kept layer, in the storage dtype
    {
        at::NoGradGuard noGrad;
        for (auto l : m_layout.decoderStored) {
            const auto& t = kept.at(static_cast<std::size_t>(l));
            if (!t.defined() || t.dim() != 3 || t.size(0) != rows || t.size(1) != columns
                || t.size(2) != m_layout.dModel)
                throw Error("ladder cache: the output of backbone layer " + std::to_string(l)
                    + " to store is missing or is not (batch, source + target - 1, d)");
            if (host.empty())
                noteValueDtype(t.scalar_type());
            host.push_back(t.detach().to(at::kCPU, m_storageDtype).contiguous());
        }
    }
    const auto* src = sourceLengths.data_ptr<std::int64_t>();
    const auto* tgt = targetLengths.data_ptr<std::int64_t>();
    const auto rowBytes = m_layout.dModel * m_elementSize; // one column of one layer
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto index = examples[static_cast<std::size_t>(r)];
        if (!claimEntry(index, paddedSource, paddedTarget, src[r], tgt[r]))
            continue;
        const auto& e = m_entries[index];
        const auto first = paddedSource - e.sourceLength; // the row's first real column
        const auto bytes = static_cast<std::size_t>(
            std::max<std::int64_t>(e.sourceLength + e.targetLength - 1, 0) * rowBytes);
        char* out = entryData(e);
        for (const auto& h : host) {
            std::memcpy(out, static_cast<const char*>(h[r].data_ptr()) + first * rowBytes, bytes);
            out += bytes;
        }
        markStored(index);
    }
}

std::vector<at::Tensor> LadderActivationCache::gatherJoined(const std::vector<std::size_t>& examples,
    std::int64_t sourceLength, std::int64_t targetLength, c10::Device device) const
{
    if (!m_layout.joined)
        throw Error("ladder cache: gatherJoined() of a T5 cache (gather() is its own)");
    if (!contains(examples))
        throw Error("ladder cache: gather of an example that is not stored");
    const auto rows = static_cast<std::int64_t>(examples.size());
    const auto d = m_layout.dModel;
    const auto rowBytes = d * m_elementSize;
    std::vector<at::Tensor> padded;
    for (std::size_t p = 0; p < m_layout.decoderStored.size(); ++p)
        padded.push_back(at::zeros(
            { rows, sourceLength + targetLength - 1, d }, at::TensorOptions().dtype(m_storageDtype)));
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto& e = m_entries[examples[static_cast<std::size_t>(r)]];
        if (e.sourceLength > sourceLength || e.targetLength > targetLength)
            throw Error("ladder cache: an example is longer than the batch it is gathered into");
        const auto first = sourceLength - e.sourceLength;
        const auto bytes = static_cast<std::size_t>(
            std::max<std::int64_t>(e.sourceLength + e.targetLength - 1, 0) * rowBytes);
        const char* in = entryData(e);
        for (auto& t : padded) {
            std::memcpy(static_cast<char*>(t[r].data_ptr()) + first * rowBytes, in, bytes);
            in += bytes;
        }
    }
    std::vector<at::Tensor> out(static_cast<std::size_t>(m_layout.decoderLayers));
    for (std::size_t p = 0; p < padded.size(); ++p)
        out[static_cast<std::size_t>(m_layout.decoderStored[p])] = padded[p].to(device, m_valueDtype);
    return out;
}

MethodOutput forwardWithCache(DecoderLadderMethod& method, const Seq2SeqBatch& batch,
    const std::vector<std::size_t>& examples, LadderActivationCache& cache)
{
    if (!batch.labels.defined())
        throw Error("ladder forward: labels are required");
    if (method.options().backboneTrainMode)
        throw Error("ladder: field cache: the activation cache needs the backbone in eval mode "
                    "(backbone_train_mode draws new dropout masks in the backbone every epoch)");
    const auto sourceLength = batch.inputIds.size(1), targetLength = batch.labels.size(1);
    if (cache.usable(examples, sourceLength, targetLength)) {
        ++cache.hits;
        const auto cached = cache.gatherJoined(examples, sourceLength, targetLength, batch.inputIds.device());
        return method.forwardLadders(batch, &cached, nullptr);
    }
    ++cache.misses;
    std::vector<at::Tensor> computed;
    auto out = method.forwardLadders(batch, nullptr, &computed);
    cache.storeJoined(examples, computed, batch.attentionMask, batch.labels);
    return out;
}

MethodOutput forwardWithCache(Method& method, const Seq2SeqBatch& batch,
    const std::vector<std::size_t>& examples, LadderActivationCache& cache)
{
    if (auto* t5 = dynamic_cast<LadderMethod*>(&method))
        return forwardWithCache(*t5, batch, examples, cache);
    if (auto* decoder = dynamic_cast<DecoderLadderMethod*>(&method))
        return forwardWithCache(*decoder, batch, examples, cache);
    throw Error("ladder cache: field cache: the method is not an LST method");
}

} // namespace ladder
