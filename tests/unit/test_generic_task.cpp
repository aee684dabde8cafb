// The generic task reader (core/data/GenericTask, TextTable): JSONL, JSON, CSV and TSV files with their
// labels, splits and text columns, the errors of malformed files and labels, and the CSV / TSV parser.
#include <QtTest>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "TaskTestHelpers.h"
#include "TestSupport.h"
#include "data/GenericTask.h"
#include "data/Metrics.h"
#include "data/TextTable.h"
#include "util/Error.h"

using ladder::TextExample;
using ladder::test::task_data::errorOf;
using ladder::test::task_data::ids;
using ladder::test::task_data::writeFile;

class TestGenericTask : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void genericCsv()
    {
        const std::string dir = ladder::test::makeTempDir();
        // RFC 4180: quoted fields with commas, "" escapes and an embedded newline; CRLF line ends.
        writeFile(dir + "/train.csv",
            "text,extra,label\r\n"
            "\"Hello, world\",x,pos\r\n"
            "\"She said \"\"hi\"\"\",y,neg\r\n"
            "\"two\nlines\",z,pos\r\n"
            "plain,w,neutral\r\n");
        ladder::GenericTaskOptions options;
        options.path = dir + "/train.csv";
        options.textColumns = { "text" };
        options.taskName = "sentiment";
        options.validationFraction = 0;
        options.testFraction = 0;
        const auto splits = ladder::loadGenericTask(options);
        QCOMPARE(splits.train.size(), std::size_t(4));
        // Sorted label list by default.
        QCOMPARE(splits.info.labelNames, (std::vector<std::string> { "neg", "neutral", "pos" }));
        QCOMPARE(splits.info.labels, (std::vector<std::string> { "0", "1", "2" }));
        std::map<std::string, TextExample> byId;
        for (const auto& ex : splits.train)
            byId[ex.id] = ex;
        QCOMPARE(byId.at("train.csv:2").source, std::string("sentiment text: Hello, world"));
        QCOMPARE(byId.at("train.csv:2").target, std::string("2"));
        QCOMPARE(byId.at("train.csv:3").fields[0].second, std::string("She said \"hi\""));
        QCOMPARE(byId.at("train.csv:4").fields[0].second, std::string("two\nlines"));
        QCOMPARE(
            byId.at("train.csv:6").label, std::string("neutral")); // physical line, after a 2-line record
        // First-appearance order and label text as targets.
        options.labelOrder = ladder::GenericTaskOptions::LabelOrder::FirstAppearance;
        options.labelTextTargets = true;
        const auto text = ladder::loadGenericTask(options);
        QCOMPARE(text.info.labels, (std::vector<std::string> { "pos", "neg", "neutral" }));
        for (const auto& ex : text.train)
            QCOMPARE(ex.target, ex.label);
    }

    void genericJsonlAndTsv()
    {
        const std::string dir = ladder::test::makeTempDir();
        std::string jsonl;
        for (int i = 0; i < 50; ++i)
            jsonl += "{\"premise\": \"p" + std::to_string(i) + "\", \"hypothesis\": \"h\", \"score\": "
                + std::to_string(i % 6) + ".25, \"meta\": [1, 2]}\n";
        jsonl += "\n"; // a blank line is skipped
        writeFile(dir + "/sim.jsonl", jsonl);
        ladder::GenericTaskOptions options;
        options.path = dir + "/sim.jsonl";
        options.textColumns = { "premise", "hypothesis" };
        options.labelColumn = "score";
        options.kind = ladder::TaskKind::Regression;
        options.taskName = "sim";
        const auto splits = ladder::loadGenericTask(options);
        QCOMPARE(splits.validation.size(), std::size_t(5));
        QCOMPARE(splits.test.size(), std::size_t(5));
        QCOMPARE(splits.train.size(), std::size_t(40));
        QCOMPARE(splits.info.mainMetric, std::string(ladder::metric::kPearsonSpearman));
        const auto& ex = splits.train[0];
        QVERIFY(ex.source.rfind("sim premise: p", 0) == 0);
        QVERIFY(ex.source.find(" hypothesis: h") != std::string::npos);
        QCOMPARE(ex.target, ladder::formatScoreTarget(ex.score, 1));
        // Same seed -> same split; another seed -> another.
        QCOMPARE(ids(ladder::loadGenericTask(options).validation), ids(splits.validation));
        options.seed = 1;
        QVERIFY(ids(ladder::loadGenericTask(options).validation) != ids(splits.validation));

        // TSV with separate validation and test files; a .json array file.
        writeFile(dir + "/train.tsv", "sentence\tlabel\na \"b\tyes\nc\tno\n");
        writeFile(dir + "/dev.tsv", "sentence\tlabel\nd\tno\n");
        writeFile(dir + "/test.json",
            "[{\"sentence\": \"e\", \"label\": \"yes\"}, {\"sentence\": 5, \"label\": \"no\"}]");
        ladder::GenericTaskOptions tsv;
        tsv.path = dir + "/train.tsv";
        tsv.validationPath = dir + "/dev.tsv";
        tsv.testPath = dir + "/test.json";
        tsv.textColumns = { "sentence" };
        tsv.taskName = "";
        const auto files = ladder::loadGenericTask(tsv);
        QCOMPARE(files.train.size(), std::size_t(2));
        QCOMPARE(files.train[0].source, std::string("sentence: a \"b")); // no prefix, no quoting in TSV
        QCOMPARE(files.validation.size(), std::size_t(1));
        QCOMPARE(files.test.size(), std::size_t(2));
        QCOMPARE(files.test[1].source, std::string("sentence: 5"));
        QCOMPARE(files.test[1].id, std::string("test.json: item 2"));
    }

    void malformedGeneric_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QByteArray>("content");
        QTest::addColumn<QString>("kind");
        QTest::addColumn<QString>("expected");
        QTest::newRow("jsonl missing label")
            << "train.jsonl" << QByteArray("{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\"}\n")
            << "classification"
            << "train.jsonl:2: column 'label' is missing";
        QTest::newRow("csv missing label column")
            << "train.csv" << QByteArray("text,lbl\na,x\n") << "classification"
            << "train.csv:2: column 'label' is missing";
        QTest::newRow("csv wrong count")
            << "train.csv" << QByteArray("text,label\na,x\nb,y\n\"c,d\",e,f\n") << "classification"
            << "train.csv:4: expected 2 comma-separated fields";
        QTest::newRow("csv unclosed quote")
            << "train.csv" << QByteArray("text,label\na,x\nb,\"y\nc,z\n") << "classification"
            << "train.csv:3: field 2 opens a quote that is never closed";
        QTest::newRow("csv text after quote")
            << "train.csv" << QByteArray("text,label\n\"a\"b,x\n") << "classification"
            << "train.csv:2: field 1 has text after its closing quote";
        QTest::newRow("csv duplicate column")
            << "train.csv" << QByteArray("text,text,label\na,b,x\n") << "classification"
            << "train.csv:1: column 'text' appears twice";
        QTest::newRow("jsonl bad json")
            << "train.jsonl" << QByteArray("{\"text\":\"a\",\"label\":\"x\"}\n{\"text\": \n")
            << "classification"
            << "train.jsonl:2: not valid JSON";
        QTest::newRow("json array of numbers") << "train.jsonl" << QByteArray("[1, 2]\n") << "classification"
                                               << "train.jsonl: item 1: expected a JSON object";
        QTest::newRow("jsonl array line")
            << "train.jsonl" << QByteArray("{\"text\":\"a\",\"label\":\"x\"}\n\"just text\"\n")
            << "classification"
            << "train.jsonl:2: expected a JSON object";
        QTest::newRow("jsonl structured text")
            << "train.jsonl" << QByteArray("{\"text\":[\"a\"],\"label\":\"x\"}\n") << "classification"
            << "train.jsonl:1: column 'text' holds an array";
        QTest::newRow("regression not a number")
            << "train.tsv" << QByteArray("text\tlabel\na\t0.5\nb\thigh\n") << "regression"
            << "train.tsv:3: label 'high' in column 'label' is not a number";
        QTest::newRow("empty label") << "train.tsv" << QByteArray("text\tlabel\na\t \n") << "classification"
                                     << "train.tsv:2: column 'label' is empty";
        QTest::newRow("empty file") << "train.csv" << QByteArray("") << "classification"
                                    << "train.csv: file is empty";
        QTest::newRow("header only") << "train.csv" << QByteArray("text,label\n") << "classification"
                                     << "train.csv: no data rows";
        QTest::newRow("binary") << "train.jsonl" << QByteArray("\x1f\x8b\x08\x00\x00\x00", 6)
                                << "classification"
                                << "train.jsonl:1: not UTF-8 text (byte 0x8b";
        QTest::newRow("NUL") << "train.csv" << QByteArray("text,label\na\0b,x\n", 17) << "classification"
                             << "train.csv:2: binary data";
        QTest::newRow("unknown extension")
            << "train.txt" << QByteArray("text,label\na,x\n") << "classification"
            << "cannot tell the format";
        QTest::newRow("missing file") << "" << QByteArray() << "classification"
                                      << "file not found";
    }
    void malformedGeneric()
    {
        QFETCH(QString, file);
        QFETCH(QByteArray, content);
        QFETCH(QString, kind);
        QFETCH(QString, expected);
        const std::string dir = ladder::test::makeTempDir();
        ladder::GenericTaskOptions options;
        options.path = dir + "/" + (file.isEmpty() ? std::string("absent.csv") : file.toStdString());
        if (!file.isEmpty())
            writeFile(options.path, content.toStdString());
        options.textColumns = { "text" };
        options.kind = kind == "regression" ? ladder::TaskKind::Regression : ladder::TaskKind::Classification;
        options.validationFraction = 0;
        options.testFraction = 0;
        const std::string message = errorOf([&] { ladder::loadGenericTask(options); });
        VERIFY_CONTAINS(message, expected.toStdString());
    }

    void genericLabelErrors()
    {
        const std::string dir = ladder::test::makeTempDir();
        writeFile(dir + "/train.csv", "text,label\na,neg\nb,pos\n");
        writeFile(dir + "/dev.csv", "text,label\nc,pos\nd,maybe\n");
        ladder::GenericTaskOptions options;
        options.path = dir + "/train.csv";
        options.validationPath = dir + "/dev.csv";
        options.textColumns = { "text" };
        options.testFraction = 0;
        VERIFY_CONTAINS(errorOf([&] { ladder::loadGenericTask(options); }),
            "dev.csv:3: unknown label 'maybe' in column 'label'; the labels of train.csv are 'neg', 'pos'");
        options.validationPath.clear();
        options.labels = { "neg" };
        VERIFY_CONTAINS(
            errorOf([&] { ladder::loadGenericTask(options); }), "train.csv:3: unknown label 'pos'");
        options.labels.clear();
        options.validationFraction = 0.5;
        options.testFraction = 0.5;
        VERIFY_CONTAINS(errorOf([&] { ladder::loadGenericTask(options); }), "must be below 1");
        options.validationFraction = 0.4;
        options.testFraction = 0.4;
        VERIFY_CONTAINS(errorOf([&] { ladder::loadGenericTask(options); }), "too few");
        options.textColumns = {};
        VERIFY_CONTAINS(errorOf([&] { ladder::loadGenericTask(options); }), "no text columns");
    }

    void csvParser()
    {
        using ladder::TextTable;
        const auto rows = TextTable::splitCsv("a,b\n\n\"x\"\"y\",\"\"\r\n,\n\"multi\r\nline\",z", "t.csv");
        QCOMPARE(rows.size(), std::size_t(4));
        QCOMPARE(rows[0].fields, (std::vector<std::string> { "a", "b" }));
        QCOMPARE(rows[1].line, std::size_t(3));
        QCOMPARE(rows[1].fields, (std::vector<std::string> { "x\"y", "" }));
        QCOMPARE(rows[2].fields, (std::vector<std::string> { "", "" }));
        QCOMPARE(rows[3].line, std::size_t(5));
        QCOMPARE(rows[3].fields, (std::vector<std::string> { "multi\r\nline", "z" }));
        const auto tsv = TextTable::splitTsv("a\tb\r\nc\"\td\re\tf");
        QCOMPARE(tsv.size(), std::size_t(3));
        QCOMPARE(tsv[1].fields, (std::vector<std::string> { "c\"", "d" }));
        QCOMPARE(tsv[2].line, std::size_t(3));
    }
};

QTEST_GUILESS_MAIN(TestGenericTask)
#include "test_generic_task.moc"
