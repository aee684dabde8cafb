#include "util/Json.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "util/Error.h"
#include "util/Text.h"

namespace ladder {

std::size_t jsonNesting(std::string_view text)
{
    std::size_t depth = 0, deepest = 0;
    bool inString = false, escaped = false;
    for (const char c : text) {
        if (inString) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                inString = false;
        } else if (c == '"') {
            inString = true;
        } else if (c == '{' || c == '[') {
            deepest = std::max(deepest, ++depth);
        } else if ((c == '}' || c == ']') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

nlohmann::json parseJson(std::string_view text, const std::string& source)
{
    if (jsonNesting(text) > kMaxJsonDepth)
        throw Error(source + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    try {
        return nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& e) {
        throw Error(source + ": not valid JSON: " + oneLine(e.what(), 200));
    }
}

std::optional<nlohmann::json> tryParseJson(std::string_view text)
{
    if (jsonNesting(text) > kMaxJsonDepth)
        return std::nullopt;
    auto value = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded())
        return std::nullopt;
    return value;
}

nlohmann::json readJsonFile(const std::string& path, const std::string& expected)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(path + ": cannot open (expected " + expected + ")");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad())
        throw Error(path + ": cannot read (expected " + expected + ")");
    return parseJson(text.str(), path);
}

std::string brief(const nlohmann::json& value)
{
    if (value.is_array() && value.size() > 4)
        return "an array of " + std::to_string(value.size()) + " items";
    if (value.is_object() && value.size() > 4)
        return "an object of " + std::to_string(value.size()) + " fields";
    // The depth is bounded (parseJson); a long string is copied once by dump(), then cut.
    return oneLine(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 60);
}

} // namespace ladder
