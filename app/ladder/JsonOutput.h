#pragma once

#include <cmath>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "store/StoreTypes.h"

namespace ladder::cli {

// --json output, one convention for every command: one JSON document on stdout (progress and messages go
// to stderr); every key is always present, and a value that is missing or not a number is null (never
// "-", NaN or an absent key).

inline nlohmann::json jsonNumber(double v)
{
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

template <class T> nlohmann::json jsonOptional(const std::optional<T>& v)
{
    if (!v)
        return nullptr;
    if constexpr (std::is_floating_point_v<T>)
        return jsonNumber(static_cast<double>(*v));
    else
        return nlohmann::json(*v);
}

// An empty string is a missing value.
inline nlohmann::json jsonText(const std::string& s)
{
    return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
}

// The document, indented, with invalid UTF-8 replaced (a path or a log line may hold any bytes).
void printJson(const nlohmann::json& j);

// A stored run as `runs list --json` prints it (`runs show --json` adds spec, memory, evaluations, log).
nlohmann::json runJson(const RunRecord& r);

} // namespace ladder::cli
