#pragma once

#include <cstdint>
#include <string>

namespace ladder {

// A file's size and SHA-256, how the store recognises a checkpoint it recorded (docs/STORE.md, "Files").
struct FileDigest {
    std::string sha256; // 64 lower-case hex digits
    std::int64_t bytes = 0;
};

// Reads `path` whole (in 1 MiB pieces) and hashes it with OpenSSL's SHA-256. Throws Error naming the file
// when it cannot be read.
FileDigest hashFile(const std::string& path);

// The SHA-256 of `bytes` as 64 lower-case hex digits.
std::string sha256Hex(const std::string& bytes);

} // namespace ladder
