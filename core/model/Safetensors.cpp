#include "model/Safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fcntl.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "model/TensorFileDetail.h"
#include "util/Json.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "Safetensors.cpp assumes a little-endian host (the format stores little-endian data)"
#endif

namespace ladder {
namespace {

using tensor_file_detail::fail;
using tensor_file_detail::failTensor;
using tensor_file_detail::firstLine;
using tensor_file_detail::printable;
using tensor_file_detail::regularFileSize;
using tensor_file_detail::shortName;

// A real safetensors header nests three levels deep ({name: {"shape": [..]}}). Anything much deeper is
// hostile; rejecting it before parsing keeps a 100 MB "[[[[..." from exhausting memory or the stack.
constexpr std::size_t kMaxHeaderNesting = 16;
constexpr std::size_t kHeaderLengthBytes = 8;
constexpr std::size_t kHeaderAlignment = 8;

struct DtypeInfo {
    const char* name;
    at::ScalarType type;
    std::size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    { "F64", at::kDouble, 8 },
    { "F32", at::kFloat, 4 },
    { "F16", at::kHalf, 2 },
    { "BF16", at::kBFloat16, 2 },
    { "I64", at::kLong, 8 },
    { "I32", at::kInt, 4 },
    { "I16", at::kShort, 2 },
    { "I8", at::kChar, 1 },
    { "U8", at::kByte, 1 },
    { "BOOL", at::kBool, 1 },
};

const DtypeInfo* dtypeByName(const std::string& name)
{
    for (const auto& d : kDtypes)
        if (name == d.name)
            return &d;
    return nullptr;
}

const DtypeInfo* dtypeByType(at::ScalarType type)
{
    for (const auto& d : kDtypes)
        if (type == d.type)
            return &d;
    return nullptr;
}

std::string supportedDtypes()
{
    std::string s;
    for (const auto& d : kDtypes)
        s += (s.empty() ? "" : ", ") + std::string(d.name);
    return s;
}

std::string shapeString(const std::vector<std::int64_t>& shape)
{
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

std::string spanString(std::uint64_t begin, std::uint64_t end)
{
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// Deepest nesting of [ and { outside strings.
struct ParsedEntry {
    std::string name;
    const DtypeInfo* dtype = nullptr;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
};

struct ParsedHeader {
    std::uint64_t dataStart = 0; // absolute file offset of the data section
    std::uint64_t dataSize = 0;
    std::vector<ParsedEntry> entries; // sorted by data offset
    std::map<std::string, std::string> metadata;
};

void readExactly(std::ifstream& in, const std::string& path, std::uint64_t offset, char* dst, std::uint64_t n,
    const char* what)
{
    in.clear();
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(dst, static_cast<std::streamsize>(n));
    if (!in || static_cast<std::uint64_t>(in.gcount()) != n)
        fail(path, std::string("file ended early or could not be read while reading ") + what);
}

ParsedEntry parseEntry(
    const std::string& path, const std::string& name, const nlohmann::json& v, std::uint64_t dataSize)
{
    ParsedEntry e;
    e.name = name;
    if (!v.is_object())
        failTensor(path, name, "entry is a JSON " + std::string(v.type_name()) + ", expected an object");

    const auto dtype = v.find("dtype");
    if (dtype == v.end())
        failTensor(path, name, "missing \"dtype\"");
    if (!dtype->is_string())
        failTensor(path, name, "\"dtype\" is not a string");
    e.dtype = dtypeByName(dtype->get_ref<const std::string&>());
    if (!e.dtype)
        failTensor(path, name,
            "unknown or unsupported dtype \"" + shortName(dtype->get_ref<const std::string&>())
                + "\" (supported: " + supportedDtypes() + ")");

    const auto shape = v.find("shape");
    if (shape == v.end())
        failTensor(path, name, "missing \"shape\"");
    if (!shape->is_array())
        failTensor(path, name, "\"shape\" is not an array");
    std::uint64_t numel = 1;
    for (const auto& dim : *shape) {
        if (!dim.is_number_integer())
            failTensor(
                path, name, "shape " + shortName(shape->dump()) + " has a dimension that is not an integer");
        if (!dim.is_number_unsigned())
            failTensor(path, name, "shape " + shortName(shape->dump()) + " has a negative dimension");
        const auto d = dim.get<std::uint64_t>();
        if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
            || __builtin_mul_overflow(numel, d, &numel))
            failTensor(path, name, "shape " + shortName(shape->dump()) + " overflows: too many elements");
        e.shape.push_back(static_cast<std::int64_t>(d));
    }
    std::uint64_t needed = 0;
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(e.dtype->size), &needed))
        failTensor(path, name, "shape " + shapeString(e.shape) + " overflows: too many bytes");

    const auto offsets = v.find("data_offsets");
    if (offsets == v.end())
        failTensor(path, name, "missing \"data_offsets\"");
    if (!offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned()
        || !(*offsets)[1].is_number_unsigned())
        failTensor(path, name,
            "\"data_offsets\" " + shortName(offsets->dump()) + " is not two non-negative integers");
    e.begin = (*offsets)[0].get<std::uint64_t>();
    e.end = (*offsets)[1].get<std::uint64_t>();
    if (e.begin > e.end)
        failTensor(path, name, "data_offsets " + spanString(e.begin, e.end) + ": begin is after end");
    if (e.end > dataSize)
        failTensor(path, name,
            "data_offsets " + spanString(e.begin, e.end) + " reach beyond the data section ("
                + std::to_string(dataSize) + " bytes; is the file truncated?)");
    if (e.end - e.begin != needed)
        failTensor(path, name,
            "data_offsets " + spanString(e.begin, e.end) + " span " + std::to_string(e.end - e.begin)
                + " bytes but shape " + shapeString(e.shape) + " of " + e.dtype->name + " needs "
                + std::to_string(needed));
    return e;
}

ParsedHeader parseHeader(const std::string& path, std::ifstream& in, const SafetensorsLimits& limits)
{
    const std::uint64_t fileSize = regularFileSize(path);
    in.open(path, std::ios::binary);
    if (!in)
        fail(path, "cannot open file: " + std::string(std::strerror(errno)));
    if (fileSize < kHeaderLengthBytes)
        fail(path, "file is " + std::to_string(fileSize) + " bytes, too short for the 8-byte header length");

    unsigned char lengthBytes[kHeaderLengthBytes];
    readExactly(in, path, 0, reinterpret_cast<char*>(lengthBytes), kHeaderLengthBytes, "the header length");
    std::uint64_t headerSize = 0;
    for (std::size_t i = 0; i < kHeaderLengthBytes; ++i)
        headerSize |= static_cast<std::uint64_t>(lengthBytes[i]) << (8 * i);
    if (headerSize > limits.maxHeaderBytes)
        fail(path,
            "header length " + std::to_string(headerSize) + " exceeds the limit of "
                + std::to_string(limits.maxHeaderBytes) + " bytes");
    if (headerSize > fileSize - kHeaderLengthBytes)
        fail(path,
            "header length " + std::to_string(headerSize) + " exceeds the file size ("
                + std::to_string(fileSize) + " bytes)");

    std::string text(headerSize, '\0');
    readExactly(in, path, kHeaderLengthBytes, text.data(), headerSize, "the header");
    if (jsonNesting(text) > kMaxHeaderNesting)
        fail(path,
            "header is not a safetensors header: JSON nested deeper than " + std::to_string(kMaxHeaderNesting)
                + " levels");
    nlohmann::json root;
    try {
        root = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail(path, "header is not valid JSON: " + printable(e.what(), /*keepUtf8=*/false));
    }
    if (!root.is_object())
        fail(path, "header is a JSON " + std::string(root.type_name()) + ", expected an object");

    ParsedHeader header;
    header.dataStart = kHeaderLengthBytes + headerSize;
    header.dataSize = fileSize - header.dataStart;
    for (auto it = root.begin(); it != root.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it->is_object())
                fail(path, "\"__metadata__\" is not a JSON object");
            for (auto m = it->begin(); m != it->end(); ++m) {
                if (!m->is_string())
                    fail(path, "\"__metadata__\" entry " + shortName(m.key()) + " is not a string");
                header.metadata[m.key()] = m->get<std::string>();
            }
            continue;
        }
        header.entries.push_back(parseEntry(path, it.key(), *it, header.dataSize));
    }

    // No two tensors may share bytes. Empty spans hold no bytes and cannot overlap anything.
    std::sort(header.entries.begin(), header.entries.end(), [](const ParsedEntry& a, const ParsedEntry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const ParsedEntry* reach = nullptr; // the non-empty span seen so far that reaches furthest
    for (const auto& e : header.entries) {
        if (e.begin == e.end)
            continue;
        if (reach && e.begin < reach->end)
            failTensor(path, e.name,
                "data_offsets " + spanString(e.begin, e.end) + " overlap tensor " + shortName(reach->name)
                    + " " + spanString(reach->begin, reach->end));
        if (!reach || e.end > reach->end)
            reach = &e;
    }
    return header;
}

// Writes all of [data, data + n) to fd, or throws.
void writeAll(int fd, const std::string& path, const char* data, std::uint64_t n)
{
    while (n > 0) {
        const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, 1u << 30));
        const ssize_t written = ::write(fd, data, chunk);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            fail(path, "write failed: " + std::string(std::strerror(errno)));
        }
        data += written;
        n -= static_cast<std::uint64_t>(written);
    }
}

// Removes the temporary file unless the write completed.
class TempFileGuard {
public:
    explicit TempFileGuard(std::string path)
        : m_path(std::move(path))
    {
    }
    ~TempFileGuard()
    {
        if (m_fd >= 0)
            ::close(m_fd);
        if (!m_committed) {
            std::error_code ec;
            std::filesystem::remove(m_path, ec);
        }
    }
    TempFileGuard(const TempFileGuard&) = delete;
    TempFileGuard& operator=(const TempFileGuard&) = delete;

    int m_fd = -1;
    bool m_committed = false;

private:
    std::string m_path;
};

} // namespace

std::map<std::string, SafetensorsEntry> readSafetensorsHeader(
    const std::string& path, const SafetensorsLimits& limits)
{
    std::ifstream in;
    const ParsedHeader header = parseHeader(path, in, limits);
    std::map<std::string, SafetensorsEntry> result;
    for (const auto& e : header.entries)
        result[e.name] = SafetensorsEntry { e.dtype->name, e.shape };
    return result;
}

std::map<std::string, std::string> readSafetensorsMetadata(
    const std::string& path, const SafetensorsLimits& limits)
{
    std::ifstream in;
    return parseHeader(path, in, limits).metadata;
}

TensorMap readSafetensors(const std::string& path, const SafetensorsLimits& limits)
{
    std::ifstream in;
    const ParsedHeader header = parseHeader(path, in, limits);
    TensorMap result;
    for (const auto& e : header.entries) {
        at::Tensor t;
        try {
            t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type).device(at::kCPU));
        } catch (const std::exception& ex) {
            failTensor(path, e.name,
                "cannot allocate " + std::to_string(e.end - e.begin) + " bytes: " + firstLine(ex));
        }
        const std::uint64_t n = e.end - e.begin;
        if (n > 0) {
            auto* dst = static_cast<char*>(t.data_ptr());
            readExactly(
                in, path, header.dataStart + e.begin, dst, n, ("tensor " + shortName(e.name)).c_str());
            if (e.dtype->type == at::kBool) {
                // Any byte other than 0 or 1 is not a valid C++ bool: normalise instead of trusting the file.
                auto* bytes = reinterpret_cast<unsigned char*>(dst);
                for (std::uint64_t i = 0; i < n; ++i)
                    bytes[i] = bytes[i] != 0 ? 1 : 0;
            }
        }
        result.emplace(e.name, std::move(t));
    }
    return result;
}

void writeSafetensors(
    const std::string& path, const TensorMap& tensors, const std::map<std::string, std::string>& metadata)
{
    struct Item {
        const std::string* name;
        const at::Tensor* tensor;
        const DtypeInfo* dtype;
    };
    std::vector<Item> items;
    for (const auto& [name, t] : tensors) {
        if (name == "__metadata__")
            failTensor(path, name, "the name is reserved for the metadata");
        if (!t.defined())
            failTensor(path, name, "undefined tensor");
        const auto* dtype = dtypeByType(t.scalar_type());
        if (!dtype)
            failTensor(path, name,
                std::string("dtype ") + c10::toString(t.scalar_type())
                    + " cannot be written (supported: " + supportedDtypes() + ")");
        items.push_back({ &name, &t, dtype });
    }
    // Largest elements first (as the reference implementation does), so every tensor starts at a
    // multiple of its element size: the header is padded to 8 bytes.
    std::stable_sort(items.begin(), items.end(),
        [](const Item& a, const Item& b) { return a.dtype->size > b.dtype->size; });

    std::string headerText;
    try {
        nlohmann::ordered_json header = nlohmann::ordered_json::object();
        if (!metadata.empty())
            header["__metadata__"] = metadata;
        std::uint64_t offset = 0;
        for (const auto& item : items) {
            const std::uint64_t bytes = static_cast<std::uint64_t>(item.tensor->numel()) * item.dtype->size;
            header[*item.name] = { { "dtype", item.dtype->name }, { "shape", item.tensor->sizes().vec() },
                { "data_offsets", { offset, offset + bytes } } };
            offset += bytes;
        }
        headerText = header.dump();
    } catch (const nlohmann::json::exception& e) {
        fail(path, std::string("cannot encode the header (names and metadata must be UTF-8): ") + e.what());
    }
    headerText.append((kHeaderAlignment - headerText.size() % kHeaderAlignment) % kHeaderAlignment, ' ');

    const std::string tmp = path + ".tmp";
    TempFileGuard guard(tmp);
    guard.m_fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (guard.m_fd < 0)
        fail(path, "cannot create " + tmp + ": " + std::strerror(errno));

    unsigned char lengthBytes[kHeaderLengthBytes];
    for (std::size_t i = 0; i < kHeaderLengthBytes; ++i)
        lengthBytes[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(headerText.size()) >> (8 * i));
    writeAll(guard.m_fd, path, reinterpret_cast<const char*>(lengthBytes), kHeaderLengthBytes);
    writeAll(guard.m_fd, path, headerText.data(), headerText.size());
    for (const auto& item : items) {
        if (item.tensor->numel() == 0)
            continue;
        at::Tensor cpu;
        try {
            cpu = item.tensor->detach().to(at::kCPU).contiguous();
        } catch (const std::exception& e) {
            failTensor(path, *item.name, "cannot copy to the CPU: " + firstLine(e));
        }
        writeAll(guard.m_fd, path, static_cast<const char*>(cpu.const_data_ptr()), cpu.nbytes());
    }
    if (::fsync(guard.m_fd) != 0)
        fail(path, "fsync failed: " + std::string(std::strerror(errno)));
    const int fd = guard.m_fd;
    guard.m_fd = -1;
    if (::close(fd) != 0)
        fail(path, "close failed: " + std::string(std::strerror(errno)));

    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec)
        fail(path, "cannot rename " + tmp + " to it: " + ec.message());
    guard.m_committed = true;
}

} // namespace ladder
