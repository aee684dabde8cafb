// readTorchBin (PyTorch's torch.save zip, HF pytorch_model.bin): fixture checkpoints, hand-built archives
// and hostile pickles.
#include <QtTest>

#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include "TensorFileTestHelpers.h"
#include "TestSupport.h"
#include "model/Safetensors.h"
#include "model/TorchBin.h"
#include "util/Error.h"

namespace {

using namespace tensor_file_test;

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

} // namespace

class TestTorchBin : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void torchBinGarbage();
    void torchBinTruncated();
    void torchBinZip64Directory();
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

void TestTorchBin::torchBinGarbage()
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

    // A zip signature followed by garbage is refused by the zip directory's check (model/ZipDirectory.h),
    // before LibTorch's reader, with a one-line message (no C++ backtrace). What LibTorch's reader itself
    // refuses (a bad version record) is in test_bad_inputs.
    bytes.replace(0, 4, "PK\x03\x04");
    writeBytes(dir + "/fakezip.bin", bytes);
    const std::string msg = ladderErrorOf([&] { ladder::readTorchBin(dir + "/fakezip.bin"); });
    VERIFY_ERROR_MESSAGE(msg, "fakezip.bin", "not a PyTorch checkpoint: no zip end-of-directory record");
    QVERIFY2(!contains(msg, "\n"), msg.c_str());

    writeBytes(dir + "/empty.bin", "");
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(dir + "/empty.bin"); }), "empty.bin", "not a zip");
}

// torch.save writes ZIP64 archives (a ZIP64 end record and its locator before the classic end record). With
// the classic record's fields at their ZIP64 markers, the directory check must follow the locator and still
// read the file; a ZIP64 record that points outside the file is refused by name.
void TestTorchBin::torchBinZip64Directory()
{
    LADDER_REQUIRE_FIXTURES();
    const std::string dir = ladder::test::makeTempDir();
    std::string zip
        = readBytes(ladder::test::fixture("t5-synthetic-hf/t5-v1_0-relu-synth/pytorch_model.bin"));
    const auto end = zip.rfind(std::string("PK\x05\x06", 4));
    QVERIFY(end != std::string::npos && zip.rfind(std::string("PK\x06\x06", 4)) != std::string::npos);
    for (std::size_t i : { end + 8, end + 9, end + 10, end + 11 }) // entries on this disk and in all
        zip[i] = '\xff';
    for (std::size_t i = end + 12; i < end + 20; ++i) // directory size and offset
        zip[i] = '\xff';
    writeBytes(dir + "/zip64.bin", zip);
    QCOMPARE(ladder::readTorchBin(dir + "/zip64.bin").size(),
        ladder::readTorchBin(ladder::test::fixture("t5-synthetic-hf/t5-v1_0-relu-synth/pytorch_model.bin"))
            .size());

    const auto record = zip.rfind(std::string("PK\x06\x06", 4));
    for (std::size_t i = record + 48; i < record + 56; ++i) // the directory's offset, far past the end
        zip[i] = '\x7f';
    writeBytes(dir + "/zip64-outside.bin", zip);
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(dir + "/zip64-outside.bin"); }),
        "zip64-outside.bin", "the zip directory points outside the file");

    // A classic end record of 0 entries before a ZIP64 locator: LibTorch's reader follows the locator, so
    // the check must too. Here a directory record behind it claims 2 GB from its stored bytes (the shape of
    // an input fuzz_torchbin found, on which LibTorch allocated 4 GB).
    zip = readBytes(ladder::test::fixture("t5-synthetic-hf/t5-v1_0-relu-synth/pytorch_model.bin"));
    for (std::size_t i = end + 8; i < end + 20; ++i) // entries, directory size and offset: all 0
        zip[i] = '\0';
    const auto entry = zip.find(std::string("PK\x01\x02", 4));
    QVERIFY(entry != std::string::npos);
    for (std::size_t i = entry + 24; i < entry + 28; ++i) // the record's uncompressed size
        zip[i] = i + 1 == entry + 28 ? '\x7f' : '\xff';
    writeBytes(dir + "/zip64-hidden.bin", zip);
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(dir + "/zip64-hidden.bin"); }),
        "zip64-hidden.bin", "claims 2147483647 bytes");
}

void TestTorchBin::torchBinTruncated()
{
    LADDER_REQUIRE_FIXTURES();
    const std::string dir = ladder::test::makeTempDir();
    const std::string full = readBytes(ladder::test::fixture("t5-tiny-random/pytorch_model.bin"));
    QVERIFY(full.size() > 1000);
    for (const std::size_t keep : { full.size() / 2, full.size() - 1, std::size_t(100) }) {
        const std::string path = dir + "/truncated.bin";
        writeBytes(path, full.substr(0, keep));
        const std::string msg = ladderErrorOf([&] { ladder::readTorchBin(path); });
        // The end of the zip directory is at the end of the file: a cut file has none.
        VERIFY_ERROR_MESSAGE(
            msg, "truncated.bin", "not a PyTorch checkpoint: no zip end-of-directory record");
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

void TestTorchBin::torchBinIsSafetensors()
{
    const std::string path = ladder::test::makeTempDir() + "/model.safetensors";
    ladder::writeSafetensors(path, { { "x", at::ones({ 4 }) } });
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(path); }), "model.safetensors", "not a zip archive");
}

void TestTorchBin::torchBinMissingFile()
{
    const std::string path = ladder::test::makeTempDir() + "/absent.bin";
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(path); }), "absent.bin", "cannot open");
}

void TestTorchBin::torchBinLegacyFormat()
{
    // torch.save before PyTorch 1.6 wrote a bare pickle stream: protocol-2 PROTO opcode, then a magic number.
    const std::string path = ladder::test::makeTempDir() + "/legacy.bin";
    writeBytes(path, std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { ladder::readTorchBin(path); }), "legacy.bin", "legacy");
}

void TestTorchBin::torchBinNotADictOfTensors()
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

void TestTorchBin::torchBinSharedStorage()
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

void TestTorchBin::torchBinOrderedDictWithMetadata()
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

void TestTorchBin::torchBinHandBuilt()
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

void TestTorchBin::hostilePickles_data()
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

void TestTorchBin::hostilePickles()
{
    QFETCH(QByteArray, pickle);
    QFETCH(QString, reason);
    const std::string path = ladder::test::makeTempDir() + "/hostile.bin";
    writeTorchZip(path, pickle.toStdString());
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { ladder::readTorchBin(path); }), "hostile.bin", reason.toStdString());
}

void TestTorchBin::torchBinArchiveProblems()
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

LADDER_TEST_GUILESS_MAIN(TestTorchBin)
#include "test_torchbin.moc"
