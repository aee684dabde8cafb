#include "data/Batcher.h"

#include <algorithm>
#include <memory>
#include <numeric>

#include <ATen/ATen.h>

#include "data/Permutation.h"
#include "model/T5Tokenizer.h"
#include "util/Error.h"

namespace ladder {

namespace {

// Texts are tokenised in groups of this many (encodeBatch pads each group to its longest).
constexpr std::size_t kTokenizeGroup = 256;

// Streams that derive the per-epoch seeds from BatcherOptions::seed.
constexpr std::uint64_t kOrderStream = 1;
constexpr std::uint64_t kBatchOrderStream = 2;

// Tokenises `texts` with HF's truncation (Tokenizer::encodeBatch) and removes the padding again.
// Counts how many ids truncation removed.
std::vector<std::vector<std::int64_t>> tokenize(
    const Tokenizer& tokenizer, const std::vector<std::string>& texts, int maxLength, std::size_t& truncated)
{
    std::vector<std::vector<std::int64_t>> out;
    out.reserve(texts.size());
    for (std::size_t begin = 0; begin < texts.size(); begin += kTokenizeGroup) {
        const std::size_t end = std::min(texts.size(), begin + kTokenizeGroup);
        const std::vector<std::string> group(texts.begin() + static_cast<std::ptrdiff_t>(begin),
            texts.begin() + static_cast<std::ptrdiff_t>(end));
        auto encoded = tokenizer.encodeBatch(group, maxLength, /*padToLongest=*/true);
        for (std::size_t k = 0; k < group.size(); ++k) {
            auto& ids = encoded.inputIds[k];
            const auto& mask = encoded.attentionMask[k];
            ids.resize(static_cast<std::size_t>(std::accumulate(mask.begin(), mask.end(), std::int64_t(0))));
            if (maxLength > 0 && static_cast<int>(ids.size()) == maxLength) {
                const auto full = tokenizer.encode(group[k], true).size();
                truncated += full > ids.size() ? full - ids.size() : 0;
            }
            out.push_back(std::move(ids));
        }
    }
    return out;
}

// A causal LM's targets: the text as it continues the prompt, eos last (Tokenizer::encodeTarget); cut from
// the right keeping eos last, as T5's targets are.
std::vector<std::vector<std::int64_t>> tokenizeTargets(
    const Tokenizer& tokenizer, const std::vector<std::string>& texts, int maxLength, std::size_t& truncated)
{
    if (dynamic_cast<const T5Tokenizer*>(&tokenizer))
        return tokenize(tokenizer, texts, maxLength, truncated); // byte-identical to every T5 run before
    std::vector<std::vector<std::int64_t>> out;
    out.reserve(texts.size());
    for (const auto& text : texts) {
        auto ids = tokenizer.encodeTarget(text);
        if (maxLength > 0 && ids.size() > static_cast<std::size_t>(maxLength)) {
            truncated += ids.size() - static_cast<std::size_t>(maxLength);
            const auto last = ids.back();
            ids.resize(static_cast<std::size_t>(maxLength));
            ids.back() = last;
        }
        out.push_back(std::move(ids));
    }
    return out;
}

} // namespace

Batcher::Batcher(const Tokenizer& tokenizer, const std::vector<TextExample>& examples, BatcherOptions options)
    : m_options(options)
    , m_padId(tokenizer.padId())
{
    if (m_options.batchSize < 1)
        throw Error("batcher: batch size must be at least 1, got " + std::to_string(m_options.batchSize));
    if (m_options.bucketChunk < 1)
        throw Error("batcher: bucketChunk must be at least 1, got " + std::to_string(m_options.bucketChunk));
    std::vector<std::string> sources;
    std::vector<std::string> targets;
    sources.reserve(examples.size());
    targets.reserve(examples.size());
    for (const auto& ex : examples) {
        sources.push_back(ex.source);
        targets.push_back(ex.target);
    }
    if (m_options.visualFeatures) {
        const auto& file = *m_options.visualFeatures;
        m_images.reserve(examples.size());
        for (const auto& ex : examples) {
            if (ex.images.empty())
                throw Error(
                    "batcher: example " + ex.id + " names no image, and the task is vision-and-language");
            for (const auto& image : ex.images)
                if (!file.contains(image))
                    throw Error(
                        file.info().path + ": no features for image '" + image + "' (example " + ex.id + ")");
            m_images.push_back(ex.images);
        }
        if (m_options.visualTokens < 0)
            throw Error("batcher: visual tokens must be >= 0, got " + std::to_string(m_options.visualTokens));
    }
    m_sources = tokenize(tokenizer, sources, m_options.maxSourceLength, m_truncatedSources);
    m_targets = tokenizeTargets(tokenizer, targets, m_options.maxTargetLength, m_truncatedTargets);
}

std::size_t Batcher::batchCount() const
{
    const std::size_t n = exampleCount();
    const auto b = static_cast<std::size_t>(m_options.batchSize);
    return m_options.dropLast ? n / b : (n + b - 1) / b;
}

std::vector<std::vector<std::size_t>> Batcher::plan(int epoch) const
{
    const std::size_t n = exampleCount();
    const auto b = static_cast<std::size_t>(m_options.batchSize);
    const auto epochStream = static_cast<std::uint64_t>(static_cast<std::int64_t>(epoch));
    std::vector<std::size_t> order;
    if (m_options.shuffle) {
        order = randomPermutation(n, deriveSeed(deriveSeed(m_options.seed, kOrderStream), epochStream));
    } else {
        order.resize(n);
        std::iota(order.begin(), order.end(), std::size_t(0));
    }
    if (m_options.bucketByLength) {
        const std::size_t chunk = b * static_cast<std::size_t>(m_options.bucketChunk);
        for (std::size_t begin = 0; begin < n; begin += chunk) {
            const auto first = order.begin() + static_cast<std::ptrdiff_t>(begin);
            const auto last = order.begin() + static_cast<std::ptrdiff_t>(std::min(n, begin + chunk));
            std::stable_sort(first, last,
                [&](std::size_t x, std::size_t y) { return m_sources[x].size() > m_sources[y].size(); });
        }
    }
    std::vector<std::vector<std::size_t>> batches;
    for (std::size_t begin = 0; begin < n; begin += b) {
        const std::size_t end = std::min(n, begin + b);
        if (m_options.dropLast && end - begin < b)
            break;
        batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(begin),
            order.begin() + static_cast<std::ptrdiff_t>(end));
    }
    if (m_options.bucketByLength && m_options.shuffle && batches.size() > 1) {
        const auto batchOrder = randomPermutation(
            batches.size(), deriveSeed(deriveSeed(m_options.seed, kBatchOrderStream), epochStream));
        std::vector<std::vector<std::size_t>> shuffled;
        shuffled.reserve(batches.size());
        for (const auto i : batchOrder)
            shuffled.push_back(std::move(batches[i]));
        batches = std::move(shuffled);
    }
    return batches;
}

ExampleBatch Batcher::makeBatch(const std::vector<std::size_t>& indices) const
{
    if (indices.empty())
        throw Error("batcher: a batch needs at least one example");
    std::size_t sourceLength = 0;
    std::size_t targetLength = 0;
    for (const auto i : indices) {
        if (i >= exampleCount())
            throw Error("batcher: example index " + std::to_string(i) + " is outside the "
                + std::to_string(exampleCount()) + " examples");
        sourceLength = std::max(sourceLength, m_sources[i].size());
        targetLength = std::max(targetLength, m_targets[i].size());
    }
    const auto rows = static_cast<std::int64_t>(indices.size());
    const auto options = at::TensorOptions().dtype(at::kLong);
    at::Tensor inputIds = at::full({ rows, static_cast<std::int64_t>(sourceLength) }, m_padId, options);
    at::Tensor mask = at::zeros({ rows, static_cast<std::int64_t>(sourceLength) }, options);
    at::Tensor labels = at::full({ rows, static_cast<std::int64_t>(targetLength) }, kIgnoreIndex, options);
    auto* ids = inputIds.data_ptr<std::int64_t>();
    auto* maskData = mask.data_ptr<std::int64_t>();
    auto* labelData = labels.data_ptr<std::int64_t>();
    for (std::size_t r = 0; r < indices.size(); ++r) {
        const auto& source = m_sources[indices[r]];
        const auto& target = m_targets[indices[r]];
        std::copy(source.begin(), source.end(), ids + r * sourceLength);
        std::fill(maskData + r * sourceLength, maskData + r * sourceLength + source.size(), std::int64_t(1));
        std::copy(target.begin(), target.end(), labelData + r * targetLength);
    }
    ExampleBatch out;
    out.batch.inputIds = inputIds;
    out.batch.attentionMask = mask;
    out.batch.labels = labels;
    if (m_options.visualFeatures)
        out.batch.visual = makeVisual(indices);
    out.indices = indices;
    return out;
}

void setVisualOptions(BatcherOptions& options, const TaskInfo& info)
{
    if (!info.isVisual())
        return;
    options.visualFeatures = std::make_shared<const VisualFeatureFile>(info.visualFeatures);
    options.visualTokens = info.visualTokens;
}

VisualInput Batcher::makeVisual(const std::vector<std::size_t>& indices) const
{
    const auto& file = *m_options.visualFeatures;
    const auto tokens = m_options.visualTokens > 0 ? m_options.visualTokens : file.info().boxes;
    const auto dim = file.info().dim;
    std::size_t images = 1;
    for (const auto i : indices)
        images = std::max(images, m_images[i].size());
    const auto rows = static_cast<std::int64_t>(indices.size());
    const auto width = static_cast<std::int64_t>(images) * tokens;
    VisualInput v;
    v.tokensPerImage = tokens;
    v.features = at::zeros({ rows, width, dim }, at::kFloat);
    v.boxes = at::zeros({ rows, width, 4 }, at::kFloat);
    v.imageOrder = at::arange(width, at::kLong).div(tokens, "floor").unsqueeze(0).repeat({ rows, 1 });
    v.mask = at::zeros({ rows, width }, at::kLong);
    for (std::size_t r = 0; r < indices.size(); ++r) {
        const auto& ids = m_images[indices[r]];
        for (std::size_t k = 0; k < ids.size(); ++k) {
            const auto image = file.read(ids[k]);
            const auto begin = static_cast<std::int64_t>(k) * tokens;
            const auto row = static_cast<std::int64_t>(r);
            v.features[row]
                .narrow(0, begin, tokens)
                .copy_(VisualFeatureFile::reduceTokens(image.features, tokens));
            v.boxes[row].narrow(0, begin, tokens).copy_(VisualFeatureFile::reduceBoxes(image.boxes, tokens));
            v.mask[row].narrow(0, begin, tokens).fill_(1);
        }
    }
    return v;
}

std::vector<ExampleBatch> Batcher::epoch(int epoch) const
{
    std::vector<ExampleBatch> out;
    for (const auto& indices : plan(epoch))
        out.push_back(makeBatch(indices));
    return out;
}

BatchSource Batcher::source(int epoch) const
{
    auto batches = std::make_shared<std::vector<std::vector<std::size_t>>>(plan(epoch));
    auto next = std::make_shared<std::size_t>(0);
    return [this, batches, next]() -> std::optional<Seq2SeqBatch> {
        if (*next >= batches->size())
            return std::nullopt;
        return makeBatch((*batches)[(*next)++]).batch;
    };
}

int Batcher::targetLengthFor(const TaskInfo& info, const Tokenizer& tokenizer, int fallback)
{
    if (info.labels.empty())
        return fallback;
    std::size_t longest = 0;
    for (const auto& label : info.labels)
        longest = std::max(longest, tokenizer.encodeTarget(label).size());
    return static_cast<int>(longest);
}

} // namespace ladder
