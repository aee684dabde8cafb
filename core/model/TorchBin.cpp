// readTorchBin: PyTorch's zip container is read with LibTorch's PyTorchStreamReader; its data.pkl is
// read by the small unpickler below rather than LibTorch's own, because LibTorch's (a) cannot load the
// most common HF layout, `torch.save(model.state_dict())`, an OrderedDict carrying a `_metadata`
// attribute (it turns OrderedDict into None), and (b) trusts the file: it resizes its memo table to any
// index the file names (up to 64 GiB), reads past its stack on a DICT with an odd item count, and builds
// storages of the size the pickle claims whatever the record holds. This one accepts only what a state
// dict needs, checks every index and size, and allocates in proportion to the file.
#include "model/TorchBin.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include "model/TensorFileDetail.h"
#include "model/ZipDirectory.h"
#include "util/Error.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "TorchBin.cpp assumes a little-endian host (it reads little-endian storages in place)"
#endif

namespace ladder {
namespace {

using tensor_file_detail::fail;
using tensor_file_detail::failTensor;
using tensor_file_detail::firstLine;
using tensor_file_detail::kMaxNameInMessage;
using tensor_file_detail::printable;
using tensor_file_detail::regularFileSize;

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
        tensor_file_detail::fail(m_path, "data.pkl byte " + std::to_string(m_opcodeAt) + ": " + reason);
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
    // LibTorch's reader allocates each record at the size the zip directory claims: check the claims first.
    checkZipDirectory(path, fileSize);

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
