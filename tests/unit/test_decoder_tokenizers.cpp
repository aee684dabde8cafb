// The decoder tokenizers against HF transformers 5 on tests/fixtures/decoder (tokenizer_expected.json of
// each folder, made by make_fixtures.py): LlamaTokenizer on llama-gqa's tokenizer.model,
// ByteLevelBpeTokenizer on qwen2-bias's and llama3-bpe's tokenizer.json, all through loadTokenizer as a
// backbone loads them.
#include <QTemporaryDir>
#include <QtTest>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "model/ByteLevelBpe.h"
#include "model/LlamaTokenizer.h"
#include "model/T5Tokenizer.h"
#include "model/Tokenizer.h"
#include "model/TokenizerLoad.h"
#include "util/Error.h"

using Ids = std::vector<std::int64_t>;
namespace fs = std::filesystem;

namespace {

std::string decoderFixtures()
{
    return ladder::test::testDataDir() + "/../fixtures/decoder";
}

std::string folder(const char* name)
{
    return decoderFixtures() + "/" + name;
}

nlohmann::json expected(const char* name)
{
    std::ifstream in(folder(name) + "/tokenizer_expected.json");
    return nlohmann::json::parse(in);
}

Ids idsOf(const nlohmann::json& value)
{
    return value.get<Ids>();
}

QString str(const Ids& ids)
{
    return QString::fromStdString(nlohmann::json(ids).dump());
}

void writeFile(const std::string& path, const std::string& bytes)
{
    std::ofstream out(path, std::ios::binary);
    out << bytes;
}

std::string readFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

// The message of the ladder::Error that `load` throws, "" when it throws none.
template <typename F> std::string errorOf(F load)
{
    try {
        load();
    } catch (const ladder::Error& e) {
        return e.what();
    }
    return {};
}

} // namespace

class TestDecoderTokenizers : public QObject {
    Q_OBJECT

private:
    // Every case of FIXTURE's tokenizer_expected.json: ids, ids without special tokens, decoded text. Prints
    // the agreement counts and fails naming each case that differs.
    void compareWithHf(const char* fixture, const char* kind)
    {
        const auto tokenizer = ladder::loadTokenizer(folder(fixture));
        QCOMPARE(QString::fromStdString(tokenizer->kind()), QString(kind));
        const auto file = expected(fixture);
        int ids = 0, idsNoSpecial = 0, decoded = 0, total = 0;
        QStringList failures;
        for (const auto& c : file["cases"]) {
            const std::string text = c["text"];
            const auto label = QString::fromStdString(nlohmann::json(text).dump());
            ++total;
            const Ids got = tokenizer->encode(text, true);
            if (got == idsOf(c["ids"]))
                ++ids;
            else
                failures << label + " ids " + str(got) + " != " + str(idsOf(c["ids"]));
            const Ids gotNoSpecial = tokenizer->encode(text, false);
            if (gotNoSpecial == idsOf(c["ids_no_special"]))
                ++idsNoSpecial;
            else
                failures << label + " ids_no_special " + str(gotNoSpecial)
                        + " != " + str(idsOf(c["ids_no_special"]));
            const std::string text2 = tokenizer->decode(idsOf(c["ids"]), true);
            if (text2 == c["decoded"].get<std::string>())
                ++decoded;
            else
                failures << label + " decoded " + QString::fromStdString(nlohmann::json(text2).dump());
            // HF's tokens are our pieces.
            const auto tokens = c["tokens"];
            for (std::size_t i = 0; i < tokens.size(); ++i)
                if (tokenizer->idToPiece(c["ids"][i].get<std::int64_t>()) != tokens[i].get<std::string>())
                    failures << label + " piece " + QString::number(i);
        }
        qInfo().noquote() << QString("%1: %2/%5 ids, %3/%5 ids_no_special, %4/%5 decoded")
                                 .arg(fixture)
                                 .arg(ids)
                                 .arg(idsNoSpecial)
                                 .arg(decoded)
                                 .arg(total);
        QVERIFY2(failures.isEmpty(), qPrintable(failures.join("\n")));
        QVERIFY(total >= 15);
    }

    // HF's ids of prompt + " " + answer are the prompt's ids followed by encodeTarget(answer) less its eos.
    void compareTargets(const char* fixture)
    {
        const auto tokenizer = ladder::loadTokenizer(folder(fixture));
        const auto file = expected(fixture);
        QVERIFY(file["target_cases"].size() >= 5);
        for (const auto& c : file["target_cases"]) {
            const Ids prompt = tokenizer->encode(c["prompt"].get<std::string>());
            QCOMPARE(str(prompt), str(idsOf(c["prompt_ids"])));
            Ids target = tokenizer->encodeTarget(c["answer"].get<std::string>());
            QVERIFY(!target.empty());
            QCOMPARE(target.back(), tokenizer->eosId());
            QVERIFY(tokenizer->bosId() == std::nullopt || target.front() != *tokenizer->bosId());
            target.pop_back();
            Ids joined = prompt;
            joined.insert(joined.end(), target.begin(), target.end());
            QCOMPARE(str(joined), str(idsOf(c["full_ids"])));
        }
    }

private Q_SLOTS:
    void initTestCase()
    {
        if (!fs::exists(folder("llama-gqa") + "/tokenizer_expected.json"))
            QSKIP("tests/fixtures/decoder is missing (make it with tests/fixtures/decoder/make_fixtures.py)");
    }

    void llamaMatchesHf() { compareWithHf("llama-gqa", "llama-sentencepiece"); }
    void qwen2MatchesHf() { compareWithHf("qwen2-bias", "byte-level-bpe"); }
    void llama3MatchesHf() { compareWithHf("llama3-bpe", "byte-level-bpe"); }

    void llamaTargets() { compareTargets("llama-gqa"); }
    void qwen2Targets() { compareTargets("qwen2-bias"); }
    void llama3Targets() { compareTargets("llama3-bpe"); }

    // bos, eos and pad as HF reports them; where HF has no pad, the documented fallback.
    void specialIds()
    {
        for (const char* name : { "llama-gqa", "qwen2-bias", "llama3-bpe" }) {
            const auto tokenizer = ladder::loadTokenizer(folder(name));
            const auto file = expected(name);
            QCOMPARE(tokenizer->eosId(), file["eos_token_id"].get<std::int64_t>());
            if (file["bos_token_id"].is_null())
                QVERIFY(!tokenizer->bosId());
            else
                QCOMPARE(*tokenizer->bosId(), file["bos_token_id"].get<std::int64_t>());
            if (!file["pad_token_id"].is_null())
                QCOMPARE(tokenizer->padId(), file["pad_token_id"].get<std::int64_t>());
            QCOMPARE(tokenizer->vocabSize(), file["vocab_size"].get<std::int64_t>());
        }
        // Llama has no pad token: config.json's pad_token_id (0 here), else unk.
        QCOMPARE(ladder::loadTokenizer(folder("llama-gqa"))->padId(), std::int64_t(0));
        const ladder::LlamaTokenizer bare(folder("llama-gqa") + "/tokenizer.model");
        QCOMPARE(bare.padId(), bare.unkId());
        ladder::TokenizerLoadOptions options;
        options.padId = 2;
        QCOMPARE(ladder::loadTokenizer(folder("llama-gqa"), options)->padId(), std::int64_t(2));
        // Llama 3: no pad token anywhere, so eos.
        const auto llama3 = ladder::loadTokenizer(folder("llama3-bpe"));
        QCOMPARE(llama3->padId(), llama3->eosId());
        QCOMPARE(llama3->specialTokensAdded(), std::size_t(1));
        QVERIFY(llama3->isSpecial(300) && llama3->isSpecial(301) && !llama3->isSpecial(10));
    }

    // HF's truncation keeps room for the special tokens; padding on the right with padId().
    void encodeBatchTruncatesAndPads()
    {
        const auto llama = ladder::loadTokenizer(folder("llama-gqa"));
        auto batch = llama->encodeBatch({ "Hello world", "a" }, 4);
        QCOMPARE(str(batch.inputIds[0]), str({ 1, 277, 314, 278 }));
        QCOMPARE(str(batch.inputIds[1]), str({ 1, 259, 0, 0 }));
        QCOMPARE(str(batch.attentionMask[1]), str({ 1, 1, 0, 0 }));
        batch = llama->encodeBatch({ "a", "" }, 8, true);
        QCOMPARE(str(batch.inputIds[0]), str({ 1, 259 }));
        QCOMPARE(str(batch.inputIds[1]), str({ 1, 0 }));
        QCOMPARE(str(batch.attentionMask[1]), str({ 1, 0 }));

        const auto qwen = ladder::loadTokenizer(folder("qwen2-bias"));
        batch = qwen->encodeBatch({ "Hello world", "a" }, 4);
        QCOMPARE(str(batch.inputIds[0]), str({ 304, 279, 299, 78 }));
        QCOMPARE(str(batch.inputIds[1]), str({ 67, 0, 0, 0 }));
        QCOMPARE(str(batch.attentionMask[0]), str({ 1, 1, 1, 1 }));
        const auto llama3 = ladder::loadTokenizer(folder("llama3-bpe"));
        batch = llama3->encodeBatch({ "Hello world" }, 3);
        QCOMPARE(batch.inputIds[0].size(), std::size_t(3));
        QCOMPARE(batch.inputIds[0][0], std::int64_t(300));
    }

    // HF's decoders: byte-fallback runs that are not UTF-8 give one U+FFFD per byte (Llama); the byte-level
    // decoder reads the bytes as from_utf8_lossy (one U+FFFD per maximal invalid part); ids the tokenizer
    // does not know are dropped; a negative id is an error.
    void decodeEdgeCases()
    {
        const std::string bad = "\xEF\xBF\xBD";
        const auto llama = ladder::loadTokenizer(folder("llama-gqa"));
        QCOMPARE(llama->decode({ 198 }), bad);
        QCOMPARE(llama->decode({ 198, 163, 198 }), bad + bad + bad);
        QCOMPARE(llama->decode({ 198, 163 }), std::string("\xC3\xA0"));
        QCOMPARE(llama->decode({ 1, 277, 2, 0, 0 }), std::string("<s> </s><unk><unk>"));
        QCOMPARE(llama->decode({ 1, 277, 2, 0, 0 }, true), std::string());
        QCOMPARE(llama->decode({ 259, 999 }), std::string("a"));
        QVERIFY(!errorOf([&] { llama->decode({ -1 }); }).empty());
        QVERIFY(!errorOf([&] { llama->idToPiece(999); }).empty());

        const auto qwen = ladder::loadTokenizer(folder("qwen2-bias"));
        QCOMPARE(qwen->decode({ 175, 256 }), bad);
        QCOMPARE(qwen->decode({ 223, 223, 67 }), std::string("  a"));
        QCOMPARE(qwen->decode({ 67, 318, 319 }), std::string("a")); // the model's rows 317..319
        QCOMPARE(qwen->decode({ 90, 223, 1 }), std::string("x <|bos|>"));
        QCOMPARE(qwen->decode({ 90, 223, 1 }, true), std::string("x "));
        QVERIFY(!errorOf([&] { qwen->decode({ -3 }); }).empty());
    }

    // Special tokens written in a text are split out as HF does (transformers 5 probes).
    void specialTokensInText()
    {
        const auto llama = ladder::loadTokenizer(folder("llama-gqa"));
        QCOMPARE(str(llama->encode("<s>Hello")), str({ 1, 1, 314, 278, 268, 280 }));
        QCOMPARE(
            str(llama->encode("Hello</s>world")), str({ 1, 277, 314, 278, 268, 280, 2, 294, 265, 286, 287 }));
        QCOMPARE(str(llama->encode("Hello </s> world")),
            str({ 1, 277, 314, 278, 268, 280, 277, 2, 270, 265, 286, 287 }));
        QCOMPARE(str(llama->encode("\xE2\x96\x81Hi")), str({ 1, 277, 314, 285 }));
        QCOMPARE(llama->decode(llama->encode("Hello </s> world"), true), std::string("Hello  world"));
        const auto qwen = ladder::loadTokenizer(folder("qwen2-bias"));
        QCOMPARE(str(qwen->encode("<|endoftext|>Hi")), str({ 2, 42, 75 }));
        QCOMPARE(str(qwen->encode("Hi<|pad|> x")), str({ 42, 75, 0, 223, 90 }));
    }

    // Long inputs: a 20,000-space word (BPE's merge queue, not a quadratic scan), twice (the word cache).
    void longInputs()
    {
        const auto qwen = ladder::loadTokenizer(folder("qwen2-bias"));
        const std::string text(20000, ' ');
        const auto ids = qwen->encode(text + "the end");
        QCOMPARE(ids, qwen->encode(text + "the end"));
        QCOMPARE(qwen->decode(ids), text + "the end");
        // HF's Llama decode drops the first space, also when the text began with it (as HF 5.25 does).
        const auto llama = ladder::loadTokenizer(folder("llama-gqa"));
        QCOMPARE(llama->decode(llama->encode(text + "the end"), true), text.substr(1) + "the end");
    }

    // Which file a folder's tokenizer comes from.
    void loaderPicksTheFile()
    {
        QTemporaryDir dir;
        const std::string d = dir.path().toStdString();
        QVERIFY(errorOf([&] {
            ladder::loadTokenizer(d);
        }).find("spiece.model, tokenizer.json and tokenizer.model")
            != std::string::npos);
        // Llama 2's folders: tokenizer.model beside a Metaspace tokenizer.json converted from it.
        fs::copy_file(folder("llama-gqa") + "/tokenizer.model", d + "/tokenizer.model");
        writeFile(d + "/tokenizer.json",
            R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}})");
        QCOMPARE(QString::fromStdString(ladder::loadTokenizer(d)->kind()), QString("llama-sentencepiece"));
        // A byte-level tokenizer.json is the model's own: it wins.
        fs::copy_file(folder("qwen2-bias") + "/tokenizer.json", d + "/tokenizer.json",
            fs::copy_options::overwrite_existing);
        fs::copy_file(folder("qwen2-bias") + "/tokenizer_config.json", d + "/tokenizer_config.json");
        QCOMPARE(QString::fromStdString(ladder::loadTokenizer(d)->kind()), QString("byte-level-bpe"));
    }

    void t5FolderLoadsT5()
    {
        LADDER_REQUIRE_FIXTURES();
        QTemporaryDir dir;
        const std::string d = dir.path().toStdString();
        fs::copy_file(ladder::test::fixture("t5-spiece/spiece.model"), d + "/spiece.model");
        const auto tokenizer = ladder::loadTokenizer(d);
        QCOMPARE(QString::fromStdString(tokenizer->kind()), QString("t5"));
        const ladder::T5Tokenizer direct(ladder::test::fixture("t5-spiece/spiece.model"));
        QCOMPARE(tokenizer->encode("The house is wonderful."), direct.encode("The house is wonderful."));
        QCOMPARE(tokenizer->vocabSize(), direct.vocabSize());
    }

    // `ladder tokenize --model DIR` reads any backbone folder; --spm and --model exclude each other.
    void cliTokenizesAFolder()
    {
        const auto qwen = QString::fromStdString(folder("qwen2-bias"));
        auto r = ladder::test::runCli({ "tokenize", "--model", qwen, "Hello world", "" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QCOMPARE(
            QString::fromStdString(nlohmann::json::parse(r.out).dump()), QString("[[304,279,299,78,70],[]]"));
        const auto llama = QString::fromStdString(folder("llama-gqa"));
        r = ladder::test::runCli({ "tokenize", "--model", llama, "Hello world" });
        QCOMPARE(QString::fromStdString(nlohmann::json::parse(r.out).dump()),
            QString("[[1,277,314,278,268,280,270,265,286,287]]"));
        r = ladder::test::runCli({ "tokenize", "--model", llama, "--no-special", "a" });
        QCOMPARE(QString::fromStdString(nlohmann::json::parse(r.out).dump()), QString("[[259]]"));
        r = ladder::test::runCli(
            { "tokenize", "--model", llama, "--decode", "--skip-special", "[1, 259, 270]" });
        QCOMPARE(QString::fromStdString(nlohmann::json::parse(r.out).dump()), QString("[\"a w\"]"));
        r = ladder::test::runCli({ "tokenize", "--model", llama, "--spm", llama + "/tokenizer.model", "a" });
        QVERIFY(r.exitCode != 0);
        r = ladder::test::runCli({ "tokenize", "a" });
        QCOMPARE(r.exitCode, 2);
        r = ladder::test::runCli({ "tokenize", "--model", llama + "/nothing-here", "a" });
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("looked for spiece.model") != std::string::npos, r.err.c_str());
    }

    // Errors name the file and, for tokenizer.json, the field.
    void errorsNameFileAndField()
    {
        QTemporaryDir dir;
        const std::string d = dir.path().toStdString();
        const std::string json = d + "/tokenizer.json";
        const auto qwen = nlohmann::json::parse(readFile(folder("qwen2-bias") + "/tokenizer.json"));
        const auto failWith = [&](const nlohmann::json& root, const std::string& field) {
            writeFile(json, root.dump());
            const std::string message = errorOf([&] { ladder::loadTokenizer(d); });
            QVERIFY2(message.find(json) != std::string::npos && message.find(field) != std::string::npos,
                qPrintable(QString::fromStdString("expected '" + field + "' in: " + message)));
        };
        writeFile(json, "{\"model\": ");
        QVERIFY(errorOf([&] { ladder::loadTokenizer(d); }).find(json) != std::string::npos);
        auto broken = qwen;
        broken["model"]["type"] = "Unigram";
        failWith(broken, "model.type");
        broken = qwen;
        broken["normalizer"] = { { "type", "Lowercase" } };
        failWith(broken, "normalizer.type");
        broken = qwen;
        broken["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
        failWith(broken, "pre_tokenizer.pretokenizers[0].pattern.Regex");
        broken = qwen;
        broken["model"]["merges"][3] = "nospace";
        failWith(broken, "model.merges[3]");
        broken = qwen;
        broken["decoder"] = { { "type", "WordPiece" } };
        failWith(broken, "decoder.type");
        broken = qwen;
        broken["post_processor"] = { { "type", "BertProcessing" } };
        failWith(broken, "post_processor.type");
        broken = qwen;
        broken["pre_tokenizer"] = { { "type", "Metaspace" } };
        failWith(broken, "pre_tokenizer");

        // A corrupt tokenizer.model.
        fs::remove(json);
        writeFile(d + "/tokenizer.model", "not a sentencepiece model at all");
        const std::string message = errorOf([&] { ladder::loadTokenizer(d); });
        QVERIFY2(message.find(d + "/tokenizer.model") != std::string::npos, message.c_str());
        // tokenizer_config.json naming a token the model lacks.
        fs::copy_file(folder("llama-gqa") + "/tokenizer.model", d + "/tokenizer.model",
            fs::copy_options::overwrite_existing);
        writeFile(d + "/tokenizer_config.json", R"({"pad_token": "<pad-that-is-not-there>"})");
        QVERIFY(errorOf([&] { ladder::loadTokenizer(d); }).find("pad_token") != std::string::npos);
        writeFile(d + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
        QVERIFY(errorOf([&] { ladder::loadTokenizer(d); }).find("add_bos_token") != std::string::npos);
    }

    // tokenizer_config.json's switches: add_eos_token appends </s>; legacy true prefixes every text piece
    // (ids as HF 5.25 gives them with LlamaTokenizer.from_pretrained(..., legacy=True) / add_eos_token=True).
    void llamaConfigSwitches()
    {
        ladder::TokenizerConfig config;
        config.addEosToken = true;
        config.addBosToken = false;
        const ladder::LlamaTokenizer withEos(folder("llama-gqa") + "/tokenizer.model", config);
        QCOMPARE(str(withEos.encode("a")), str({ 259, 2 }));
        QCOMPARE(withEos.specialTokensAdded(), std::size_t(1));
        config = {};
        config.legacy = true;
        const ladder::LlamaTokenizer legacy(folder("llama-gqa") + "/tokenizer.model", config);
        // "world" after </s> gets its "▁" too (HF's prepend_scheme "always").
        QCOMPARE(
            str(legacy.encode("Hello</s>world")), str({ 1, 277, 314, 278, 268, 280, 2, 270, 265, 286, 287 }));
    }
};

LADDER_TEST_GUILESS_MAIN(TestDecoderTokenizers)
#include "test_decoder_tokenizers.moc"
