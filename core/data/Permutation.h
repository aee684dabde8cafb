#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ladder {

// A random permutation of 0..n-1 that is the same on every platform and compiler, and equal to
// torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on the CPU (for n < 2^32 / 20): the
// reference implementation splits GLUE with exactly that call, so the splits here are the reference's.
// Algorithm (PyTorch's randperm_cpu): a 32-bit Mersenne Twister seeded with the low 32 bits of `seed`
// (std::mt19937, whose raw output the C++ standard fixes), then for i = 0..n-2 swap r[i] with
// r[i + (mt() % (n - i))]. No std::shuffle or std distribution is used: their output is
// implementation-defined. (numpy's shuffle gives a different permutation.)
std::vector<std::size_t> randomPermutation(std::size_t n, std::uint64_t seed);

// A seed derived from (seed, stream) by SplitMix64, for independent per-epoch or per-purpose streams.
std::uint64_t deriveSeed(std::uint64_t seed, std::uint64_t stream);

} // namespace ladder
