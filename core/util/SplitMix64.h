#pragma once

#include <cstdint>

namespace ladder {

// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator whose output is fixed by its definition, unlike
// the std distributions (implementation-defined), so data order, noise masks and the demo's negatives are
// the same on every platform.
class SplitMix64 {
public:
    explicit SplitMix64(std::uint64_t seed)
        : m_state(seed)
    {
    }
    std::uint64_t next()
    {
        std::uint64_t z = (m_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // next() % n (0 for n == 0).
    std::uint64_t uniform(std::uint64_t n) { return n == 0 ? 0 : next() % n; }

private:
    std::uint64_t m_state;
};

} // namespace ladder
