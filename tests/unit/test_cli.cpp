#include <QtTest>

#include "TestSupport.h"

class TestCli : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void version()
    {
        const auto r = ladder::test::runCli({"--version"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY(r.out.find("LibTorch") != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
