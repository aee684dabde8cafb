// `ladder tokenize`, run as a process: encode, decode, and bad input that must fail in one line.
#include <QtTest>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "TestSupport.h"

namespace {

QString spm()
{
    return QString::fromStdString(ladder::test::fixture("t5-spiece/spiece.model"));
}

// The output as compact JSON, or an explanation when it is not JSON.
QString normalizedJson(const std::string& out)
{
    const auto json = nlohmann::json::parse(out, nullptr, false);
    return json.is_discarded() ? QStringLiteral("not JSON: ") + QString::fromStdString(out)
                               : QString::fromStdString(json.dump());
}

} // namespace

class TestCliTokenize : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void encode()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto r = ladder::test::runCli({ "tokenize", "--spm", spm(), "Hello World!, how are you?",
            "The <extra_id_0> walks in <extra_id_1> park", "" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QCOMPARE(std::count(r.out.begin(), r.out.end(), '\n'), 1L);
        QCOMPARE(normalizedJson(r.out),
            QStringLiteral("[[8774,1150,55,6,149,33,25,58,1],[37,32099,10681,16,32098,2447,1],[1]]"));
    }

    void dashesAndBrackets()
    {
        LADDER_REQUIRE_FIXTURES();
        // "[a,b]" stays one TEXT (CLI11 would split it); after "--" a TEXT may start with "-".
        const auto r = ladder::test::runCli({ "tokenize", "--spm", spm(), "--", "[a,b]", "--decode", "-5" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto out = nlohmann::json::parse(r.out, nullptr, false);
        QVERIFY2(out.is_array() && out.size() == 3, r.out.c_str());
        QCOMPARE(QString::fromStdString(out[2].dump()), QStringLiteral("[3,4525,1]"));
    }

    void encodeUnicode()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto r
            = ladder::test::runCli({ "tokenize", "--spm", spm(), QStringLiteral("Café naïve façade") });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QCOMPARE(normalizedJson(r.out), QStringLiteral("[[18131,3,29,9,2,162,24369,1]]"));
    }

    void decode()
    {
        LADDER_REQUIRE_FIXTURES();
        const QStringList ids { "[8774, 1150, 55, 6, 149, 33, 25, 58, 1]", "[0, 1960, 19, 2, 1245, 239, 1]",
            "[]" };
        auto r = ladder::test::runCli(QStringList { "tokenize", "--spm", spm(), "--decode" } + ids);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QCOMPARE(normalizedJson(r.out),
            QStringLiteral(R"(["Hello World!, how are you?</s>","<pad> Today is<unk> nice day</s>",""])"));

        r = ladder::test::runCli(
            QStringList { "tokenize", "--spm", spm(), "--decode", "--skip-special" } + ids);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QCOMPARE(normalizedJson(r.out),
            QStringLiteral(R"(["Hello World!, how are you?","Today is nice day",""])"));

        r = ladder::test::runCli({ "tokenize", "--spm", spm(), "--decode",
            QStringLiteral("[18131, 3, 29, 9, 2, 162, 24369, 1]") });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QCOMPARE(QString::fromStdString(nlohmann::json::parse(r.out)[0].get<std::string>()),
            QStringLiteral("Café na<unk> ve façade</s>"));
    }

    void badInput_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<QString>("mention"); // what the error line must name
        QTest::addColumn<int>("code"); // 1: the input is wrong; 2: the command line is (README's table)
        const QString missing = QString::fromStdString(ladder::test::makeTempDir()) + "/no-such-spiece.model";
        QTest::newRow("missing model")
            << QStringList { "tokenize", "--spm", missing, "hello" } << missing << 1;
        QTest::newRow("garbage model")
            << QStringList { "tokenize", "--spm", QString::fromStdString(ladder::test::cliPath()), "hi" }
            << QString::fromStdString(ladder::test::cliPath()) << 1;
        QTest::newRow("ids not JSON")
            << QStringList { "tokenize", "--spm", spm(), "--decode", "[1, 2" } << "[1, 2" << 1;
        QTest::newRow("ids not integers")
            << QStringList { "tokenize", "--spm", spm(), "--decode", "[8774, \"x\"]" } << "argument 1" << 1;
        QTest::newRow("not an array")
            << QStringList { "tokenize", "--spm", spm(), "--decode", "[1]", "{\"a\": 1}" } << "argument 2"
            << 1;
        QTest::newRow("id out of range")
            << QStringList { "tokenize", "--spm", spm(), "--decode", "[32100]" } << "32100" << 1;
        QTest::newRow("negative id") << QStringList { "tokenize", "--spm", spm(), "--decode", "[-1]" } << "-1"
                                     << 1;
        QTest::newRow("huge id") << QStringList { "tokenize", "--spm", spm(), "--decode",
            "[18446744073709551615]" }
                                 << "argument 1" << 1;
        QTest::newRow("unknown option")
            << QStringList { "tokenize", "--spm", spm(), "hi", "--bogus" } << "--bogus" << 2;
    }

    void badInput()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QStringList, args);
        QFETCH(QString, mention);
        QFETCH(int, code);
        const auto r = ladder::test::runCli(args);
        QVERIFY2(r.exitCode == code,
            qPrintable(
                QStringLiteral("exit code %1, expected %2 (a crash is -1)").arg(r.exitCode).arg(code)));
        QVERIFY2(r.out.empty(), r.out.c_str());
        QCOMPARE(std::count(r.err.begin(), r.err.end(), '\n'), 1L);
        QVERIFY2(r.err.rfind("ladder tokenize: ", 0) == 0, r.err.c_str());
        QVERIFY2(QString::fromStdString(r.err).contains(mention), r.err.c_str());
    }
};

LADDER_TEST_GUILESS_MAIN(TestCliTokenize)
#include "test_cli_tokenize.moc"
