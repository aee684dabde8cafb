#include <QtTest>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "TensorFileTestHelpers.h"
#include "TestSupport.h"
#include "model/Safetensors.h"
#include "model/TorchBin.h"
#include "util/Error.h"

namespace {

using namespace tensor_file_test;

namespace fs = std::filesystem;

// A safetensors file from a header text and a data section, with the correct length prefix.
std::string stBytes(const std::string& header, const std::string& data = {})
{
    return le64(header.size()) + header + data;
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

LADDER_TEST_GUILESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
