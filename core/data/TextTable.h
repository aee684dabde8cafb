#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ladder {

// One record of a delimited text file: its fields and the 1-based line it starts on.
struct TableRow {
    std::size_t line = 0;
    std::vector<std::string> fields;
};

// Reading and splitting delimited text (TSV, CSV). Every error is a ladder::Error that starts with
// "<path>:" or "<path>:<line>:" and says what was expected.
class TextTable {
public:
    // The whole file as UTF-8 text, a leading UTF-8 byte-order mark removed. Throws when the file is
    // missing or unreadable, empty (nothing but whitespace), holds a NUL byte ("binary data") or is not
    // valid UTF-8; the message names the line. `expected` says what an empty file should have held.
    static std::string readFile(
        const std::string& path, const std::string& expected = "a header line and data rows");

    // TSV without quoting (how GLUE's files must be read, as csv.reader(delimiter='\t', quotechar=None)):
    // lines end at \n, \r\n or a lone \r (Python's universal newlines), a missing final newline is fine,
    // each line is split at every tab, blank lines are skipped.
    static std::vector<TableRow> splitTsv(const std::string& text);

    // RFC 4180: fields separated by `delimiter`, records by \r\n, \n or \r; a field that starts with '"'
    // is quoted: it may hold delimiters and newlines, and "" stands for one '"'. A '"' inside an unquoted
    // field is kept as is (as Python's csv module does). Blank lines are skipped. Throws for a quoted
    // field that is never closed or text after a closing quote; `path` names the file in the message.
    static std::vector<TableRow> splitCsv(
        const std::string& text, const std::string& path, char delimiter = ',');

    // The file name without its folders, for compact messages.
    static std::string baseName(const std::string& path);
};

} // namespace ladder
