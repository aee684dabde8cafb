// Helpers of the checkpoint-reader tests (test_safetensors, test_torchbin): raw bytes in and out of files,
// and checks on the ladder::Error a bad file must raise.
#pragma once

#include <cstdint>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <set>
#include <string>

#include <QtTest>

#include "model/Safetensors.h"
#include "util/Error.h"

namespace tensor_file_test {

// n as 8 little-endian bytes (safetensors' header length, zip fields).
inline std::string le64(std::uint64_t n)
{
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i)
        s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return s;
}

inline void writeBytes(const std::string& path, const std::string& bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    QVERIFY2(out.good(), path.c_str());
}

inline std::string readBytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs f, which must throw ladder::Error; returns its message, or a text that explains what happened instead.
inline std::string ladderErrorOf(const std::function<void()>& f)
{
    try {
        f();
    } catch (const ladder::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("UNEXPECTED exception type (not ladder::Error): ") + e.what();
    } catch (...) {
        return "UNEXPECTED non-std exception";
    }
    return "NO EXCEPTION";
}

inline bool contains(const std::string& haystack, const std::string& needle)
{
    return haystack.find(needle) != std::string::npos;
}

inline std::set<std::string> keysOf(const ladder::TensorMap& m)
{
    std::set<std::string> keys;
    for (const auto& kv : m)
        keys.insert(kv.first);
    return keys;
}

} // namespace tensor_file_test

// Checks that `message` is a ladder::Error message containing every one of `needles`.
#define VERIFY_ERROR_MESSAGE(message, ...)                                                                   \
    do {                                                                                                     \
        const std::string msg_ = (message);                                                                  \
        QVERIFY2(!tensor_file_test::contains(msg_, "UNEXPECTED") && msg_ != "NO EXCEPTION", msg_.c_str());   \
        for (const std::string& needle_ : std::initializer_list<std::string> { __VA_ARGS__ })                \
            QVERIFY2(                                                                                        \
                tensor_file_test::contains(msg_, needle_), ("'" + needle_ + "' not in: " + msg_).c_str());   \
    } while (0)
