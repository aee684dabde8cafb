#include "model/Safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <unordered_map>

#include <fcntl.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>
#include <nlohmann/json.hpp>

#include "util/Error.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "Safetensors.cpp assumes a little-endian host (the format stores little-endian data)"
#endif

namespace ladder {
namespace {

// A real safetensors header nests three levels deep ({name: {"shape": [..]}}). Anything much deeper is
// hostile; rejecting it before parsing keeps a 100 MB "[[[[..." from exhausting memory or the stack.
constexpr std::size_t kMaxHeaderNesting = 16;
// Names taken from a file are cut to this length in messages.
constexpr std::size_t kMaxNameInMessage = 200;
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

// Text taken from a hostile file, made safe to show: control characters (and, unless keepUtf8, every
// non-ASCII byte) become '?', and long text is cut.
std::string printable(
    const std::string& text, bool keepUtf8 = true, std::size_t maxLength = std::string::npos)
{
    std::string s = text.substr(0, maxLength);
    for (auto& c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || (!keepUtf8 && u >= 0x80))
            c = '?';
    }
    return s.size() < text.size() ? s + "..." : s;
}

std::string shortName(const std::string& name)
{
    return printable(name, true, kMaxNameInMessage);
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

// The first line of an exception message: c10::Error messages carry a C++ backtrace after it.
std::string firstLine(const std::exception& e)
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

[[noreturn]] void fail(const std::string& path, const std::string& reason)
{
    throw Error(path + ": " + reason);
}

[[noreturn]] void failTensor(const std::string& path, const std::string& name, const std::string& reason)
{
    throw Error(path + ": tensor " + shortName(name) + ": " + reason);
}

// Deepest nesting of [ and { outside strings.
std::size_t jsonNesting(const std::string& text)
{
    std::size_t depth = 0, deepest = 0;
    bool inString = false, escaped = false;
    for (const char c : text) {
        if (inString) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                inString = false;
        } else if (c == '"') {
            inString = true;
        } else if (c == '{' || c == '[') {
            deepest = std::max(deepest, ++depth);
        } else if ((c == '}' || c == ']') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

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

std::uint64_t regularFileSize(const std::string& path)
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

// ---------------------------------------------------------------------------------------------------
// readTorchBin: PyTorch's zip container is read with LibTorch's PyTorchStreamReader; its data.pkl is
// read by the small unpickler below rather than LibTorch's own, because LibTorch's (a) cannot load the
// most common HF layout, `torch.save(model.state_dict())`, an OrderedDict carrying a `_metadata`
// attribute (it turns OrderedDict into None), and (b) trusts the file: it resizes its memo table to any
// index the file names (up to 64 GiB), reads past its stack on a DICT with an odd item count, and builds
// storages of the size the pickle claims whatever the record holds. This one accepts only what a state
// dict needs, checks every index and size, and allocates in proportion to the file.

constexpr std::uint64_t kMaxPickleBytes = 256ull << 20;
constexpr std::size_t kMaxPickleValues = 1u << 20; // a state dict needs under 20 per tensor
constexpr std::size_t kMaxTensorDims = 64;
constexpr std::size_t kMaxGlobalNameBytes = 256;

struct PickleValue {
    enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor };
    Kind kind = Kind::None;
    std::int64_t integer = 0; // Bool, Int
    double real = 0; // Float
    std::string text; // String; Global: "module.name"; Storage: its key
    std::vector<PickleValue*> items; // Tuple, List; Dict: key0, value0, key1, value1, ...
    std::unordered_map<std::string, std::size_t> keyIndex; // Dict: string key -> position of the key
    at::ScalarType dtype = at::kByte; // Storage
    at::Storage storage; // Storage
    at::Tensor tensor; // Tensor
};

const char* kindName(PickleValue::Kind kind)
{
    static const char* const names[]
        = { "None", "bool", "int", "float", "str", "tuple", "list", "dict", "global", "storage", "tensor" };
    return names[static_cast<int>(kind)];
}

// torch.<Name>Storage -> dtype, as torch.save writes them.
std::optional<at::ScalarType> storageDtype(const std::string& global)
{
    static const std::map<std::string, at::ScalarType> types = { { "torch.DoubleStorage", at::kDouble },
        { "torch.FloatStorage", at::kFloat }, { "torch.HalfStorage", at::kHalf },
        { "torch.BFloat16Storage", at::kBFloat16 }, { "torch.LongStorage", at::kLong },
        { "torch.IntStorage", at::kInt }, { "torch.ShortStorage", at::kShort },
        { "torch.CharStorage", at::kChar }, { "torch.ByteStorage", at::kByte },
        { "torch.BoolStorage", at::kBool }, { "torch.UntypedStorage", at::kByte } };
    const auto it = types.find(global);
    if (it == types.end())
        return std::nullopt;
    return it->second;
}

class StateDictUnpickler {
public:
    StateDictUnpickler(const std::string& path, std::string pickle,
        caffe2::serialize::PyTorchStreamReader& reader, std::uint64_t fileSize)
        : m_path(path)
        , m_pickle(std::move(pickle))
        , m_reader(reader)
        , m_fileSize(fileSize)
    {
        m_none = make(PickleValue::Kind::None);
        m_true = make(PickleValue::Kind::Bool);
        m_true->integer = 1;
        m_false = make(PickleValue::Kind::Bool);
    }

    // Runs the pickle program; the returned value lives as long as this object.
    PickleValue* run()
    {
        if (byte() != kProto)
            fail("does not start with a pickle PROTO opcode");
        const int protocol = byte();
        if (protocol < 2 || protocol > 5)
            fail("unsupported pickle protocol " + std::to_string(protocol));
        for (;;) {
            m_opcodeAt = m_pos;
            const std::uint8_t op = byte();
            switch (op) {
            case kStop:
                if (m_stack.size() != 1 || !m_marks.empty())
                    fail("STOP with " + std::to_string(m_stack.size()) + " values on the stack");
                return m_stack.back();
            case kFrame:
                take(8);
                break; // protocol 4 framing: only a length hint
            case kMark:
                m_marks.push_back(m_stack.size());
                break;
            case kPop:
                if (!m_marks.empty() && m_marks.back() == m_stack.size())
                    m_marks.pop_back();
                else
                    pop();
                break;
            case kPopMark:
                m_stack.resize(popMark());
                break;
            case kDup:
                push(top());
                break;
            case kNone:
                push(m_none);
                break;
            case kNewTrue:
                push(m_true);
                break;
            case kNewFalse:
                push(m_false);
                break;
            case kBinInt:
                pushInt(static_cast<std::int32_t>(readLE(4)));
                break;
            case kBinInt1:
                pushInt(static_cast<std::int64_t>(readLE(1)));
                break;
            case kBinInt2:
                pushInt(static_cast<std::int64_t>(readLE(2)));
                break;
            case kLong1:
                pushLong(readLE(1));
                break;
            case kLong4:
                pushLong(readLE(4));
                break;
            case kBinFloat: {
                const std::uint64_t bits = readBE8();
                auto* v = make(PickleValue::Kind::Float);
                std::memcpy(&v->real, &bits, sizeof bits);
                push(v);
            } break;
            case kShortBinUnicode:
            case kShortBinString:
            case kShortBinBytes:
                pushString(readLE(1));
                break;
            case kBinUnicode:
            case kBinBytes:
                pushString(readLE(4));
                break;
            case kBinString: {
                const auto n = static_cast<std::int32_t>(readLE(4));
                if (n < 0)
                    fail("negative string length");
                pushString(static_cast<std::uint64_t>(n));
            } break;
            case kBinUnicode8:
            case kBinBytes8:
                pushString(readLE(8));
                break;
            case kEmptyTuple:
                push(make(PickleValue::Kind::Tuple));
                break;
            case kTuple: {
                const std::size_t start = popMark();
                auto* t = make(PickleValue::Kind::Tuple);
                t->items.assign(m_stack.begin() + static_cast<std::ptrdiff_t>(start), m_stack.end());
                m_stack.resize(start);
                push(t);
            } break;
            case kTuple1:
            case kTuple2:
            case kTuple3: {
                const std::size_t n = op - kTuple1 + 1;
                if (m_stack.size() < stackBase() + n)
                    fail("stack underflow");
                auto* t = make(PickleValue::Kind::Tuple);
                t->items.assign(m_stack.end() - static_cast<std::ptrdiff_t>(n), m_stack.end());
                m_stack.resize(m_stack.size() - n);
                push(t);
            } break;
            case kEmptyList:
                push(make(PickleValue::Kind::List));
                break;
            case kList: {
                const std::size_t start = popMark();
                auto* l = make(PickleValue::Kind::List);
                l->items.assign(m_stack.begin() + static_cast<std::ptrdiff_t>(start), m_stack.end());
                m_stack.resize(start);
                push(l);
            } break;
            case kAppend: {
                PickleValue* v = pop();
                expect(top(), PickleValue::Kind::List, "APPEND target")->items.push_back(v);
            } break;
            case kAppends: {
                const std::size_t start = popMark();
                if (start <= stackBase())
                    fail("APPENDS without a list");
                auto* l = expect(m_stack[start - 1], PickleValue::Kind::List, "APPENDS target");
                l->items.insert(
                    l->items.end(), m_stack.begin() + static_cast<std::ptrdiff_t>(start), m_stack.end());
                m_stack.resize(start);
            } break;
            case kEmptyDict:
                push(make(PickleValue::Kind::Dict));
                break;
            case kDict: {
                const std::size_t start = popMark();
                auto* d = make(PickleValue::Kind::Dict);
                setItems(d, start);
                push(d);
            } break;
            case kSetItem: {
                PickleValue* value = pop();
                PickleValue* key = pop();
                dictSet(expect(top(), PickleValue::Kind::Dict, "SETITEM target"), key, value);
            } break;
            case kSetItems: {
                const std::size_t start = popMark();
                if (start <= stackBase())
                    fail("SETITEMS without a dict");
                setItems(expect(m_stack[start - 1], PickleValue::Kind::Dict, "SETITEMS target"), start);
            } break;
            case kBinGet:
                push(memoGet(readLE(1)));
                break;
            case kLongBinGet:
                push(memoGet(readLE(4)));
                break;
            case kBinPut:
                m_memo[readLE(1)] = top();
                break;
            case kLongBinPut:
                m_memo[readLE(4)] = top();
                break;
            case kMemoize:
                m_memo[m_memo.size()] = top();
                break;
            case kGlobal: {
                const std::string module = line();
                const std::string name = line();
                pushGlobal(module + "." + name);
            } break;
            case kStackGlobal: {
                PickleValue* name = expect(pop(), PickleValue::Kind::String, "STACK_GLOBAL name");
                PickleValue* module = expect(pop(), PickleValue::Kind::String, "STACK_GLOBAL module");
                pushGlobal(module->text + "." + name->text);
            } break;
            case kReduce:
            case kNewObj: {
                PickleValue* args = pop();
                PickleValue* callable = pop();
                push(call(callable, args));
            } break;
            case kNewObjEx: {
                PickleValue* kwargs = expect(pop(), PickleValue::Kind::Dict, "NEWOBJ_EX keyword arguments");
                if (!kwargs->items.empty())
                    fail("NEWOBJ_EX with keyword arguments");
                PickleValue* args = pop();
                PickleValue* callable = pop();
                push(call(callable, args));
            } break;
            case kBuild:
                // obj.__setstate__(state): the only states a state dict carries are the OrderedDict's
                // `_metadata` and Parameter attributes, neither of which a TensorMap keeps.
                pop();
                top();
                break;
            case kBinPersId:
                push(persistentLoad(pop()));
                break;
            default: {
                char hex[8];
                std::snprintf(hex, sizeof hex, "0x%02x", op);
                fail(std::string("unsupported pickle opcode ") + hex);
            }
            }
        }
    }

private:
    // Pickle opcodes (Python's Lib/pickle.py), the subset a state dict uses.
    // clang-format off
    enum : std::uint8_t {
        kMark = '(', kStop = '.', kPop = '0', kPopMark = '1', kDup = '2', kBinFloat = 'G', kBinInt = 'J',
        kBinInt1 = 'K', kBinInt2 = 'M', kNone = 'N', kBinPersId = 'Q', kReduce = 'R', kBinString = 'T',
        kShortBinString = 'U', kBinUnicode = 'X', kEmptyList = ']', kAppend = 'a', kBuild = 'b', kGlobal = 'c',
        kDict = 'd', kAppends = 'e', kBinGet = 'h', kLongBinGet = 'j', kList = 'l', kBinPut = 'q',
        kLongBinPut = 'r', kSetItem = 's', kTuple = 't', kEmptyTuple = ')', kSetItems = 'u', kEmptyDict = '}',
        kBinBytes = 'B', kShortBinBytes = 'C', kProto = 0x80, kNewObj = 0x81, kTuple1 = 0x85, kTuple2 = 0x86,
        kTuple3 = 0x87, kNewTrue = 0x88, kNewFalse = 0x89, kLong1 = 0x8a, kLong4 = 0x8b, kShortBinUnicode = 0x8c,
        kBinUnicode8 = 0x8d, kBinBytes8 = 0x8e, kNewObjEx = 0x92, kStackGlobal = 0x93, kMemoize = 0x94,
        kFrame = 0x95,
    };
    // clang-format on

    [[noreturn]] void fail(const std::string& reason) const
    {
        ladder::fail(m_path, "data.pkl byte " + std::to_string(m_opcodeAt) + ": " + reason);
    }

    PickleValue* make(PickleValue::Kind kind)
    {
        if (m_arena.size() >= kMaxPickleValues)
            fail("more than " + std::to_string(kMaxPickleValues) + " objects");
        m_arena.emplace_back();
        m_arena.back().kind = kind;
        return &m_arena.back();
    }

    const char* take(std::uint64_t n)
    {
        if (n > m_pickle.size() - m_pos)
            fail("the pickle ends early (needs " + std::to_string(n) + " more bytes)");
        const char* p = m_pickle.data() + m_pos;
        m_pos += static_cast<std::size_t>(n);
        return p;
    }
    std::uint8_t byte() { return static_cast<std::uint8_t>(*take(1)); }
    std::uint64_t readLE(int n)
    {
        const char* p = take(static_cast<std::uint64_t>(n));
        std::uint64_t v = 0;
        for (int i = 0; i < n; ++i)
            v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(p[i])) << (8 * i);
        return v;
    }
    std::uint64_t readBE8()
    {
        const char* p = take(8);
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i)
            v = (v << 8) | static_cast<std::uint8_t>(p[i]);
        return v;
    }
    std::string line()
    {
        const auto nl = m_pickle.find('\n', m_pos);
        if (nl == std::string::npos || nl - m_pos > kMaxGlobalNameBytes)
            fail("GLOBAL name is unterminated or too long");
        std::string s = m_pickle.substr(m_pos, nl - m_pos);
        m_pos = nl + 1;
        return s;
    }

    std::size_t stackBase() const { return m_marks.empty() ? 0 : m_marks.back(); }
    void push(PickleValue* v) { m_stack.push_back(v); }
    PickleValue* top()
    {
        if (m_stack.size() <= stackBase())
            fail("stack underflow");
        return m_stack.back();
    }
    PickleValue* pop()
    {
        PickleValue* v = top();
        m_stack.pop_back();
        return v;
    }
    std::size_t popMark()
    {
        if (m_marks.empty())
            fail("no MARK on the stack");
        const std::size_t start = m_marks.back();
        m_marks.pop_back();
        return start;
    }
    PickleValue* expect(PickleValue* v, PickleValue::Kind kind, const char* what)
    {
        if (v->kind != kind)
            fail(std::string(what) + " is a " + kindName(v->kind) + ", expected a " + kindName(kind));
        return v;
    }
    std::int64_t intArg(PickleValue* v, const char* what)
    {
        if (v->kind != PickleValue::Kind::Int && v->kind != PickleValue::Kind::Bool)
            fail(std::string(what) + " is a " + kindName(v->kind) + ", expected an int");
        return v->integer;
    }

    void pushInt(std::int64_t value)
    {
        auto* v = make(PickleValue::Kind::Int);
        v->integer = value;
        push(v);
    }
    void pushLong(std::uint64_t length)
    {
        if (length > 8)
            fail("integer wider than 64 bits");
        const char* p = take(length);
        std::uint64_t u = 0;
        for (std::uint64_t i = 0; i < length; ++i)
            u |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(p[i])) << (8 * i);
        if (length > 0 && length < 8 && (static_cast<std::uint8_t>(p[length - 1]) & 0x80))
            u |= ~std::uint64_t(0) << (8 * length); // sign-extend
        pushInt(static_cast<std::int64_t>(u));
    }
    void pushString(std::uint64_t length)
    {
        const char* p = take(length);
        auto* v = make(PickleValue::Kind::String);
        v->text.assign(p, static_cast<std::size_t>(length));
        push(v);
    }
    void pushGlobal(const std::string& name)
    {
        auto* v = make(PickleValue::Kind::Global);
        v->text = name;
        push(v);
    }

    PickleValue* memoGet(std::uint64_t index)
    {
        const auto it = m_memo.find(index);
        if (it == m_memo.end())
            fail("memo entry " + std::to_string(index) + " was never stored");
        return it->second;
    }

    void dictSet(PickleValue* dict, PickleValue* key, PickleValue* value)
    {
        if (key->kind == PickleValue::Kind::String) {
            const auto [it, inserted] = dict->keyIndex.emplace(key->text, dict->items.size());
            if (!inserted) {
                dict->items[it->second + 1] = value;
                return;
            }
        }
        dict->items.push_back(key);
        dict->items.push_back(value);
    }
    void setItems(PickleValue* dict, std::size_t start)
    {
        if ((m_stack.size() - start) % 2 != 0)
            fail("odd number of items for a dict");
        for (std::size_t i = start; i < m_stack.size(); i += 2)
            dictSet(dict, m_stack[i], m_stack[i + 1]);
        m_stack.resize(start);
    }

    PickleValue* call(PickleValue* callable, PickleValue* argsValue)
    {
        if (callable->kind != PickleValue::Kind::Global)
            fail(std::string("cannot call a value of type ") + kindName(callable->kind));
        const auto& args = expect(argsValue, PickleValue::Kind::Tuple, "call arguments")->items;
        const std::string& name = callable->text;
        if (name == "collections.OrderedDict" || name == "builtins.dict" || name == "__builtin__.dict") {
            auto* d = make(PickleValue::Kind::Dict);
            if (args.size() == 1 && args[0]->kind == PickleValue::Kind::List) {
                for (PickleValue* pair : args[0]->items) {
                    if (pair->kind != PickleValue::Kind::Tuple || pair->items.size() != 2)
                        fail(name + " argument is not a list of pairs");
                    dictSet(d, pair->items[0], pair->items[1]);
                }
            } else if (!args.empty()) {
                fail(name + " with unsupported arguments");
            }
            return d;
        }
        if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor")
            return rebuildTensor(args);
        if (name == "torch._utils._rebuild_parameter"
            || name == "torch._utils._rebuild_parameter_with_state") {
            if (args.empty())
                fail(name + " without arguments");
            return expect(args[0], PickleValue::Kind::Tensor, "parameter data");
        }
        // Written by LibTorch's own pickler (torch::pickle_save): identity wrappers around a container.
        if (name == "torch.jit._pickle.restore_type_tag" || name == "torch.jit._pickle.build_tensorlist"
            || name == "torch.jit._pickle.build_intlist" || name == "torch.jit._pickle.build_doublelist"
            || name == "torch.jit._pickle.build_boollist") {
            if (args.empty())
                fail(name + " without arguments");
            return args[0];
        }
        fail("unsupported global '" + printable(name, false, kMaxNameInMessage)
            + "' (only state dicts of tensors are read)");
    }

    PickleValue* persistentLoad(PickleValue* pidValue)
    {
        const auto& pid = expect(pidValue, PickleValue::Kind::Tuple, "persistent id")->items;
        if (pid.size() < 5 || pid[0]->kind != PickleValue::Kind::String || pid[0]->text != "storage")
            fail("persistent id is not ('storage', type, key, location, numel)");
        const auto* type = expect(pid[1], PickleValue::Kind::Global, "storage type");
        const auto dtype = storageDtype(type->text);
        if (!dtype)
            fail("unsupported storage type '" + printable(type->text, false, kMaxNameInMessage) + "'");
        const std::string& key = expect(pid[2], PickleValue::Kind::String, "storage key")->text;
        const std::int64_t numel = intArg(pid[4], "storage numel");
        const auto itemSize = static_cast<std::uint64_t>(c10::elementSize(*dtype));
        std::uint64_t bytes = 0;
        if (numel < 0)
            fail("storage " + printable(key, false, kMaxNameInMessage) + " has a negative size");
        if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel), itemSize, &bytes) || bytes > m_fileSize)
            fail("storage " + printable(key, false, kMaxNameInMessage) + " claims " + std::to_string(numel)
                + " elements, more than the file holds");

        auto it = m_storages.find(key);
        if (it == m_storages.end()) {
            at::Tensor buffer = at::empty({ static_cast<std::int64_t>(bytes) }, at::kByte);
            if (bytes > 0) {
                const std::string record = "data/" + key;
                if (!m_reader.hasRecord(record))
                    fail("storage record " + printable(record, false, kMaxNameInMessage) + " is missing");
                const std::uint64_t recordSize = m_reader.getRecordSize(record);
                if (recordSize != bytes)
                    fail("storage record " + printable(record, false, kMaxNameInMessage) + " holds "
                        + std::to_string(recordSize) + " bytes but the pickle declares "
                        + std::to_string(numel) + " elements of " + c10::toString(*dtype) + " ("
                        + std::to_string(bytes) + " bytes)");
                m_reader.getRecord(record, buffer.data_ptr(), static_cast<std::size_t>(bytes));
            }
            it = m_storages.emplace(key, buffer.storage()).first;
        } else if (bytes > it->second.nbytes()) {
            fail("storage " + printable(key, false, kMaxNameInMessage) + " is declared with two sizes");
        }
        auto* v = make(PickleValue::Kind::Storage);
        v->text = key;
        v->dtype = *dtype;
        v->storage = it->second;
        return v;
    }

    std::vector<std::int64_t> intTuple(PickleValue* v, const char* what)
    {
        expect(v, PickleValue::Kind::Tuple, what);
        if (v->items.size() > kMaxTensorDims)
            fail(std::string(what) + " has more than " + std::to_string(kMaxTensorDims) + " dimensions");
        std::vector<std::int64_t> out;
        for (PickleValue* item : v->items) {
            const std::int64_t x = intArg(item, what);
            if (x < 0)
                fail(std::string(what) + " has a negative entry");
            out.push_back(x);
        }
        return out;
    }

    PickleValue* rebuildTensor(const std::vector<PickleValue*>& args)
    {
        if (args.size() < 4)
            fail("_rebuild_tensor with " + std::to_string(args.size()) + " arguments, expected at least 4");
        const auto* storage = expect(args[0], PickleValue::Kind::Storage, "tensor storage");
        const std::int64_t offset = intArg(args[1], "storage offset");
        const auto sizes = intTuple(args[2], "tensor size");
        const auto strides = intTuple(args[3], "tensor stride");
        if (offset < 0 || sizes.size() != strides.size())
            fail("tensor with a negative offset or mismatched size and stride");
        // Bytes the view reaches: (offset + sum((size_i - 1) * stride_i) + 1) * element size.
        const auto itemSize = static_cast<std::uint64_t>(c10::elementSize(storage->dtype));
        std::uint64_t needed = 0;
        if (std::find(sizes.begin(), sizes.end(), 0) == sizes.end()) {
            std::uint64_t last = static_cast<std::uint64_t>(offset);
            bool overflow = false;
            for (std::size_t i = 0; i < sizes.size(); ++i) {
                std::uint64_t step = 0;
                overflow |= __builtin_mul_overflow(
                    static_cast<std::uint64_t>(sizes[i] - 1), static_cast<std::uint64_t>(strides[i]), &step);
                overflow |= __builtin_add_overflow(last, step, &last);
            }
            overflow |= __builtin_add_overflow(last, std::uint64_t(1), &last);
            overflow |= __builtin_mul_overflow(last, itemSize, &needed);
            if (overflow)
                needed = std::numeric_limits<std::uint64_t>::max();
        }
        if (needed > storage->storage.nbytes())
            fail("tensor view reaches " + std::to_string(needed) + " bytes but storage "
                + printable(storage->text, false, kMaxNameInMessage) + " holds "
                + std::to_string(storage->storage.nbytes()));
        auto* v = make(PickleValue::Kind::Tensor);
        v->tensor = at::empty({ 0 }, at::TensorOptions().dtype(storage->dtype))
                        .set_(storage->storage, offset, sizes, strides);
        return v;
    }

    const std::string& m_path;
    const std::string m_pickle;
    caffe2::serialize::PyTorchStreamReader& m_reader;
    const std::uint64_t m_fileSize;
    std::size_t m_pos = 0;
    std::size_t m_opcodeAt = 0;
    std::deque<PickleValue> m_arena; // owns every value; pointers into a deque stay valid
    std::vector<PickleValue*> m_stack;
    std::vector<std::size_t> m_marks;
    std::unordered_map<std::uint64_t, PickleValue*> m_memo;
    std::map<std::string, at::Storage> m_storages;
    PickleValue* m_none = nullptr;
    PickleValue* m_true = nullptr;
    PickleValue* m_false = nullptr;
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

TensorMap readTorchBin(const std::string& path)
{
    const std::uint64_t fileSize = regularFileSize(path);
    {
        // Tell the usual wrong inputs apart before LibTorch's zip reader gives a terse message.
        std::ifstream in(path, std::ios::binary);
        if (!in)
            fail(path, "cannot open file: " + std::string(std::strerror(errno)));
        char magic[4] = {};
        in.read(magic, sizeof magic);
        if (fileSize < sizeof magic || std::memcmp(magic, "PK\x03\x04", 4) != 0) {
            if (fileSize >= 2 && static_cast<unsigned char>(magic[0]) == 0x80 && magic[1] <= 5)
                fail(path,
                    "legacy (pre-PyTorch-1.6, non-zip) torch.save format is not supported; "
                    "convert the checkpoint to safetensors");
            fail(path, "not a PyTorch checkpoint: not a zip archive");
        }
    }

    TensorMap result;
    try {
        caffe2::serialize::PyTorchStreamReader reader(path);
        if (reader.hasRecord("byteorder")) {
            std::string order(std::min<std::size_t>(reader.getRecordSize("byteorder"), 16), '\0');
            reader.getRecord("byteorder", order.data(), order.size());
            if (order != "little")
                fail(path,
                    "byte order '" + printable(order, false) + "' is not supported (only little-endian)");
        }
        if (!reader.hasRecord("data.pkl"))
            fail(path, "no data.pkl record: not a torch.save checkpoint (a TorchScript archive?)");
        const std::uint64_t pickleSize = reader.getRecordSize("data.pkl");
        if (pickleSize > kMaxPickleBytes || pickleSize > fileSize)
            fail(path, "data.pkl record of " + std::to_string(pickleSize) + " bytes is larger than allowed");
        std::string pickle(static_cast<std::size_t>(pickleSize), '\0');
        reader.getRecord("data.pkl", pickle.data(), pickle.size());

        StateDictUnpickler unpickler(path, std::move(pickle), reader, fileSize);
        const PickleValue* root = unpickler.run();
        if (root->kind != PickleValue::Kind::Dict)
            fail(path,
                std::string("the checkpoint holds a ") + kindName(root->kind)
                    + ", expected a dict of str -> tensor");

        // Tensors that share a storage (tied weights) or view part of one are cloned so that every
        // tensor owns exactly its own bytes; a tensor that is alone on its whole storage is kept as is.
        std::map<const void*, int> storageUsers;
        for (std::size_t i = 0; i + 1 < root->items.size(); i += 2)
            if (root->items[i + 1]->kind == PickleValue::Kind::Tensor)
                ++storageUsers[root->items[i + 1]->tensor.storage().unsafeGetStorageImpl()];
        for (std::size_t i = 0; i + 1 < root->items.size(); i += 2) {
            const PickleValue* key = root->items[i];
            const PickleValue* value = root->items[i + 1];
            if (key->kind != PickleValue::Kind::String)
                fail(path,
                    std::string("the checkpoint dict has a key of type ") + kindName(key->kind)
                        + ", expected str");
            if (value->kind != PickleValue::Kind::Tensor)
                failTensor(path, key->text,
                    std::string("value is of type ") + kindName(value->kind) + ", expected a tensor");
            const at::Tensor& t = value->tensor;
            const bool ownsStorage = storageUsers[t.storage().unsafeGetStorageImpl()] == 1
                && t.is_contiguous() && t.storage_offset() == 0 && t.storage().nbytes() == t.nbytes();
            result[key->text] = ownsStorage ? t : t.clone(at::MemoryFormat::Contiguous);
        }
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        fail(path, "not a readable PyTorch checkpoint: " + firstLine(e));
    }
    return result;
}

} // namespace ladder
