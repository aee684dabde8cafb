#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ladder {

// Word vectors from corpus statistics, used to initialise the demo T5's token embeddings before
// span-corruption pretraining (docs/DEMO.md, "Why co-occurrence embeddings"): positive pointwise mutual
// information of windowed co-occurrence counts (Levy, Goldberg & Dagan 2015: 1/distance weights,
// context distribution smoothed with exponent 0.75), factorised by a seeded randomised SVD (Halko,
// Martinsson & Tropp 2011) into U_d S_d^1/2. A few seconds for a vocabulary of thousands, where
// pretraining a small T5 long enough to learn the same similarities would take hours on a CPU.
struct CooccurrenceOptions {
    std::int64_t dims = 256; // embedding width (the model's d_model)
    int window = 4; // tokens on each side; a pair k apart counts 1/k
    double contextSmoothing = 0.75; // exponent on the context counts
    int oversample = 16; // extra random directions of the randomised SVD
    int powerIterations = 4; // subspace iterations (each re-orthonormalised)
    std::uint64_t seed = 0; // the random test matrix
    // Tokens seen fewer times keep no vector (their row is zero and `seen` is false).
    std::int64_t minCount = 1;
};

struct CooccurrenceEmbeddings {
    at::Tensor vectors; // (pieces, dims) float32; rows of unseen tokens are zero
    std::vector<bool> seen; // per piece: occurred at least minCount times (and has a vector)
    std::int64_t pairs = 0; // co-occurrence pairs counted (each direction once)
    double seconds = 0.0;
};

// `sentences` are token ids below `pieces` (pad, eos and unk may appear; they are counted like any other
// id). The vectors are scaled so that the seen rows have standard deviation 1 over all their entries (the
// scale of HF T5's embedding initialisation). Deterministic for the same input, options and thread count.
// Throws ladder::Error for an id outside [0, pieces), dims > pieces or an empty corpus.
CooccurrenceEmbeddings cooccurrenceEmbeddings(const std::vector<std::vector<std::int64_t>>& sentences,
    std::int64_t pieces, const CooccurrenceOptions& options);

} // namespace ladder
