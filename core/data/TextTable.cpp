#include "data/TextTable.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <sys/stat.h>

#include "util/Error.h"

namespace ladder {

namespace {

std::string hexByte(unsigned char c)
{
    char buffer[8];
    std::snprintf(buffer, sizeof buffer, "0x%02x", static_cast<unsigned>(c));
    return buffer;
}

// Length of the UTF-8 sequence at text[i], or 0 when it is not valid UTF-8 (overlong forms, surrogates
// and code points above U+10FFFF are invalid).
std::size_t utf8SequenceLength(const std::string& text, std::size_t i)
{
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char c = byte(i);
    if (c < 0x80)
        return 1;
    std::size_t length = 0;
    unsigned int lowest = 0;
    unsigned int cp = 0;
    if ((c & 0xe0) == 0xc0) {
        length = 2;
        cp = c & 0x1f;
        lowest = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        length = 3;
        cp = c & 0x0f;
        lowest = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        length = 4;
        cp = c & 0x07;
        lowest = 0x10000;
    } else {
        return 0;
    }
    if (i + length > text.size())
        return 0;
    for (std::size_t k = 1; k < length; ++k) {
        if ((byte(i + k) & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (byte(i + k) & 0x3f);
    }
    if (cp < lowest || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return length;
}

void checkText(const std::string& text, const std::string& path)
{
    std::size_t line = 1;
    std::size_t lineStart = 0;
    for (std::size_t i = 0; i < text.size();) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == '\n') {
            ++line;
            lineStart = i + 1;
            ++i;
            continue;
        }
        if (c == 0)
            throw Error(path + ":" + std::to_string(line) + ": binary data (a NUL byte at column "
                + std::to_string(i - lineStart + 1) + "); expected UTF-8 text");
        const std::size_t length = utf8SequenceLength(text, i);
        if (length == 0)
            throw Error(path + ":" + std::to_string(line) + ": not UTF-8 text (byte " + hexByte(c)
                + " at column " + std::to_string(i - lineStart + 1) + "); expected UTF-8 text");
        i += length;
    }
}

} // namespace

std::string TextTable::baseName(const std::string& path)
{
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string TextTable::readFile(const std::string& path, const std::string& expected)
{
    struct stat info { };
    if (::stat(path.c_str(), &info) != 0)
        throw Error(path + ": file not found");
    if (S_ISDIR(info.st_mode))
        throw Error(path + ": is a folder; expected a text file");
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(path + ": cannot open the file for reading");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad())
        throw Error(path + ": read error");
    if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xef
        && static_cast<unsigned char>(text[1]) == 0xbb && static_cast<unsigned char>(text[2]) == 0xbf)
        text.erase(0, 3);
    if (text.find_first_not_of(" \t\r\n") == std::string::npos)
        throw Error(path + ": file is empty; expected " + expected);
    checkText(text, path);
    return text;
}

std::vector<TableRow> TextTable::splitTsv(const std::string& text)
{
    std::vector<TableRow> rows;
    std::size_t line = 1;
    std::size_t start = 0;
    auto finish = [&](std::size_t end) {
        if (end > start) {
            TableRow row;
            row.line = line;
            std::size_t fieldStart = start;
            for (std::size_t k = start; k <= end; ++k) {
                if (k == end || text[k] == '\t') {
                    row.fields.emplace_back(text, fieldStart, k - fieldStart);
                    fieldStart = k + 1;
                }
            }
            rows.push_back(std::move(row));
        }
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c != '\n' && c != '\r')
            continue;
        finish(i);
        if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')
            ++i;
        ++line;
        start = i + 1;
    }
    finish(text.size());
    return rows;
}

std::vector<TableRow> TextTable::splitCsv(const std::string& text, const std::string& path, char delimiter)
{
    std::vector<TableRow> rows;
    TableRow row;
    std::string field;
    std::size_t line = 1;
    std::size_t recordLine = 1;
    bool fieldStarted = false; // anything of the current record seen (a delimiter or a character)
    std::size_t i = 0;
    const std::size_t n = text.size();

    auto endField = [&] {
        row.fields.push_back(std::move(field));
        field.clear();
    };
    auto endRecord = [&] {
        if (fieldStarted) {
            endField();
            row.line = recordLine;
            rows.push_back(std::move(row));
        }
        row = TableRow();
        fieldStarted = false;
    };
    // Consumes a line break at i (\r\n, \n or \r); returns false when there is none.
    auto lineBreak = [&]() {
        if (text[i] == '\r') {
            i += (i + 1 < n && text[i + 1] == '\n') ? 2 : 1;
        } else if (text[i] == '\n') {
            i += 1;
        } else {
            return false;
        }
        ++line;
        return true;
    };

    while (i < n) {
        if (!fieldStarted)
            recordLine = line;
        if (field.empty() && text[i] == '"') {
            // A quoted field.
            const std::size_t openLine = line;
            const std::size_t fieldIndex = row.fields.size() + 1;
            fieldStarted = true;
            ++i;
            bool closed = false;
            while (i < n) {
                if (text[i] == '"') {
                    if (i + 1 < n && text[i + 1] == '"') {
                        field.push_back('"');
                        i += 2;
                        continue;
                    }
                    ++i;
                    closed = true;
                    break;
                }
                if (text[i] == '\n' || (text[i] == '\r' && !(i + 1 < n && text[i + 1] == '\n')))
                    ++line;
                field.push_back(text[i]);
                ++i;
            }
            if (!closed)
                throw Error(path + ":" + std::to_string(openLine) + ": field " + std::to_string(fieldIndex)
                    + " opens a quote that is never closed; expected a closing '\"'");
            if (i < n && text[i] != delimiter && text[i] != '\n' && text[i] != '\r')
                throw Error(path + ":" + std::to_string(line) + ": field " + std::to_string(fieldIndex)
                    + " has text after its closing quote; expected '" + std::string(1, delimiter)
                    + "' or the end of the line (write \"\" for a quote inside a quoted field)");
            continue;
        }
        if (text[i] == delimiter) {
            fieldStarted = true;
            endField();
            ++i;
            continue;
        }
        if (lineBreak()) {
            endRecord();
            continue;
        }
        fieldStarted = true;
        field.push_back(text[i]);
        ++i;
    }
    endRecord();
    return rows;
}

} // namespace ladder
