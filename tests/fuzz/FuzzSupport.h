#pragma once

// What the fuzz targets share: the input as a file (the parsers read paths, as the CLI gives them), in
// /dev/shm so that an iteration costs no disk.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include <unistd.h>

namespace ladder::fuzz {

// A path of this process's own under /dev/shm (or /tmp), named after `what`.
inline std::string scratchPath(const std::string& what)
{
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(base) + "/ladder-fuzz-" + std::to_string(getpid()) + "-" + what;
}

inline void writeBytes(const std::string& path, const std::uint8_t* data, std::size_t size)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

inline std::string text(const std::uint8_t* data, std::size_t size)
{
    return std::string(reinterpret_cast<const char*>(data), size);
}

} // namespace ladder::fuzz
