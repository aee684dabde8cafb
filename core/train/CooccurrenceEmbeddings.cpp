#include "train/CooccurrenceEmbeddings.h"

#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include "util/Error.h"

namespace ladder {

namespace {

// A dense pieces x pieces float matrix: 4 bytes a cell (8,000 pieces: 256 MB).
constexpr std::int64_t kMaxPieces = 16384;

at::Tensor orthonormalBasis(const at::Tensor& m)
{
    return std::get<0>(at::linalg_qr(m, "reduced"));
}

} // namespace

CooccurrenceEmbeddings cooccurrenceEmbeddings(const std::vector<std::vector<std::int64_t>>& sentences,
    std::int64_t pieces, const CooccurrenceOptions& options)
{
    const auto start = std::chrono::steady_clock::now();
    if (pieces < 2 || pieces > kMaxPieces)
        throw Error("co-occurrence embeddings: the vocabulary has " + std::to_string(pieces)
            + " pieces; expected 2 to " + std::to_string(kMaxPieces) + " (the count matrix is dense)");
    if (options.dims < 1 || options.dims > pieces)
        throw Error("co-occurrence embeddings: dims " + std::to_string(options.dims)
            + " must be between 1 and the " + std::to_string(pieces) + " pieces");
    if (options.window < 1)
        throw Error(
            "co-occurrence embeddings: window must be at least 1, got " + std::to_string(options.window));
    if (!(options.contextSmoothing > 0.0 && options.contextSmoothing <= 1.0))
        throw Error("co-occurrence embeddings: context smoothing must be in (0, 1], got "
            + std::to_string(options.contextSmoothing));
    if (options.oversample < 0 || options.powerIterations < 0 || options.minCount < 1)
        throw Error("co-occurrence embeddings: oversample and power iterations must be >= 0, min count >= 1");
    c10::NoGradGuard noGrad;

    CooccurrenceEmbeddings out;
    // 1. Windowed counts, weighted 1/distance, symmetric.
    at::Tensor counts = at::zeros({ pieces, pieces }, at::kFloat);
    std::vector<std::int64_t> occurrences(static_cast<std::size_t>(pieces), 0);
    {
        float* c = counts.data_ptr<float>();
        for (const auto& ids : sentences) {
            const auto n = ids.size();
            for (std::size_t i = 0; i < n; ++i) {
                const auto a = ids[i];
                if (a < 0 || a >= pieces)
                    throw Error("co-occurrence embeddings: token id " + std::to_string(a) + " is outside the "
                        + std::to_string(pieces) + " pieces");
                ++occurrences[static_cast<std::size_t>(a)];
                for (std::size_t k = 1; k <= static_cast<std::size_t>(options.window) && i + k < n; ++k) {
                    const auto b = ids[i + k];
                    if (b < 0 || b >= pieces)
                        continue; // reported when the loop reaches it
                    const float w = 1.0f / static_cast<float>(k);
                    c[a * pieces + b] += w;
                    c[b * pieces + a] += w;
                    ++out.pairs;
                }
            }
        }
    }
    if (out.pairs == 0)
        throw Error("co-occurrence embeddings: the corpus has no two neighbouring tokens");
    // Seen: counted minCount times and with at least one neighbour (a one-token sentence has none).
    const auto rowSums = counts.sum(1);
    const auto rowSum = rowSums.accessor<float, 1>();
    std::vector<std::uint8_t> seenBytes(static_cast<std::size_t>(pieces), 0);
    out.seen.assign(static_cast<std::size_t>(pieces), false);
    for (std::int64_t i = 0; i < pieces; ++i) {
        const bool seen = occurrences[static_cast<std::size_t>(i)] >= options.minCount && rowSum[i] > 0.0f;
        out.seen[static_cast<std::size_t>(i)] = seen;
        seenBytes[static_cast<std::size_t>(i)] = seen ? 1 : 0;
    }
    const auto seenMask = at::from_blob(seenBytes.data(), { pieces }, at::kByte).to(at::kBool);

    // 2. PPMI: log p(w, c) - log p(w) - log p_smoothed(c), clamped at 0, zero where nothing was counted.
    const double total = counts.sum().item<double>();
    const auto rowLog = at::log(rowSums.clamp_min(1e-30) / total);
    const auto contextPow = counts.sum(0).pow(options.contextSmoothing);
    const auto contextLog = at::log(contextPow.clamp_min(1e-30) / contextPow.sum());
    at::Tensor ppmi
        = at::log(counts.clamp_min(1e-30) / total) - rowLog.unsqueeze(1) - contextLog.unsqueeze(0);
    ppmi = at::where(counts > 0, ppmi.clamp_min(0.0), at::zeros({}, at::kFloat));
    counts = at::Tensor(); // 256 MB at 8,000 pieces

    // 3. Randomised SVD: a seeded Gaussian test matrix, power iterations, then the SVD of a small matrix.
    const auto k = std::min<std::int64_t>(pieces, options.dims + options.oversample);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    const auto omega = at::randn({ pieces, k }, gen, at::TensorOptions().dtype(at::kFloat));
    at::Tensor q = orthonormalBasis(ppmi.mm(omega));
    for (int i = 0; i < options.powerIterations; ++i)
        q = orthonormalBasis(ppmi.mm(orthonormalBasis(ppmi.t().mm(q))));
    const auto small = q.t().mm(ppmi); // (k, pieces)
    const auto [ub, s, vh] = at::linalg_svd(small, /*full_matrices=*/false);
    at::Tensor vectors
        = q.mm(ub.narrow(1, 0, options.dims)) * s.narrow(0, 0, options.dims).sqrt().unsqueeze(0);
    // SVD signs are arbitrary: make the largest-magnitude entry of each column positive.
    const auto largest = vectors.abs().argmax(0);
    const auto signs = at::sign(vectors.gather(0, largest.unsqueeze(0))).squeeze(0);
    vectors = vectors * at::where(signs == 0, at::ones_like(signs), signs).unsqueeze(0);
    vectors = at::where(seenMask.unsqueeze(1), vectors, at::zeros({}, at::kFloat));

    // 4. Scale: standard deviation 1 over the seen rows.
    const auto seenRows = vectors.index({ seenMask });
    if (seenRows.size(0) == 0)
        throw Error(
            "co-occurrence embeddings: no token occurred " + std::to_string(options.minCount) + " times");
    const double stdDev = seenRows.std().item<double>();
    if (!(stdDev > 0.0) || !std::isfinite(stdDev))
        throw Error("co-occurrence embeddings: the factorisation is degenerate (standard deviation "
            + std::to_string(stdDev) + ")");
    out.vectors = (vectors / stdDev).contiguous();
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return out;
}

} // namespace ladder
