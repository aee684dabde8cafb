#include <QtTest>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/jit/serialization/pickle.h>

#include "TestSupport.h"
#include "model/Safetensors.h"
#include "util/Error.h"

namespace {

namespace fs = std::filesystem;

std::string le64(std::uint64_t n)
{
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i)
        s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return s;
}

// A safetensors file from a header text and a data section, with the correct length prefix.
std::string stBytes(const std::string& header, const std::string& data = {})
{
    return le64(header.size()) + header + data;
}

void writeBytes(const std::string& path, const std::string& bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    QVERIFY2(out.good(), path.c_str());
}

std::string readBytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs f, which must throw ladder::Error; returns its message, or a text that explains what happened instead.
std::string ladderErrorOf(const std::function<void()>& f)
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

bool contains(const std::string& haystack, const std::string& needle)
{
    return haystack.find(needle) != std::string::npos;
}

// Checks that `message` is a ladder::Error message containing every one of `needles`.
#define VERIFY_ERROR_MESSAGE(message, ...)                                                                   \
    do {                                                                                                     \
        const std::string msg_ = (message);                                                                  \
        QVERIFY2(!contains(msg_, "UNEXPECTED") && msg_ != "NO EXCEPTION", msg_.c_str());                     \
        for (const std::string& needle_ : std::initializer_list<std::string> { __VA_ARGS__ })                \
            QVERIFY2(contains(msg_, needle_), ("'" + needle_ + "' not in: " + msg_).c_str());                \
    } while (0)

// --- Building torch.save archives by hand: a pickle program plus storage records, zipped by LibTorch's
// own writer, so hostile pickles can be fed to readTorchBin.

std::string le32(std::uint32_t n)
{
    return le64(n).substr(0, 4);
}

namespace pk {
const std::string proto = "\x80\x02";
std::string str(const std::string& s) // BINUNICODE
{
    return "X" + le32(static_cast<std::uint32_t>(s.size())) + s;
}
std::string i32(std::int32_t v) // BININT
{
    return "J" + le32(static_cast<std::uint32_t>(v));
}
std::string i64(std::int64_t v) // LONG1 with 8 bytes
{
    return std::string("\x8a\x08", 2) + le64(static_cast<std::uint64_t>(v));
}
std::string tuple(const std::vector<std::string>& items)
{
    std::string s = "(";
    for (const auto& i : items)
        s += i;
    return s + "t";
}
std::string global(const std::string& module, const std::string& name)
{
    return "c" + module + "\n" + name + "\n";
}
// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks) over storage `key`.
std::string tensor(const std::string& key, const std::string& numel, const std::string& offset,
    const std::vector<std::string>& size, const std::vector<std::string>& stride,
    const std::string& storageType = "FloatStorage")
{
    const std::string pid
        = tuple({ str("storage"), global("torch", storageType), str(key), str("cpu"), numel });
    return global("torch._utils", "_rebuild_tensor_v2") + "(" + pid + "Q" + offset + tuple(size)
        + tuple(stride) + "\x89" + "}" + "t" + "R";
}
// {name: value, ...} followed by STOP.
std::string dict(const std::vector<std::pair<std::string, std::string>>& items)
{
    std::string s = proto + "}(";
    for (const auto& [k, v] : items)
        s += k + v;
    return s + "u.";
}
} // namespace pk

void writeTorchZip(const std::string& path, const std::string& pickle,
    const std::map<std::string, std::string>& records = { { "data/0", std::string(24, '\0') } })
{
    caffe2::serialize::PyTorchStreamWriter writer(path);
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    for (const auto& [name, bytes] : records)
        writer.writeRecord(name, bytes.data(), bytes.size());
    writer.writeEndOfFile();
}

std::string floatBytes(const std::vector<float>& values)
{
    return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

std::set<std::string> keysOf(const ladder::TensorMap& m)
{
    std::set<std::string> keys;
    for (const auto& kv : m)
        keys.insert(kv.first);
    return keys;
}

} // namespace

class TestSafetensors : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void fixtureCheckpoints_data();
    void fixtureCheckpoints();
    void fixtureExpectedOutputs();
    void roundTrip();
    void roundTripOverwritesAndLeavesNoTemp();
    void writeFromCuda();
    void writeFailureNamesPath();
    void writeRejectsBadInput();
    void hostileSafetensors_data();
    void hostileSafetensors();
    void headerLimitIsApplied();
    void boolBytesAreNormalised();
    void randomGarbage();
    void mutatedRealFile();
    void torchBinGarbage();
    void torchBinTruncated();
    void torchBinIsSafetensors();
    void torchBinMissingFile();
    void torchBinLegacyFormat();
    void torchBinNotADictOfTensors();
    void torchBinSharedStorage();
    void torchBinOrderedDictWithMetadata();
    void torchBinHandBuilt();
    void hostilePickles_data();
    void hostilePickles();
    void torchBinArchiveProblems();
};

void TestSafetensors::fixtureCheckpoints_data()
{
    QTest::addColumn<QString>("dir");
    const std::string root = ladder::test::fixturesDir();
    if (root.empty()) {
        QTest::newRow("no-fixtures") << QString();
        return;
    }
    std::vector<std::string> dirs;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root + "/t5-synthetic-hf", ec))
        if (fs::exists(entry.path() / "model.safetensors"))
            dirs.push_back(entry.path().string());
    dirs.push_back(root + "/t5-tiny-random");
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs)
        QTest::newRow(fs::path(d).filename().c_str()) << QString::fromStdString(d);
}

void TestSafetensors::fixtureCheckpoints()
{
    LADDER_REQUIRE_FIXTURES();
    QFETCH(QString, dir);
    const std::string d = dir.toStdString();

    const auto st = ladder::readSafetensors(d + "/model.safetensors");
    const auto bin = ladder::readTorchBin(d + "/pytorch_model.bin");
    QVERIFY(!st.empty());
    QCOMPARE(keysOf(st), keysOf(bin));
    for (const auto& [name, t] : st) {
        const auto& b = bin.at(name);
        QVERIFY2(t.scalar_type() == b.scalar_type(), name.c_str());
        QVERIFY2(t.sizes() == b.sizes(), name.c_str());
        QVERIFY2(at::equal(t, b), name.c_str());
        QVERIFY(t.device().is_cpu() && b.device().is_cpu());
        QVERIFY(!b.requires_grad());
        // Every tensor owns exactly its bytes (tied weights were separate views of one storage in the .bin).
        QCOMPARE(b.storage().nbytes(), b.nbytes());
        QCOMPARE(t.storage().nbytes(), t.nbytes());
    }

    // The header-only readers agree with the full read.
    const auto header = ladder::readSafetensorsHeader(d + "/model.safetensors");
    QCOMPARE(header.size(), st.size());
    for (const auto& [name, entry] : header) {
        QCOMPARE(entry.dtype, std::string("F32"));
        QVERIFY(st.at(name).sizes().vec() == entry.shape);
    }
    QCOMPARE(ladder::readSafetensorsMetadata(d + "/model.safetensors").at("format"), std::string("pt"));

    // shared.weight is [vocab_size, d_model] of the config; the synthetic ones are [256, 32].
    std::ifstream configFile(d + "/config.json");
    const auto config = nlohmann::json::parse(configFile);
    const std::vector<std::int64_t> expected { config.at("vocab_size").get<std::int64_t>(),
        config.at("d_model").get<std::int64_t>() };
    QVERIFY(st.at("shared.weight").sizes().vec() == expected);
    if (contains(d, "synth"))
        QVERIFY((expected == std::vector<std::int64_t> { 256, 32 }));

    // Tied weights: same values, separate memory.
    const auto& shared = bin.at("shared.weight");
    const auto& embed = bin.at("encoder.embed_tokens.weight");
    QVERIFY(at::equal(shared, embed));
    QVERIFY(shared.data_ptr() != embed.data_ptr());
}

void TestSafetensors::fixtureExpectedOutputs()
{
    LADDER_REQUIRE_FIXTURES();
    int files = 0;
    for (const auto& entry : fs::recursive_directory_iterator(ladder::test::fixturesDir())) {
        if (entry.path().extension() != ".safetensors" || entry.path().filename() == "model.safetensors")
            continue;
        const auto tensors = ladder::readSafetensors(entry.path().string());
        QVERIFY2(!tensors.empty(), entry.path().c_str());
        ++files;
    }
    QVERIFY(files > 0);
}

void TestSafetensors::roundTrip()
{
    at::manual_seed(7);
    ladder::TensorMap tensors;
    tensors["a.f32"] = at::randn({ 3, 5 });
    tensors["b.f16"] = at::randn({ 4, 2 }).to(at::kHalf);
    tensors["c.bf16"] = at::randn({ 7 }).to(at::kBFloat16);
    tensors["d.i64"] = at::arange(-5, 6, at::kLong).reshape({ 11, 1 });
    tensors["e.empty"] = at::empty({ 0, 4 });
    tensors["f.scalar"] = at::full({}, 2.5, at::kDouble);
    tensors["g.bool"] = at::randn({ 9 }) > 0;
    tensors["h.transposed"] = at::randn({ 3, 4 }).t(); // not contiguous
    tensors["i.u8"] = at::randint(0, 256, { 5 }, at::kByte);
    tensors["j.i8"] = at::randint(-128, 128, { 5 }, at::kChar);
    tensors["k.i16"] = at::randint(-1000, 1000, { 5 }, at::kShort);
    tensors["l.i32"] = at::randint(-100000, 100000, { 5 }, at::kInt);
    const std::map<std::string, std::string> metadata { { "format", "pt" },
        { "note", "round trip \xc3\xa9" } };

    const std::string path = ladder::test::makeTempDir() + "/round.safetensors";
    ladder::writeSafetensors(path, tensors, metadata);

    const auto back = ladder::readSafetensors(path);
    QCOMPARE(keysOf(back), keysOf(tensors));
    for (const auto& [name, t] : tensors) {
        QVERIFY2(back.at(name).scalar_type() == t.scalar_type(), name.c_str());
        QVERIFY2(back.at(name).sizes() == t.sizes(), name.c_str());
        QVERIFY2(at::equal(back.at(name), t), name.c_str());
    }
    QCOMPARE(back.at("e.empty").numel(), 0);
    QCOMPARE(ladder::readSafetensorsMetadata(path), metadata);
    QCOMPARE(ladder::readSafetensorsHeader(path).at("c.bf16").dtype, std::string("BF16"));

    // Layout as the reference implementation writes it: 8-byte length, header padded with spaces to a
    // multiple of 8, data right after it, each tensor aligned to its element size.
    const std::string bytes = readBytes(path);
    QVERIFY(bytes.size() >= 8);
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i)
        n |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    QCOMPARE(n % 8, std::uint64_t(0));
    QVERIFY(8 + n <= bytes.size());
    QCOMPARE(bytes[8], '{');
    const std::string headerText = bytes.substr(8, n);
    const auto header = nlohmann::json::parse(headerText);
    QCOMPARE(header.at("__metadata__").at("note").get<std::string>(), metadata.at("note"));
    std::uint64_t total = 0;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__")
            continue;
        const auto begin = it->at("data_offsets")[0].get<std::uint64_t>();
        const auto end = it->at("data_offsets")[1].get<std::uint64_t>();
        const auto elem = static_cast<std::uint64_t>(tensors.at(it.key()).element_size());
        QVERIFY2(begin % elem == 0, it.key().c_str());
        total += end - begin;
    }
    QCOMPARE(static_cast<std::uint64_t>(bytes.size()), 8 + n + total);

    // No metadata: no "__metadata__" key at all.
    const std::string plain = ladder::test::makeTempDir() + "/plain.safetensors";
    ladder::writeSafetensors(plain, { { "x", at::ones({ 2 }) } });
    QVERIFY(!contains(readBytes(plain), "__metadata__"));
    QVERIFY(ladder::readSafetensorsMetadata(plain).empty());
}

void TestSafetensors::roundTripOverwritesAndLeavesNoTemp()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/over.safetensors";
    ladder::writeSafetensors(path, { { "x", at::ones({ 100 }) } });
    ladder::writeSafetensors(path, { { "y", at::zeros({ 2 }, at::kLong) } });
    const auto back = ladder::readSafetensors(path);
    QCOMPARE(keysOf(back), (std::set<std::string> { "y" }));
    QVERIFY(!fs::exists(path + ".tmp"));
    QCOMPARE(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), std::ptrdiff_t(1));

    // An empty map is a valid file too.
    ladder::writeSafetensors(path, {});
    QVERIFY(ladder::readSafetensors(path).empty());
}

void TestSafetensors::writeFromCuda()
{
    if (!at::hasCUDA())
        QSKIP("no CUDA device");
    const auto gpu = at::randn({ 5, 7 }, at::TensorOptions().device(at::kCUDA).dtype(at::kHalf));
    const std::string path = ladder::test::makeTempDir() + "/cuda.safetensors";
    ladder::writeSafetensors(path, { { "g", gpu }, { "t", gpu.t() } });
    const auto back = ladder::readSafetensors(path);
    QVERIFY(back.at("g").device().is_cpu());
    QVERIFY(at::equal(back.at("g"), gpu.cpu()));
    QVERIFY(at::equal(back.at("t"), gpu.t().cpu()));
}

void TestSafetensors::writeFailureNamesPath()
{
    const std::string path = ladder::test::makeTempDir() + "/no/such/dir/out.safetensors";
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] {
        ladder::writeSafetensors(path, { { "x", at::ones({ 2 }) } });
    }),
        path, "cannot create");
    QVERIFY(!fs::exists(path));
}

void TestSafetensors::writeRejectsBadInput()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/bad.safetensors";
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] {
        ladder::writeSafetensors(path, { { "c", at::ones({ 2 }, at::kComplexFloat) } });
    }),
        "bad.safetensors", "tensor c", "cannot be written");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] {
        ladder::writeSafetensors(path, { { "u", at::Tensor() } });
    }),
        "bad.safetensors", "tensor u", "undefined");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] {
        ladder::writeSafetensors(path, { { "__metadata__", at::ones({ 1 }) } });
    }),
        "bad.safetensors", "reserved");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] {
        ladder::writeSafetensors(path, { { std::string("bad\xff"), at::ones({ 1 }) } });
    }),
        "bad.safetensors", "UTF-8");
    QVERIFY(!fs::exists(path));
    QVERIFY(!fs::exists(path + ".tmp"));
}

void TestSafetensors::hostileSafetensors_data()
{
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("reason"); // a word of the expected message
    QTest::addColumn<QString>("tensor"); // the tensor the message must name, if any

    auto row = [](const char* name, const std::string& bytes, const char* reason, const char* tensor = "") {
        QTest::newRow(name) << QByteArray::fromStdString(bytes) << QString(reason) << QString(tensor);
    };
    const std::string eightFloats(32, '\0');

    row("empty file", "", "too short");
    row("4 bytes", std::string("\x10\0\0\0", 4), "too short");
    row("header length 2^62", le64(1ull << 62) + "{}", "exceeds the limit");
    row("header length > file size", le64(1000) + "{\"a\":1}", "exceeds the file size");
    row("header length 2^64-1", le64(~0ull), "exceeds the limit");
    row("empty header", stBytes(""), "not valid JSON");
    row("header not JSON", stBytes("this is not json"), "not valid JSON");
    row("header truncated JSON", stBytes("{\"a\": {\"dtype\": \"F32\""), "not valid JSON");
    row("header invalid UTF-8", stBytes("{\"\xff\xfe\": 1}"), "not valid JSON");
    row("header JSON array", stBytes("[1, 2, 3]"), "expected an object");
    row("header JSON string", stBytes("\"hello\""), "expected an object");
    row("header nested deeply", stBytes(std::string(100000, '[') + std::string(100000, ']')),
        "nested deeper");
    row("entry not an object", stBytes("{\"w\": 5}"), "expected an object", "w");
    row("missing dtype", stBytes(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", eightFloats),
        "missing \"dtype\"", "w");
    row("missing shape", stBytes(R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", eightFloats),
        "missing \"shape\"", "w");
    row("missing data_offsets", stBytes(R"({"w": {"dtype": "F32", "shape": [2]}})", eightFloats),
        "missing \"data_offsets\"", "w");
    row("dtype not a string",
        stBytes(R"({"w": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})", eightFloats), "not a string",
        "w");
    row("unknown dtype",
        stBytes(R"({"w": {"dtype": "F8_XYZ", "shape": [2], "data_offsets": [0, 2]}})", eightFloats),
        "unsupported dtype", "w");
    row("shape not an array",
        stBytes(R"({"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})", eightFloats),
        "not an array", "w");
    row("negative dim",
        stBytes(R"({"w": {"dtype": "F32", "shape": [-2, 2], "data_offsets": [0, 8]}})", eightFloats),
        "negative", "w");
    row("fractional dim",
        stBytes(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", eightFloats),
        "not an integer", "w");
    row("string dim",
        stBytes(R"({"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}})", eightFloats),
        "not an integer", "w");
    row("dim above int64",
        stBytes(
            R"({"w": {"dtype": "U8", "shape": [9223372036854775808], "data_offsets": [0, 8]}})", eightFloats),
        "overflow", "w");
    row("shape product overflow",
        stBytes(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 8]}})",
            eightFloats),
        "overflow", "w");
    row("byte size overflow",
        stBytes(R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 8]}})",
            eightFloats),
        "overflow", "w");
    row("data_offsets one number",
        stBytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", eightFloats),
        "two non-negative integers", "w");
    row("data_offsets negative",
        stBytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", eightFloats),
        "two non-negative integers", "w");
    row("data_offsets not array",
        stBytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}})", eightFloats),
        "two non-negative integers", "w");
    row("begin > end",
        stBytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", eightFloats),
        "begin is after end", "w");
    row("end beyond file",
        stBytes(R"({"w": {"dtype": "F32", "shape": [200], "data_offsets": [0, 800]}})", eightFloats),
        "beyond the data section", "w");
    row("huge end",
        stBytes(
            R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [18446744073709551608, 18446744073709551615]}})",
            eightFloats),
        "beyond the data section", "w");
    row("overlapping spans",
        stBytes(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                R"( "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
            eightFloats),
        "overlap", "b");
    row("aliased spans",
        stBytes(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                R"( "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
            eightFloats),
        "overlap", "");
    row("span inside another",
        stBytes(R"({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},)"
                R"( "b": {"dtype": "I8", "shape": [4], "data_offsets": [4, 8]},)"
                R"( "c": {"dtype": "I8", "shape": [4], "data_offsets": [20, 24]}})",
            eightFloats),
        "overlap", "");
    row("wrong byte span for shape",
        stBytes(
            R"({"enc.q.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 8]}})", eightFloats),
        "span 8 bytes but shape [2, 3] of F32 needs 24", "enc.q.weight");
    row("truncated data section",
        stBytes(
            R"({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})", eightFloats.substr(0, 20)),
        "beyond the data section", "w");
    row("metadata not an object", stBytes(R"({"__metadata__": [1]})"), "__metadata__");
    row("metadata value not a string", stBytes(R"({"__metadata__": {"k": 1}})"), "__metadata__");
}

void TestSafetensors::hostileSafetensors()
{
    QFETCH(QByteArray, bytes);
    QFETCH(QString, reason);
    QFETCH(QString, tensor);
    const std::string path = ladder::test::makeTempDir() + "/hostile.safetensors";
    writeBytes(path, bytes.toStdString());

    const std::string why = reason.toStdString();
    const std::string which = tensor.isEmpty() ? std::string() : "tensor " + tensor.toStdString();
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readSafetensors(path); }), path, why, which);
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readSafetensorsHeader(path); }), path, why, which);
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readSafetensorsMetadata(path); }), path, why, which);

    // Bytes from the file never reach the message raw: no control characters, no broken UTF-8.
    const std::string msg = ladderErrorOf([&] { ladder::readSafetensors(path); });
    for (const char c : msg)
        QVERIFY2(
            static_cast<unsigned char>(c) >= 0x20 && c != '\x7f' && c != '\xff' && c != '\xfe', msg.c_str());
}

void TestSafetensors::headerLimitIsApplied()
{
    const std::string path = ladder::test::makeTempDir() + "/limit.safetensors";
    ladder::writeSafetensors(path, { { "x", at::ones({ 2 }) } });
    ladder::SafetensorsLimits limits;
    limits.maxHeaderBytes = 16;
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readSafetensors(path, limits); }), "limit.safetensors",
        "exceeds the limit of 16");
    QCOMPARE(ladder::readSafetensors(path).size(), std::size_t(1));

    // A directory is not a file.
    const std::string dir = ladder::test::makeTempDir();
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readSafetensors(dir); }), dir, "not a regular file");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readSafetensors(dir + "/absent.safetensors"); }),
        "absent.safetensors", "cannot open");
}

void TestSafetensors::boolBytesAreNormalised()
{
    const std::string path = ladder::test::makeTempDir() + "/bool.safetensors";
    writeBytes(path,
        stBytes(R"({"m": {"dtype": "BOOL", "shape": [4], "data_offsets": [0, 4]}})",
            std::string("\x00\x01\x02\xff", 4)));
    const auto m = ladder::readSafetensors(path).at("m");
    QVERIFY(at::equal(m.to(at::kByte), at::tensor({ 0, 1, 1, 1 }, at::kByte)));
}

void TestSafetensors::randomGarbage()
{
    const std::string dir = ladder::test::makeTempDir();
    std::mt19937 rng(12345);
    for (int i = 0; i < 300; ++i) {
        std::uniform_int_distribution<int> lenDist(0, 512);
        std::uniform_int_distribution<int> byteDist(0, 255);
        std::string bytes(static_cast<std::size_t>(lenDist(rng)), '\0');
        for (auto& c : bytes)
            c = static_cast<char>(byteDist(rng));
        // Half of the files get a plausible header length so the JSON parser sees the garbage too.
        if (i % 2 == 0 && bytes.size() >= 8) {
            const std::string len
                = le64(bytes.size() - 8 - static_cast<std::size_t>(byteDist(rng)) % (bytes.size() - 7));
            bytes.replace(0, 8, len);
        }
        const std::string path = dir + "/garbage" + std::to_string(i) + ".safetensors";
        writeBytes(path, bytes);
        VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readSafetensors(path); }),
            "garbage" + std::to_string(i) + ".safetensors");
        VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(path); }),
            "garbage" + std::to_string(i) + ".safetensors");
    }
}

void TestSafetensors::mutatedRealFile()
{
    // Flip bytes of a valid file: every outcome must be a clean load or a ladder::Error, never a crash.
    const std::string dir = ladder::test::makeTempDir();
    const std::string original = dir + "/orig.safetensors";
    ladder::writeSafetensors(original,
        { { "a", at::randn({ 3, 4 }) }, { "b", at::arange(6, at::kLong) },
            { "c", at::ones({ 2 }, at::kHalf) } },
        { { "format", "pt" } });
    const std::string good = readBytes(original);
    std::mt19937 rng(777);
    int loaded = 0, rejected = 0;
    for (int i = 0; i < 400; ++i) {
        std::string bytes = good;
        std::uniform_int_distribution<std::size_t> pos(0, bytes.size() - 1);
        std::uniform_int_distribution<int> byteDist(0, 255);
        const int flips = 1 + i % 4;
        for (int f = 0; f < flips; ++f)
            bytes[pos(rng)] = static_cast<char>(byteDist(rng));
        if (i % 5 == 0)
            bytes.resize(pos(rng)); // and sometimes truncate
        const std::string path = dir + "/mut.safetensors";
        writeBytes(path, bytes);
        const std::string msg = ladderErrorOf([&] { ladder::readSafetensors(path); });
        if (msg == "NO EXCEPTION") {
            ++loaded;
        } else {
            VERIFY_ERROR_MESSAGE(msg, "mut.safetensors");
            ++rejected;
        }
    }
    QVERIFY(loaded > 0);
    QVERIFY(rejected > 0);
}

void TestSafetensors::torchBinGarbage()
{
    const std::string dir = ladder::test::makeTempDir();
    std::mt19937 rng(99);
    std::uniform_int_distribution<int> byteDist(0, 255);
    std::string bytes(4096, '\0');
    for (auto& c : bytes)
        c = static_cast<char>(byteDist(rng));
    bytes[0] = 'X';
    writeBytes(dir + "/garbage.bin", bytes);
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(dir + "/garbage.bin"); }), "garbage.bin",
        "not a zip archive");

    // A zip signature followed by garbage goes through LibTorch's reader and still comes out as ladder::Error
    // with a one-line message (no C++ backtrace).
    bytes.replace(0, 4, "PK\x03\x04");
    writeBytes(dir + "/fakezip.bin", bytes);
    const std::string msg = ladderErrorOf([&] { ladder::readTorchBin(dir + "/fakezip.bin"); });
    VERIFY_ERROR_MESSAGE(msg, "fakezip.bin", "not a readable PyTorch checkpoint");
    QVERIFY2(!contains(msg, "\n"), msg.c_str());

    writeBytes(dir + "/empty.bin", "");
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(dir + "/empty.bin"); }), "empty.bin", "not a zip");
}

void TestSafetensors::torchBinTruncated()
{
    LADDER_REQUIRE_FIXTURES();
    const std::string dir = ladder::test::makeTempDir();
    const std::string full = readBytes(ladder::test::fixture("t5-tiny-random/pytorch_model.bin"));
    QVERIFY(full.size() > 1000);
    for (const std::size_t keep : { full.size() / 2, full.size() - 1, std::size_t(100) }) {
        const std::string path = dir + "/truncated.bin";
        writeBytes(path, full.substr(0, keep));
        const std::string msg = ladderErrorOf([&] { ladder::readTorchBin(path); });
        VERIFY_ERROR_MESSAGE(msg, "truncated.bin", "not a readable PyTorch checkpoint");
        QVERIFY2(!contains(msg, "\n"), msg.c_str());
    }

    // Corrupt bytes in the middle (inside the stored tensors and the pickle): an error or a clean load.
    std::mt19937 rng(4242);
    std::uniform_int_distribution<std::size_t> pos(0, full.size() - 1);
    for (int i = 0; i < 40; ++i) {
        std::string bytes = full;
        for (int f = 0; f < 8; ++f)
            bytes[pos(rng)] = static_cast<char>(rng() & 0xff);
        const std::string path = dir + "/mutated.bin";
        writeBytes(path, bytes);
        const std::string msg = ladderErrorOf([&] { ladder::readTorchBin(path); });
        if (msg != "NO EXCEPTION")
            VERIFY_ERROR_MESSAGE(msg, "mutated.bin");
    }
}

void TestSafetensors::torchBinIsSafetensors()
{
    const std::string path = ladder::test::makeTempDir() + "/model.safetensors";
    ladder::writeSafetensors(path, { { "x", at::ones({ 4 }) } });
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(path); }), "model.safetensors", "not a zip archive");
}

void TestSafetensors::torchBinMissingFile()
{
    const std::string path = ladder::test::makeTempDir() + "/absent.bin";
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(path); }), "absent.bin", "cannot open");
}

void TestSafetensors::torchBinLegacyFormat()
{
    // torch.save before PyTorch 1.6 wrote a bare pickle stream: protocol-2 PROTO opcode, then a magic number.
    const std::string path = ladder::test::makeTempDir() + "/legacy.bin";
    writeBytes(path, std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(path); }), "legacy.bin", "legacy");
}

void TestSafetensors::torchBinNotADictOfTensors()
{
    const std::string dir = ladder::test::makeTempDir();
    auto save = [&](const std::string& name, const c10::IValue& value) {
        const std::vector<char> bytes = torch::jit::pickle_save(value);
        writeBytes(dir + "/" + name, std::string(bytes.begin(), bytes.end()));
        return dir + "/" + name;
    };

    c10::List<at::Tensor> list;
    list.push_back(at::ones({ 2 }));
    const auto listPath = save("list.bin", list);
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(listPath); }), "list.bin", "expected a dict");

    c10::Dict<std::string, std::int64_t> ints;
    ints.insert("n", 3);
    const auto intPath = save("ints.bin", ints);
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(intPath); }), "ints.bin", "tensor n", "expected a tensor");

    c10::Dict<std::int64_t, at::Tensor> intKeys;
    intKeys.insert(1, at::ones({ 2 }));
    const auto intKeyPath = save("intkeys.bin", intKeys);
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(intKeyPath); }), "intkeys.bin", "expected str");

    const auto tensorPath = save("tensor.bin", at::ones({ 2 }));
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(tensorPath); }), "tensor.bin", "expected a dict");
}

void TestSafetensors::torchBinSharedStorage()
{
    // Tied weights and views into one storage come out as equal values in separate, exactly sized storages.
    const auto base = at::arange(24, at::kFloat).reshape({ 4, 6 });
    c10::Dict<std::string, at::Tensor> dict;
    dict.insert("shared.weight", base);
    dict.insert("lm_head.weight", base);
    dict.insert("row", base[2]);
    dict.insert("col", base.select(1, 3)); // strided view
    dict.insert("alone", at::ones({ 3 }, at::kHalf));
    const std::vector<char> bytes = torch::jit::pickle_save(dict);
    const std::string path = ladder::test::makeTempDir() + "/tied.bin";
    writeBytes(path, std::string(bytes.begin(), bytes.end()));

    const auto m = ladder::readTorchBin(path);
    QCOMPARE(m.size(), std::size_t(5));
    QVERIFY(at::equal(m.at("shared.weight"), base));
    QVERIFY(at::equal(m.at("lm_head.weight"), base));
    QVERIFY(at::equal(m.at("row"), base[2]));
    QVERIFY(at::equal(m.at("col"), base.select(1, 3)));
    QVERIFY(m.at("alone").scalar_type() == at::kHalf);
    QVERIFY(m.at("shared.weight").data_ptr() != m.at("lm_head.weight").data_ptr());
    for (const auto& [name, t] : m) {
        QVERIFY2(t.is_contiguous(), name.c_str());
        QVERIFY2(t.storage().nbytes() == t.nbytes(), name.c_str());
        QVERIFY2(!t.requires_grad(), name.c_str());
    }
    // Writing into one does not change its former twin.
    m.at("shared.weight").fill_(-1);
    QVERIFY(at::equal(m.at("lm_head.weight"), base));
}

void TestSafetensors::torchBinOrderedDictWithMetadata()
{
    // data.pkl of torch.save(sd) (PyTorch 2.11, protocol 2) where sd = nn.Linear(3, 2).state_dict() with
    // weight = arange(6).reshape(2, 3), bias = [10, 20], then sd["tied"] = sd["weight"] and
    // sd["row"] = sd["weight"][1]: an OrderedDict with a `_metadata` attribute, the layout of every HF
    // pytorch_model.bin written before transformers 4.18, which LibTorch's own unpickler cannot load.
    const std::string pickle("\x80\x02\x63\x63\x6f\x6c\x6c\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65"
                             "\x72\x65\x64\x44\x69\x63\x74"
                             "\x0a\x71\x00\x29\x52\x71\x01\x28\x58\x06\x00\x00\x00\x77\x65\x69\x67\x68\x74"
                             "\x71\x02\x63\x74\x6f\x72\x63"
                             "\x68\x2e\x5f\x75\x74\x69\x6c\x73\x0a\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74"
                             "\x65\x6e\x73\x6f\x72\x5f\x76"
                             "\x32\x0a\x71\x03\x28\x28\x58\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x71"
                             "\x04\x63\x74\x6f\x72\x63\x68"
                             "\x0a\x46\x6c\x6f\x61\x74\x53\x74\x6f\x72\x61\x67\x65\x0a\x71\x05\x58\x01\x00"
                             "\x00\x00\x30\x71\x06\x58\x03"
                             "\x00\x00\x00\x63\x70\x75\x71\x07\x4b\x06\x74\x71\x08\x51\x4b\x00\x4b\x02\x4b"
                             "\x03\x86\x71\x09\x4b\x03\x4b"
                             "\x01\x86\x71\x0a\x89\x68\x00\x29\x52\x71\x0b\x74\x71\x0c\x52\x71\x0d\x58\x04"
                             "\x00\x00\x00\x62\x69\x61\x73"
                             "\x71\x0e\x68\x03\x28\x28\x68\x04\x68\x05\x58\x01\x00\x00\x00\x31\x71\x0f\x68"
                             "\x07\x4b\x02\x74\x71\x10\x51"
                             "\x4b\x00\x4b\x02\x85\x71\x11\x4b\x01\x85\x71\x12\x89\x68\x00\x29\x52\x71\x13"
                             "\x74\x71\x14\x52\x71\x15\x58"
                             "\x04\x00\x00\x00\x74\x69\x65\x64\x71\x16\x68\x0d\x58\x03\x00\x00\x00\x72\x6f"
                             "\x77\x71\x17\x68\x03\x28\x28"
                             "\x68\x04\x68\x05\x68\x06\x68\x07\x4b\x06\x74\x71\x18\x51\x4b\x03\x4b\x03\x85"
                             "\x71\x19\x4b\x01\x85\x71\x1a"
                             "\x89\x68\x00\x29\x52\x71\x1b\x74\x71\x1c\x52\x71\x1d\x75\x7d\x71\x1e\x58\x09"
                             "\x00\x00\x00\x5f\x6d\x65\x74"
                             "\x61\x64\x61\x74\x61\x71\x1f\x68\x00\x29\x52\x71\x20\x58\x00\x00\x00\x00\x71"
                             "\x21\x7d\x71\x22\x58\x07\x00"
                             "\x00\x00\x76\x65\x72\x73\x69\x6f\x6e\x71\x23\x4b\x01\x73\x73\x73\x62\x2e",
        356);
    const std::string path = ladder::test::makeTempDir() + "/od.bin";
    writeTorchZip(path, pickle,
        { { "data/0", floatBytes({ 0, 1, 2, 3, 4, 5 }) }, { "data/1", floatBytes({ 10, 20 }) },
            { "byteorder", "little" } });

    const auto m = ladder::readTorchBin(path);
    QCOMPARE(keysOf(m), (std::set<std::string> { "bias", "row", "tied", "weight" }));
    const auto weight = at::arange(6, at::kFloat).reshape({ 2, 3 });
    QVERIFY(at::equal(m.at("weight"), weight));
    QVERIFY(at::equal(m.at("tied"), weight));
    QVERIFY(at::equal(m.at("row"), weight[1]));
    QVERIFY(at::equal(m.at("bias"), at::tensor({ 10.0f, 20.0f })));
    QVERIFY(m.at("weight").data_ptr() != m.at("tied").data_ptr());
    for (const auto& [name, t] : m)
        QVERIFY2(t.storage().nbytes() == t.nbytes(), name.c_str());
}

void TestSafetensors::torchBinHandBuilt()
{
    // The pickle builder used by hostilePickles makes files that load, so the hostile rows fail for the
    // reason they name. Covers BF16 / I64 storages, a strided view with an offset and a Parameter wrapper.
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/built.bin";
    const std::string param = pk::global("torch._utils", "_rebuild_parameter") + "("
        + pk::tensor("2", pk::i32(3), pk::i32(0), { pk::i32(3) }, { pk::i32(1) }, "LongStorage") + "\x88"
        + "}" + "t" + "R";
    writeTorchZip(path,
        pk::dict({ { pk::str("w"),
                       pk::tensor("0", pk::i32(6), pk::i32(0), { pk::i32(2), pk::i32(3) },
                           { pk::i32(3), pk::i32(1) }) },
            { pk::str("col"), pk::tensor("0", pk::i32(6), pk::i32(1), { pk::i32(2) }, { pk::i32(3) }) },
            { pk::str("b"),
                pk::tensor("1", pk::i32(2), pk::i32(0), { pk::i32(2) }, { pk::i32(1) }, "BFloat16Storage") },
            { pk::str("p"), param } }),
        { { "data/0", floatBytes({ 0, 1, 2, 3, 4, 5 }) },
            { "data/1", std::string("\x80\x3f\x00\x40", 4) }, // bf16 1.0, 2.0
            { "data/2", le64(7) + le64(8) + le64(9) } });
    const auto m = ladder::readTorchBin(path);
    QCOMPARE(m.size(), std::size_t(4));
    QVERIFY(at::equal(m.at("w"), at::arange(6, at::kFloat).reshape({ 2, 3 })));
    QVERIFY(at::equal(m.at("col"), at::tensor({ 1.0f, 4.0f })));
    QVERIFY(m.at("b").scalar_type() == at::kBFloat16);
    QVERIFY(at::equal(m.at("b").to(at::kFloat), at::tensor({ 1.0f, 2.0f })));
    QVERIFY(at::equal(m.at("p"), at::tensor({ 7, 8, 9 }, at::kLong)));

    // A memo index far beyond anything stored costs nothing (LibTorch's unpickler would allocate 64 GiB).
    writeTorchZip(path, pk::proto + "}r\xff\xff\xff\xff.");
    QVERIFY(ladder::readTorchBin(path).empty());
}

void TestSafetensors::hostilePickles_data()
{
    QTest::addColumn<QByteArray>("pickle");
    QTest::addColumn<QString>("reason");
    auto row = [](const char* name, const std::string& pickle, const char* reason) {
        QTest::newRow(name) << QByteArray::fromStdString(pickle) << QString(reason);
    };
    using pk::i32;
    using pk::str;
    const std::string w = str("w");
    auto one = [&](const std::string& tensor) { return pk::dict({ { w, tensor } }); };

    row("not a pickle", "hello", "PROTO");
    row("protocol 1", pk::proto.substr(0, 1) + "\x01}.", "protocol");
    row("no STOP", pk::proto + "}", "ends early");
    row("two values at STOP", pk::proto + "}}.", "STOP with 2");
    row("unknown opcode", pk::proto + "\xff", "unsupported pickle opcode 0xff");
    row("text opcode INT", pk::proto + "I1\n.", "unsupported pickle opcode");
    row("TUPLE without MARK", pk::proto + "t.", "no MARK");
    row("SETITEM on empty stack", pk::proto + "s.", "underflow");
    row("SETITEM reaching below MARK", pk::proto + "}(" + str("k") + "s.", "underflow");
    row("DICT with odd item count", pk::proto + "(" + str("a") + "d.", "odd number");
    row("SETITEMS with odd item count", pk::proto + "}(" + str("a") + "u.", "odd number");
    row("SETITEMS on a list", pk::proto + "](" + str("a") + str("b") + "u.", "expected a dict");
    row("APPENDS without list", pk::proto + "(" + str("a") + "e.", "without a list");
    row("BINGET never stored", pk::proto + "j" + le32(5) + ".", "never stored");
    row("BINUNICODE longer than the pickle", pk::proto + "X\xff\xff\xff\x7f", "ends early");
    row("BINUNICODE8 huge", pk::proto + "\x8d" + le64(~0ull), "ends early");
    row("LONG4 huge", pk::proto + "\x8b\xff\xff\xff\x7f", "wider than 64 bits");
    row("GLOBAL unterminated", pk::proto + "ctorch\n_utils", "unterminated");
    row("unsupported global", pk::proto + pk::global("os", "system") + "(" + str("ls") + "tR.",
        "unsupported global 'os.system'");
    row("call of an int", pk::proto + "K\x01)R.", "cannot call a value of type int");
    row("self-referencing list", pk::proto + "]q" + '\0' + "h" + '\0' + "a.", "holds a list");
    row("deeply nested lists", pk::proto + std::string(100000, ']') + std::string(99999, 'a') + ".",
        "holds a list");
    row("top level is a tensor", pk::proto + pk::tensor("0", i32(6), i32(0), { i32(6) }, { i32(1) }) + ".",
        "holds a tensor");
    row("value not a tensor", pk::dict({ { w, i32(1) } }), "tensor w: value is of type int");
    row("key not a string", pk::dict({ { i32(1), pk::tensor("0", i32(6), i32(0), { i32(6) }, { i32(1) }) } }),
        "key of type int");
    row("storage numel larger than record", one(pk::tensor("0", i32(8), i32(0), { i32(8) }, { i32(1) })),
        "holds 24 bytes but the pickle declares 8");
    row("storage numel smaller than record", one(pk::tensor("0", i32(2), i32(0), { i32(2) }, { i32(1) })),
        "holds 24 bytes but the pickle declares 2");
    row("storage numel negative", one(pk::tensor("0", i32(-6), i32(0), { i32(6) }, { i32(1) })),
        "negative size");
    row("storage numel huge", one(pk::tensor("0", pk::i64(1ll << 62), i32(0), { i32(6) }, { i32(1) })),
        "claims");
    row("storage record missing", one(pk::tensor("7", i32(6), i32(0), { i32(6) }, { i32(1) })),
        "data/7 is missing");
    row("storage type unknown",
        one(pk::tensor("0", i32(3), i32(0), { i32(3) }, { i32(1) }, "ComplexFloatStorage")),
        "unsupported storage type");
    row("view beyond storage", one(pk::tensor("0", i32(6), i32(0), { i32(100) }, { i32(1) })),
        "reaches 400 bytes");
    row("offset beyond storage", one(pk::tensor("0", i32(6), i32(6), { i32(1) }, { i32(1) })),
        "reaches 28 bytes");
    row("stride overflow", one(pk::tensor("0", i32(6), i32(0), { i32(3) }, { pk::i64(1ll << 62) })),
        "reaches");
    row("negative size", one(pk::tensor("0", i32(6), i32(0), { i32(-1) }, { i32(1) })), "negative");
    row("size and stride ranks differ", one(pk::tensor("0", i32(6), i32(0), { i32(2), i32(3) }, { i32(1) })),
        "mismatched");
    row("pid not a storage", pk::proto + pk::tuple({ str("module"), str("x") }) + "Q.", "persistent id");
}

void TestSafetensors::hostilePickles()
{
    QFETCH(QByteArray, pickle);
    QFETCH(QString, reason);
    const std::string path = ladder::test::makeTempDir() + "/hostile.bin";
    writeTorchZip(path, pickle.toStdString());
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(path); }), "hostile.bin", reason.toStdString());
}

void TestSafetensors::torchBinArchiveProblems()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string ok = pk::dict({});

    writeTorchZip(dir + "/big.bin", ok, { { "byteorder", "big" } });
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(dir + "/big.bin"); }), "big.bin", "byte order");

    caffe2::serialize::PyTorchStreamWriter writer(dir + "/nopickle.bin");
    writer.writeRecord("other.pkl", ok.data(), ok.size());
    writer.writeEndOfFile();
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(dir + "/nopickle.bin"); }), "nopickle.bin", "no data.pkl");

    // More objects than any state dict needs (BININT1 0, a million times): refused, not allocated.
    std::string many = pk::proto;
    for (int i = 0; i < (1 << 20) + 8; ++i)
        many += std::string("K\x00", 2);
    writeTorchZip(dir + "/many.bin", many + ".");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(dir + "/many.bin"); }), "many.bin",
        "more than 1048576 objects");
}

LADDER_TEST_GUILESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
