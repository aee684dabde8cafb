#include "data/Permutation.h"

#include <numeric>
#include <random>
#include <utility>

namespace ladder {

std::vector<std::size_t> randomPermutation(std::size_t n, std::uint64_t seed)
{
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t(0));
    if (n < 2)
        return order;
    std::mt19937 engine(static_cast<std::uint32_t>(seed & 0xffffffffu));
    for (std::size_t i = 0; i + 1 < n; ++i) {
        const std::size_t z = static_cast<std::size_t>(engine()) % (n - i);
        std::swap(order[i], order[i + z]);
    }
    return order;
}

std::uint64_t deriveSeed(std::uint64_t seed, std::uint64_t stream)
{
    auto mix = [](std::uint64_t x) {
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
    };
    return mix(seed ^ mix(stream));
}

} // namespace ladder
