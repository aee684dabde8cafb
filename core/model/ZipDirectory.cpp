#include "model/ZipDirectory.h"

#include <algorithm>
#include <fstream>
#include <vector>

#include "util/Error.h"
#include "util/Text.h"

namespace ladder {
namespace {

constexpr std::uint32_t kEndOfDirectory = 0x06054b50;
constexpr std::uint32_t kZip64Locator = 0x07064b50;
constexpr std::uint32_t kZip64EndOfDirectory = 0x06064b50;
constexpr std::uint32_t kDirectoryEntry = 0x02014b50;
constexpr std::uint64_t kMaxDeflateRatio = 1032;
constexpr std::uint64_t kMaxDirectoryBytes = 64ull << 20;

std::uint64_t le(const unsigned char* p, int bytes)
{
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i)
        v = (v << 8) | p[i];
    return v;
}

class Reader {
public:
    Reader(const std::string& path, std::uint64_t size)
        : m_path(path)
        , m_in(path, std::ios::binary)
        , m_size(size)
    {
        if (!m_in)
            fail("cannot open the file");
    }
    std::vector<unsigned char> read(std::uint64_t offset, std::uint64_t bytes)
    {
        if (offset > m_size || bytes > m_size - offset)
            fail("the zip directory points outside the file");
        std::vector<unsigned char> out(static_cast<std::size_t>(bytes));
        m_in.seekg(static_cast<std::streamoff>(offset));
        m_in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(bytes));
        if (!m_in)
            fail("cannot read the zip directory");
        return out;
    }
    [[noreturn]] void fail(const std::string& why) const
    {
        throw Error(m_path + ": not a PyTorch checkpoint: " + why);
    }

private:
    std::string m_path;
    std::ifstream m_in;
    std::uint64_t m_size;
};

} // namespace

void checkZipDirectory(const std::string& path, std::uint64_t fileSize)
{
    Reader file(path, fileSize);
    // The end-of-directory record: 22 bytes and a comment of up to 65,535, at the end of the file.
    const std::uint64_t tailBytes = std::min<std::uint64_t>(fileSize, 22 + 65535);
    const auto tail = file.read(fileSize - tailBytes, tailBytes);
    std::int64_t end = -1;
    for (std::int64_t i = static_cast<std::int64_t>(tail.size()) - 22; i >= 0; --i)
        if (le(&tail[static_cast<std::size_t>(i)], 4) == kEndOfDirectory) {
            end = i;
            break;
        }
    if (end < 0)
        file.fail("no zip end-of-directory record");
    const unsigned char* e = &tail[static_cast<std::size_t>(end)];
    std::uint64_t entries = le(e + 10, 2), dirSize = le(e + 12, 4), dirOffset = le(e + 16, 4);
    const std::uint64_t endOffset = fileSize - tailBytes + static_cast<std::uint64_t>(end);
    // ZIP64: a locator right before the end record points at the ZIP64 end record. LibTorch's reader (miniz)
    // follows a locator whenever one is there, whatever the classic fields say, and so does this check: a
    // classic record of 0 entries once hid a ZIP64 directory whose record claimed 4 GB (fuzz_torchbin).
    const auto locator = endOffset >= 20 ? file.read(endOffset - 20, 20) : std::vector<unsigned char> {};
    const bool hasLocator = !locator.empty() && le(locator.data(), 4) == kZip64Locator;
    if (hasLocator || entries == 0xffff || dirSize == 0xffffffffu || dirOffset == 0xffffffffu) {
        if (!hasLocator)
            file.fail("a ZIP64 archive without its locator");
        const auto record = file.read(le(locator.data() + 8, 8), 56);
        if (le(record.data(), 4) != kZip64EndOfDirectory)
            file.fail("the ZIP64 locator points at no ZIP64 end record");
        entries = le(record.data() + 32, 8);
        dirSize = le(record.data() + 40, 8);
        dirOffset = le(record.data() + 48, 8);
    }
    if (dirSize > kMaxDirectoryBytes || entries > dirSize / 46)
        file.fail("a zip directory of " + std::to_string(entries) + " records in " + std::to_string(dirSize)
            + " bytes");
    const auto dir = file.read(dirOffset, dirSize);
    std::uint64_t at = 0;
    for (std::uint64_t n = 0; n < entries; ++n) {
        if (at + 46 > dir.size() || le(&dir[at], 4) != kDirectoryEntry)
            file.fail("zip directory record " + std::to_string(n) + " is damaged");
        const unsigned char* h = &dir[at];
        const std::uint64_t method = le(h + 10, 2), nameLen = le(h + 28, 2), extraLen = le(h + 30, 2),
                            commentLen = le(h + 32, 2);
        std::uint64_t stored = le(h + 20, 4), size = le(h + 24, 4), local = le(h + 42, 4);
        if (at + 46 + nameLen + extraLen + commentLen > dir.size())
            file.fail("zip directory record " + std::to_string(n) + " is damaged");
        const std::string name(reinterpret_cast<const char*>(h + 46), static_cast<std::size_t>(nameLen));
        // ZIP64 extra field (id 1): the 64-bit values of the fields that hold 0xffffffff, in this order.
        for (std::uint64_t x = 0; x + 4 <= extraLen;) {
            const unsigned char* f = h + 46 + nameLen + x;
            const std::uint64_t id = le(f, 2), len = le(f + 2, 2);
            if (x + 4 + len > extraLen)
                break;
            if (id == 1) {
                std::uint64_t k = 0;
                for (std::uint64_t* v : { &size, &stored, &local })
                    if (*v == 0xffffffffu && k + 8 <= len) {
                        *v = le(f + 4 + k, 8);
                        k += 8;
                    }
            }
            x += 4 + len;
        }
        const std::string record = "zip record '" + printable(name, false, 200) + "'";
        if (method != 0 && method != 8)
            file.fail(record + " uses compression method " + std::to_string(method)
                + " (expected stored or deflate)");
        if (local > fileSize || stored > fileSize - local)
            file.fail(record + " claims " + std::to_string(stored) + " bytes at offset "
                + std::to_string(local) + ", outside the file of " + std::to_string(fileSize) + " bytes");
        if ((method == 0 && size != stored) || (method == 8 && size / kMaxDeflateRatio > stored))
            file.fail(record + " claims " + std::to_string(size) + " bytes from " + std::to_string(stored)
                + " stored bytes");
        at += 46 + nameLen + extraLen + commentLen;
    }
}

} // namespace ladder
