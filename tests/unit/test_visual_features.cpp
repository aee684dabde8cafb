#include <QtTest>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "TensorFileTestHelpers.h"
#include "TestSupport.h"
#include "data/VisualFeatures.h"
#include "model/Safetensors.h"
#include "util/Error.h"

namespace {

using namespace tensor_file_test;
using ladder::VisualFeatureFile;
using ladder::VisualFeatures;

namespace fs = std::filesystem;

std::string dataDir()
{
    return ladder::test::testDataDir() + "/vl-features";
}

nlohmann::json expectedJson()
{
    std::ifstream in(dataDir() + "/expected.json");
    return nlohmann::json::parse(in);
}

// A [rows, cols] float32 tensor from JSON rows.
at::Tensor fromRows(const nlohmann::json& rows)
{
    const auto r = static_cast<std::int64_t>(rows.size());
    const auto c = static_cast<std::int64_t>(rows.at(0).size());
    at::Tensor t = at::empty({ r, c }, at::kFloat);
    auto a = t.accessor<float, 2>();
    for (std::int64_t i = 0; i < r; ++i)
        for (std::int64_t j = 0; j < c; ++j)
            a[i][j] = rows[i][j].get<float>();
    return t;
}

// tools/reference/visual_features.py's synthetic input: x[b, i, d] = ((b * boxes * dim + i * dim + d) * 37) %
// 101.
at::Tensor synthetic(std::int64_t batch, std::int64_t boxes, std::int64_t dim)
{
    const at::Tensor n = at::arange(batch * boxes * dim, at::kLong);
    return at::remainder(n * 37, 101).to(at::kFloat).reshape({ batch, boxes, dim });
}

// The byte span of tensor `name` in a safetensors file: absolute offsets.
std::pair<std::uint64_t, std::uint64_t> spanOf(const std::string& path, const std::string& name)
{
    const std::string bytes = readBytes(path);
    std::uint64_t headerSize = 0;
    for (int i = 0; i < 8; ++i)
        headerSize |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    const auto header = nlohmann::json::parse(bytes.substr(8, headerSize));
    const auto& offsets = header.at(name).at("data_offsets");
    return { 8 + headerSize + offsets[0].get<std::uint64_t>(),
        8 + headerSize + offsets[1].get<std::uint64_t>() };
}

VisualFeatures image(const at::Tensor& features, const at::Tensor& boxes = {})
{
    return VisualFeatures { features, boxes };
}

std::string errorOfOpening(const std::string& path)
{
    return ladderErrorOf([&] { VisualFeatureFile file(path); });
}

} // namespace

class TestVisualFeatures : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void referenceFile();
    void reduceTokensMatchesPyTorch();
    void reduceTokensErrors();
    void roundTrip();
    void halfAndBfloat16ReadAsRounded();
    void readTouchesOnlyItsTensors();
    void readFromSeveralThreads();
    void openErrors();
    void readErrors();
    void writerErrors();
    void manyImages();
    void docsQuoteTheReferenceWriter();
};

void TestVisualFeatures::referenceFile()
{
    const auto expected = expectedJson();
    const VisualFeatureFile file(dataDir() + "/clip-like.safetensors");
    const auto& info = file.info();
    QCOMPARE(info.images, 3);
    QCOMPARE(info.boxes, 49);
    QCOMPARE(info.dim, 8);
    QCOMPARE(info.dtype, std::string("F16"));
    QCOMPARE(info.encoder, expected.at("encoder").get<std::string>());
    QCOMPARE(info.format, std::string(ladder::kVisualFeaturesFormat));
    file.expectDim(8);
    QCOMPARE(static_cast<int>(expected.at("images").size()), 3);
    for (const auto& [id, want] : expected.at("images").items()) {
        QVERIFY2(file.contains(id), id.c_str());
        const VisualFeatures got = file.read(id);
        QCOMPARE(got.features.scalar_type(), at::kFloat);
        QCOMPARE(got.features.sizes().vec(), (std::vector<std::int64_t> { 49, 8 }));
        QVERIFY2(at::equal(got.features, fromRows(want.at("features"))), id.c_str());
        QCOMPARE(got.boxes.sizes().vec(), (std::vector<std::int64_t> { 49, 4 }));
        if (want.at("boxes").is_null())
            QVERIFY2(at::equal(got.boxes, at::zeros({ 49, 4 })), id.c_str());
        else
            QVERIFY2(at::equal(got.boxes, fromRows(want.at("boxes"))), id.c_str());
        // 49 -> 36 tokens: PyTorch's AdaptiveMaxPool2d as VL-T5's Downsample runs it; max pooling selects
        // values, so the match is exact.
        const at::Tensor tokens = VisualFeatureFile::reduceTokens(got.features, 36);
        QCOMPARE(tokens.sizes().vec(), (std::vector<std::int64_t> { 36, 8 }));
        QVERIFY2(at::equal(tokens, fromRows(want.at("tokens36"))), id.c_str());
        QCOMPARE(VisualFeatureFile::reduceBoxes(got.boxes, 36).sizes().vec(),
            (std::vector<std::int64_t> { 36, 4 }));
    }
    QVERIFY(!file.contains("COCO_val2014_000000000042#boxes"));
    QCOMPARE(file.imageIds().size(), std::size_t(3));
}

void TestVisualFeatures::reduceTokensMatchesPyTorch()
{
    const auto synth = expectedJson().at("synthetic");
    for (const char* key : { "grid196_to_36", "batch64_to_16" }) {
        const auto& c = synth.at(key);
        const auto batch = c.at("batch").get<std::int64_t>();
        const auto boxes = c.at("boxes").get<std::int64_t>();
        const auto dim = c.at("dim").get<std::int64_t>();
        const auto tokens = c.at("tokens").get<std::int64_t>();
        const at::Tensor x = synthetic(batch, boxes, dim);
        const at::Tensor got = VisualFeatureFile::reduceTokens(x, tokens);
        QCOMPARE(got.sizes().vec(), (std::vector<std::int64_t> { batch, tokens, dim }));
        for (std::int64_t b = 0; b < batch; ++b)
            QVERIFY2(at::equal(got[b], fromRows(c.at("output")[b])), key);
        // Unbatched input gives the same rows.
        QVERIFY(at::equal(VisualFeatureFile::reduceTokens(x[0], tokens), got[0]));
        // The dtype stays.
        QCOMPARE(VisualFeatureFile::reduceTokens(x.to(at::kHalf), tokens).scalar_type(), at::kHalf);
    }
    // Equal counts: the input itself.
    const at::Tensor x = at::randn({ 50, 4 });
    QVERIFY(VisualFeatureFile::reduceTokens(x, 50).is_same(x));
}

void TestVisualFeatures::reduceTokensErrors()
{
    const at::Tensor x = at::randn({ 50, 4 });
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { VisualFeatureFile::reduceTokens(x, 36); }), "50 boxes", "36 visual tokens");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] {
        VisualFeatureFile::reduceTokens(at::randn({ 49, 4 }), 64);
    }),
        "49 boxes", "64 visual tokens");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] {
        VisualFeatureFile::reduceTokens(at::randn({ 49, 4 }), 30);
    }),
        "49 boxes", "30 visual tokens");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { VisualFeatureFile::reduceTokens(at::randn({ 49 }), 36); }),
        "[boxes, dim]", "[49]");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] {
        VisualFeatureFile::reduceBoxes(at::randn({ 49, 3 }), 36);
    }),
        "[boxes, 4]", "[49, 3]");
}

void TestVisualFeatures::roundTrip()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/" + ladder::kVisualFeaturesFileName;
    std::vector<std::pair<std::string, VisualFeatures>> images;
    std::vector<at::Tensor> boxes(4);
    for (int i = 0; i < 4; ++i) {
        if (i % 2 == 0)
            boxes[i] = at::rand({ 49, 4 });
        images.emplace_back("image " + std::to_string(i) + " é", image(at::randn({ 49, 16 }), boxes[i]));
    }
    ladder::writeVisualFeatureFile(path, images, "RN101 (test)");
    const VisualFeatureFile file(path);
    QCOMPARE(file.info().path, path);
    QCOMPARE(file.info().images, 4);
    QCOMPARE(file.info().boxes, 49);
    QCOMPARE(file.info().dim, 16);
    QCOMPARE(file.info().dtype, std::string("F32"));
    QCOMPARE(file.info().encoder, std::string("RN101 (test)"));
    QCOMPARE(file.info().format, std::string("ladder-visual-features-v1"));
    for (int i = 0; i < 4; ++i) {
        const auto got = file.read(images[i].first);
        QVERIFY(at::equal(got.features, images[i].second.features));
        QVERIFY(at::equal(got.boxes, boxes[i].defined() ? boxes[i] : at::zeros({ 49, 4 })));
    }
    // The metadata as safetensors stores it (what Python's safe_open(...).metadata() returns).
    const auto metadata = ladder::readSafetensorsMetadata(path);
    QCOMPARE(metadata.at("encoder"), std::string("RN101 (test)"));
    QCOMPARE(metadata.at("format"), std::string("ladder-visual-features-v1"));
    // A copy shares the open file.
    const VisualFeatureFile copy = file;
    QVERIFY(at::equal(copy.read(images[1].first).features, images[1].second.features));
}

void TestVisualFeatures::halfAndBfloat16ReadAsRounded()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/mixed.safetensors";
    const at::Tensor source = at::randn({ 36, 12 }) * 3;
    ladder::writeVisualFeatureFile(path,
        { { "half", image(source.to(at::kHalf), at::rand({ 36, 4 }).to(at::kHalf)) },
            { "bf16", image(source.to(at::kBFloat16)) } },
        "");
    const VisualFeatureFile file(path);
    QCOMPARE(file.info().dtype, std::string("BF16+F16"));
    QCOMPARE(file.info().encoder, std::string());
    const auto half = file.read("half");
    const auto bf16 = file.read("bf16");
    QCOMPARE(half.features.scalar_type(), at::kFloat);
    QVERIFY(at::equal(half.features, source.to(at::kHalf).to(at::kFloat)));
    QVERIFY(at::equal(bf16.features, source.to(at::kBFloat16).to(at::kFloat)));
    QVERIFY(!at::equal(half.features, bf16.features)); // the roundings differ: each was read as stored
    QCOMPARE(half.boxes.scalar_type(), at::kFloat);
}

void TestVisualFeatures::readTouchesOnlyItsTensors()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/lazy.safetensors";
    const at::Tensor good = at::randn({ 4, 3 });
    ladder::writeVisualFeatureFile(
        path, { { "bad", image(at::randn({ 4, 3 }), at::rand({ 4, 4 })) }, { "good", image(good) } }, "x");
    // Every float of "bad"'s features becomes NaN, and its boxes 2.0: the header is untouched.
    std::string bytes = readBytes(path);
    const auto [fb, fe] = spanOf(path, "bad");
    const std::uint32_t nan = 0x7fc00000u;
    for (std::uint64_t o = fb; o < fe; o += 4)
        std::memcpy(&bytes[o], &nan, 4);
    const auto [bb, be] = spanOf(path, "bad#boxes");
    const float two = 2.0f;
    for (std::uint64_t o = bb; o < be; o += 4)
        std::memcpy(&bytes[o], &two, 4);
    writeBytes(path, bytes);

    const VisualFeatureFile file(path); // the header alone: opening succeeds
    QVERIFY(at::equal(file.read("good").features, good));
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { file.read("bad"); }), "lazy.safetensors", "'bad'",
        "NaN or infinite", "row 0, column 0");

    // Features fine, boxes outside [0, 1].
    for (std::uint64_t o = fb; o < fe; o += 4)
        std::memset(&bytes[o], 0, 4);
    writeBytes(path, bytes);
    const VisualFeatureFile again(path);
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { again.read("bad"); }), "lazy.safetensors", "'bad'", "boxes", "[0, 1]");
    // An infinity in the second row.
    const float inf = std::numeric_limits<float>::infinity();
    std::memcpy(&bytes[fb + 3 * 4 + 2 * 4], &inf, 4);
    writeBytes(path, bytes);
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { VisualFeatureFile(path).read("bad"); }), "'bad'",
        "NaN or infinite", "row 1, column 2");

    // Truncated after opening: the open file reads the bytes it can, then names what ended early.
    const VisualFeatureFile opened(path);
    fs::resize_file(path, fb + 4);
    VERIFY_ERROR_MESSAGE(
        ladderErrorOf([&] { opened.read("good"); }), "lazy.safetensors", "ended early", "'good'");
}

void TestVisualFeatures::readFromSeveralThreads()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/threads.safetensors";
    std::vector<std::pair<std::string, VisualFeatures>> images;
    for (int i = 0; i < 16; ++i)
        images.emplace_back("img" + std::to_string(i), image(at::full({ 9, 5 }, static_cast<float>(i))));
    ladder::writeVisualFeatureFile(path, images, "");
    const VisualFeatureFile file(path);
    std::vector<int> failures(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int round = 0; round < 50; ++round)
                for (int i = 0; i < 16; ++i) {
                    const auto got = file.read("img" + std::to_string((i + t) % 16));
                    if (!at::equal(got.features, at::full({ 9, 5 }, static_cast<float>((i + t) % 16))))
                        ++failures[t];
                }
        });
    for (auto& th : threads)
        th.join();
    QCOMPARE(failures, std::vector<int>(4, 0));
}

void TestVisualFeatures::openErrors()
{
    const std::string dir = ladder::test::makeTempDir();
    auto write = [&](const std::string& name, const ladder::TensorMap& tensors) {
        const std::string path = dir + "/" + name;
        ladder::writeSafetensors(path, tensors);
        return path;
    };

    VERIFY_ERROR_MESSAGE(errorOfOpening(dir + "/missing.safetensors"), "missing.safetensors", "cannot open");
    const std::string garbage = dir + "/garbage.safetensors";
    writeBytes(garbage, "this is not a safetensors file at all");
    VERIFY_ERROR_MESSAGE(errorOfOpening(garbage), "garbage.safetensors", "header length");
    const std::string badJson = dir + "/json.safetensors";
    writeBytes(badJson, le64(8) + "{\"a\": [1");
    VERIFY_ERROR_MESSAGE(errorOfOpening(badJson), "json.safetensors", "not valid JSON");

    VERIFY_ERROR_MESSAGE(errorOfOpening(write("empty.safetensors", {})), "empty.safetensors",
        "holds no image features", "no tensors");
    VERIFY_ERROR_MESSAGE(errorOfOpening(write("ints.safetensors",
                             { { "a", at::zeros({ 49, 8 }) }, { "b", at::zeros({ 49, 8 }, at::kLong) } })),
        "ints.safetensors", "'b'", "I64", "not a float type");
    VERIFY_ERROR_MESSAGE(
        errorOfOpening(write("f64.safetensors", { { "a", at::zeros({ 49, 8 }, at::kDouble) } })),
        "f64.safetensors", "'a'", "F64");
    VERIFY_ERROR_MESSAGE(errorOfOpening(write("3d.safetensors", { { "a", at::zeros({ 1, 49, 8 }) } })),
        "3d.safetensors", "'a'", "[1, 49, 8]", "not 2-D");
    VERIFY_ERROR_MESSAGE(errorOfOpening(write("1d.safetensors", { { "a", at::zeros({ 49 }) } })),
        "1d.safetensors", "'a'", "[49]", "not 2-D");
    VERIFY_ERROR_MESSAGE(errorOfOpening(write("zero.safetensors", { { "a", at::zeros({ 0, 8 }) } })),
        "zero.safetensors", "'a'", "[0, 8]", "empty");
    VERIFY_ERROR_MESSAGE(
        errorOfOpening(write("shapes.safetensors",
            { { "a", at::zeros({ 49, 8 }) }, { "b", at::zeros({ 36, 8 }) }, { "c", at::zeros({ 49, 8 }) } })),
        "shapes.safetensors", "'b'", "[36, 8]", "'a'", "[49, 8]");
    VERIFY_ERROR_MESSAGE(errorOfOpening(write("width.safetensors",
                             { { "a", at::zeros({ 49, 8 }) }, { "b", at::zeros({ 49, 2048 }) } })),
        "width.safetensors", "'b'", "[49, 2048]", "[49, 8]");
    VERIFY_ERROR_MESSAGE(errorOfOpening(write("orphan.safetensors",
                             { { "a", at::zeros({ 49, 8 }) }, { "c#boxes", at::zeros({ 49, 4 }) } })),
        "orphan.safetensors", "'c#boxes'", "no image 'c'");
    VERIFY_ERROR_MESSAGE(
        errorOfOpening(write("onlyboxes.safetensors", { { "c#boxes", at::zeros({ 49, 4 }) } })),
        "onlyboxes.safetensors", "holds no image features");
    VERIFY_ERROR_MESSAGE(errorOfOpening(write("boxshape.safetensors",
                             { { "a", at::zeros({ 49, 8 }) }, { "a#boxes", at::zeros({ 49, 3 }) } })),
        "boxshape.safetensors", "'a#boxes'", "[49, 3]", "[49, 4]");
    VERIFY_ERROR_MESSAGE(errorOfOpening(write("boxrows.safetensors",
                             { { "a", at::zeros({ 49, 8 }) }, { "a#boxes", at::zeros({ 36, 4 }) } })),
        "boxrows.safetensors", "'a#boxes'", "[36, 4]", "[49, 4]");
    VERIFY_ERROR_MESSAGE(
        errorOfOpening(write("boxint.safetensors",
            { { "a", at::zeros({ 49, 8 }) }, { "a#boxes", at::zeros({ 49, 4 }, at::kInt) } })),
        "boxint.safetensors", "'a#boxes'", "I32");

    // Truncated data: readSafetensorsHeader's bounds checks name the file and the tensor.
    const std::string truncated = write("cut.safetensors", { { "a", at::zeros({ 49, 8 }) } });
    fs::resize_file(truncated, fs::file_size(truncated) - 10);
    VERIFY_ERROR_MESSAGE(errorOfOpening(truncated), "cut.safetensors", "a", "truncated");
}

void TestVisualFeatures::readErrors()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/features.safetensors";
    std::vector<std::pair<std::string, VisualFeatures>> images;
    for (int i = 0; i < 5000; ++i) {
        char id[32];
        std::snprintf(id, sizeof id, "COCO_val2014_%012d", i);
        images.emplace_back(id, image(at::zeros({ 1, 2 }, at::kHalf)));
    }
    ladder::writeVisualFeatureFile(path, images, "");
    const VisualFeatureFile file(path);
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { file.read("COCO_val2014_000000123"); }),
        path
            + ": no features for image 'COCO_val2014_000000123' (the file holds 5,000 images, e.g. "
              "'COCO_val2014_000000000000', 'COCO_val2014_000000000001', 'COCO_val2014_000000000002')");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { file.expectDim(2048); }),
        path + ": features are 2 wide but the run's visual_dim is 2048");
    file.expectDim(2);

    const std::string one = dir + "/one.safetensors";
    ladder::writeVisualFeatureFile(one, { { "only", image(at::zeros({ 1, 2 })) } }, "");
    VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { VisualFeatureFile(one).read("other"); }),
        "one.safetensors: no features for image 'other' (the file holds 1 image, 'only')");
}

void TestVisualFeatures::writerErrors()
{
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/w.safetensors";
    auto errorOf = [&](const std::vector<std::pair<std::string, VisualFeatures>>& images) {
        return ladderErrorOf([&] { ladder::writeVisualFeatureFile(path, images, ""); });
    };
    VERIFY_ERROR_MESSAGE(errorOf({}), "w.safetensors", "no images");
    VERIFY_ERROR_MESSAGE(
        errorOf({ { "a", image(at::zeros({ 4, 2 })) }, { "b", image(at::zeros({ 5, 2 })) } }),
        "w.safetensors", "'b'", "[5, 2]", "'a'", "[4, 2]");
    VERIFY_ERROR_MESSAGE(
        errorOf({ { "a", image(at::zeros({ 4, 2 })) }, { "a", image(at::zeros({ 4, 2 })) } }), "'a'",
        "twice");
    VERIFY_ERROR_MESSAGE(
        errorOf({ { "a#boxes", image(at::zeros({ 4, 2 })) } }), "'a#boxes'", "cannot be written");
    VERIFY_ERROR_MESSAGE(errorOf({ { "", image(at::zeros({ 4, 2 })) } }), "''", "cannot be written");
    VERIFY_ERROR_MESSAGE(errorOf({ { "a", image(at::zeros({ 4, 2 }, at::kLong)) } }), "'a'", "Long");
    VERIFY_ERROR_MESSAGE(errorOf({ { "a", image(at::zeros({ 4 })) } }), "'a'", "[4]");
    VERIFY_ERROR_MESSAGE(errorOf({ { "a", image(at::full({ 4, 2 }, NAN)) } }), "'a'", "NaN");
    VERIFY_ERROR_MESSAGE(
        errorOf({ { "a", image(at::zeros({ 4, 2 }), at::zeros({ 4, 3 })) } }), "'a'", "boxes", "[4, 3]");
    VERIFY_ERROR_MESSAGE(errorOf({ { "a", image(at::zeros({ 4, 2 }), at::full({ 4, 4 }, 640.0f)) } }), "'a'",
        "boxes", "[0, 1]");
    QVERIFY(!fs::exists(path));
}

void TestVisualFeatures::manyImages()
{
    // A COCO-sized file: 200,000 images, a header of ~17 MB (beyond what a small default limit would allow),
    // written directly (writeSafetensors's ordered header is built one name at a time).
    const std::string dir = ladder::test::makeTempDir();
    const std::string path = dir + "/many.safetensors";
    constexpr int kImages = 200000;
    std::string header = "{\"__metadata__\":{\"encoder\":\"RN101\"}";
    std::string data;
    data.reserve(static_cast<std::size_t>(kImages) * 4);
    for (int i = 0; i < kImages; ++i) {
        char id[40];
        std::snprintf(id, sizeof id, "COCO_train2014_%012d", i);
        const std::uint64_t b = data.size();
        header += ",\"" + std::string(id) + "\":{\"dtype\":\"F16\",\"shape\":[1,2],\"data_offsets\":["
            + std::to_string(b) + "," + std::to_string(b + 4) + "]}";
        const at::Tensor v = at::full({ 2 }, static_cast<float>(i % 1000), at::kHalf);
        data.append(static_cast<const char*>(v.const_data_ptr()), 4);
    }
    header += "}";
    header.append((8 - header.size() % 8) % 8, ' ');
    writeBytes(path, le64(header.size()) + header + data);
    QVERIFY(header.size() > 16u * 1000 * 1000);

    const auto start = std::chrono::steady_clock::now();
    const VisualFeatureFile file(path);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    qInfo("opened %d images (header %zu bytes) in %.2f s", kImages, header.size(), seconds);
    QCOMPARE(file.info().images, kImages);
    QCOMPARE(file.info().encoder, std::string("RN101"));
    QVERIFY(file.contains("COCO_train2014_000000199999"));
    QVERIFY(at::equal(file.read("COCO_train2014_000000123456").features, at::full({ 1, 2 }, 456.0f)));
}

void TestVisualFeatures::docsQuoteTheReferenceWriter()
{
    // The Python writer in the docs is the one tools/reference/visual_features.py wrote the test file with.
    const fs::path root = fs::path(ladder::test::testDataDir()) / ".." / "..";
    const std::string script = readBytes((root / "tools/reference/visual_features.py").string());
    const std::string begin = "# --- begin write_visual_features ---\n";
    const std::string end = "# --- end write_visual_features ---";
    const auto b = script.find(begin);
    const auto e = script.find(end);
    QVERIFY(b != std::string::npos && e != std::string::npos && e > b);
    const std::string function = script.substr(b + begin.size(), e - b - begin.size());
    QVERIFY(contains(function, "save_file(tensors, path, metadata="));
    std::string where;
    for (const char* doc : { "docs/VL.md" })
        if (contains(readBytes((root / doc).string()), function))
            where = doc;
    QVERIFY2(!where.empty(),
        "docs/VL.md does not quote write_visual_features of "
        "tools/reference/visual_features.py letter for letter");
}

LADDER_TEST_GUILESS_MAIN(TestVisualFeatures)
#include "test_visual_features.moc"
