#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ladder {

// Text taken from a hostile file, made safe to show in an error message: control characters (and, unless
// keepUtf8, every non-ASCII byte) become '?', and text longer than maxLength is cut and ends in "...".
inline std::string printable(
    std::string_view text, bool keepUtf8 = true, std::size_t maxLength = std::string::npos)
{
    std::string s(text.substr(0, maxLength));
    for (auto& c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || (!keepUtf8 && u >= 0x80))
            c = '?';
    }
    return s.size() < text.size() ? s + "..." : s;
}

// What a message shows of text it did not write (a parser's message, a value from a file, LibTorch's
// paragraph about a corrupt zip): the first line, at most maxChars characters, then how much was left out
// ("... (12345 more characters)"). An error is one line of at most a few hundred characters, on a
// terminal and in a store row alike (docs/RELIABILITY.md).
inline std::string oneLine(std::string_view text, std::size_t maxChars = 300)
{
    std::size_t end = text.find_first_of("\r\n");
    if (end == std::string_view::npos)
        end = text.size();
    const std::size_t kept = end < maxChars ? end : maxChars;
    std::string out = printable(text.substr(0, kept));
    if (kept < text.size())
        out += " ... (" + std::to_string(text.size() - kept) + " more characters)";
    return out;
}

// `text` without leading and trailing ASCII whitespace (space, \t, \n, \r, \v, \f): how generated text is
// compared with its labels (the reference strips the decoded text).
inline std::string stripAsciiSpace(std::string_view text)
{
    const auto isSpace = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
    std::size_t begin = 0;
    std::size_t end = text.size();
    while (begin < end && isSpace(text[begin]))
        ++begin;
    while (end > begin && isSpace(text[end - 1]))
        --end;
    return std::string(text.substr(begin, end - begin));
}

} // namespace ladder
