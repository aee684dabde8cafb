#pragma once

// Helpers shared by the checkpoint readers and writers of core/model (Safetensors.cpp, TorchBin.cpp): error
// messages that name the file, and text from a hostile file made safe to show in them. Private to
// core/model: no public header includes it.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>
#include <system_error>

#include <c10/util/Exception.h>

#include "util/Error.h"
#include "util/Text.h"

namespace ladder::tensor_file_detail {

// Names taken from a file are cut to this length in messages.
inline constexpr std::size_t kMaxNameInMessage = 200;

using ladder::printable; // util/Text.h

inline std::string shortName(const std::string& name)
{
    return printable(name, true, kMaxNameInMessage);
}

// The first line of an exception message: c10::Error messages carry a C++ backtrace after it.
inline std::string firstLine(const std::exception& e)
{
    std::string msg;
    if (const auto* c10e = dynamic_cast<const c10::Error*>(&e))
        msg = c10e->what_without_backtrace();
    else
        msg = e.what();
    const auto nl = msg.find('\n');
    if (nl != std::string::npos)
        msg.erase(nl);
    return msg;
}

[[noreturn]] inline void fail(const std::string& path, const std::string& reason)
{
    throw Error(path + ": " + reason);
}

[[noreturn]] inline void failTensor(
    const std::string& path, const std::string& name, const std::string& reason)
{
    throw Error(path + ": tensor " + shortName(name) + ": " + reason);
}

// The size of the regular file at `path`; fails naming the file when it is missing or not a regular file.
inline std::uint64_t regularFileSize(const std::string& path)
{
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status))
        fail(path, "cannot open file: " + (ec ? ec.message() : std::string("no such file")));
    if (!std::filesystem::is_regular_file(status))
        fail(path, "not a regular file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec)
        fail(path, "cannot read the file size: " + ec.message());
    return size;
}

} // namespace ladder::tensor_file_detail
