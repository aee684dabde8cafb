#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "store/StoreTypes.h"

namespace ladder {

// One CSV field as RFC 4180 wants it: enclosed in double quotes, with inner quotes doubled, when it holds
// a comma, a double quote, CR or LF, or starts or ends with a space; otherwise unchanged.
std::string csvField(const std::string& value);

// The column names of writeRunsCsv(), in order: every column of the runs table (spec_json last) plus
// trainable_percent. docs/STORE.md describes them.
const std::vector<std::string>& runsCsvColumns();

// Writes a header line and one line per run; fields separated by commas, lines ended by CRLF
// (RFC 4180), NULL as an empty field, numbers in the shortest form that reads back exactly.
void writeRunsCsv(std::ostream& out, const std::vector<RunRecord>& runs);

} // namespace ladder
