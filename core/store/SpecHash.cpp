#include "store/SpecHash.h"

#include <cstdint>
#include <cstdio>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/Error.h"
#include "util/Json.h"

namespace ladder {

namespace {

// 64-bit FNV-1a of the bytes.
std::uint64_t fnv1a64Bytes(std::string_view bytes)
{
    constexpr std::uint64_t offsetBasis = 14695981039346656037ull;
    constexpr std::uint64_t prime = 1099511628211ull;
    std::uint64_t hash = offsetBasis;
    for (const char c : bytes) {
        hash ^= static_cast<unsigned char>(c);
        hash *= prime;
    }
    return hash;
}

} // namespace

std::string specHash(const nlohmann::json& spec)
{
    // nlohmann::json keeps object keys in a std::map, so dump() is already canonical in key order.
    const std::string canonical = spec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64Bytes(canonical)));
    return hex;
}

std::string specHashFromText(const std::string& specJson)
{
    return specHash(parseJson(specJson, "hashing run spec"));
}

} // namespace ladder
