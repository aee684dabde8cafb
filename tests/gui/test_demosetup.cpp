// DemoBuildDialog (the first start without the built-in demo): `ladder demo`'s stderr lines parsed into
// stage and steps, a build that finishes, fails or is cancelled (SIGINT, as ladder's Ctrl+C), a missing
// program, and the real `ladder demo` refusing a missing WordNet folder. The children are small scripts
// that print what ladder demo prints (app/ladder/DemoCommands.cpp's ProgressBar, non-tty form), so the
// tests take about a second; the real five-minute build is checked by hand (docs/PACKAGING.md).
#include <QFile>
#include <QProgressBar>
#include <QTemporaryDir>
#include <QtTest>

#include "DemoSetupDialog.h"
#include "TestSupport.h"

using namespace ladder::widgets;

namespace {

// A fake `ladder` in dir: `demo` runs `body` (bash).
QString writeFakeLadder(const QTemporaryDir& dir, const QString& body)
{
    const QString path = dir.filePath(QStringLiteral("ladder"));
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        return {};
    file.write(
        "#!/usr/bin/env bash\n[[ \"$1\" == demo ]] || { echo \"fake ladder: expected demo, got $1\" >&2; "
        "exit 2; }\n");
    file.write(body.toUtf8());
    file.close();
    file.setPermissions(QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
    return path;
}

const char* const kStepLine
    = "[%1] step %2/%3  loss 5.125 (avg 5.301)  lr 1.0e-03  3120 tok/s  elapsed 0:%4  "
      "ETA 0:42";

QString stepLine(int step, int total)
{
    const int filled = 24 * step / total;
    return QString::fromLatin1(kStepLine)
        .arg(QString(filled, QLatin1Char('#')) + QString(24 - filled, QLatin1Char('.')))
        .arg(step)
        .arg(total)
        .arg(step, 2, 10, QLatin1Char('0'));
}

} // namespace

class TestDemoSetup : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void parsesStageAndStepLines()
    {
        const DemoProgressLine stage
            = parseDemoProgressLine(QStringLiteral("ladder demo: building the WordNet tasks in /c/tasks"));
        QVERIFY(!stage.isStep);
        QCOMPARE(stage.text, QStringLiteral("building the WordNet tasks in /c/tasks"));
        const DemoProgressLine step = parseDemoProgressLine(stepLine(120, 2000));
        QVERIFY(step.isStep);
        QCOMPARE(step.step, qint64(120));
        QCOMPARE(step.totalSteps, qint64(2000));
        QVERIFY2(step.text.startsWith(QStringLiteral("step 120/2000  loss 5.125")), qPrintable(step.text));
        QVERIFY(step.text.endsWith(QStringLiteral("ETA 0:42")));
        QVERIFY(!parseDemoProgressLine(QStringLiteral("ladder: pretrained 4000000 parameters")).isStep);
    }

    void buildShowsStepsAndFinishes()
    {
        QTemporaryDir dir;
        QString body = QStringLiteral("echo 'ladder demo: building the WordNet tasks in /c/tasks' >&2\n"
                                      "echo 'ladder demo: building the demo backbone in /c/backbone' >&2\n");
        for (int step : { 1, 2, 3, 4 })
            body += QStringLiteral("echo '%1' >&2\nsleep 0.05\n").arg(stepLine(step, 4));
        body += QStringLiteral("echo 'ladder: pretrained 4 parameters' >&2\necho /c/backbone\n");
        DemoBuildDialog dialog(writeFakeLadder(dir, body));
        QVERIFY(dialog.start());
        QCOMPARE(dialog.outcome(), DemoBuildDialog::Outcome::Running);
        QTRY_COMPARE_WITH_TIMEOUT(dialog.outcome(), DemoBuildDialog::Outcome::Built, 10000);
        QCOMPARE(dialog.result(), int(QDialog::Accepted));
        QCOMPARE(dialog.step(), qint64(4));
        QCOMPARE(dialog.totalSteps(), qint64(4));
        auto* bar = dialog.findChild<QProgressBar*>(QStringLiteral("demoProgress"));
        QVERIFY(bar);
        QCOMPARE(bar->maximum(), 4);
        QCOMPARE(bar->value(), 4);
        QCOMPARE(dialog.message(), QStringLiteral("ladder: pretrained 4 parameters"));
    }

    void failureKeepsTheLastLines()
    {
        QTemporaryDir dir;
        DemoBuildDialog dialog(writeFakeLadder(dir,
            QStringLiteral("echo 'ladder demo: building the WordNet tasks in /c/tasks' >&2\n"
                           "echo 'ladder demo: error: /nowhere/data.noun is missing' >&2\nexit 1\n")));
        QVERIFY(dialog.start());
        QTRY_COMPARE_WITH_TIMEOUT(dialog.outcome(), DemoBuildDialog::Outcome::Failed, 10000);
        QCOMPARE(dialog.result(), int(QDialog::Rejected));
        QVERIFY2(
            dialog.message().contains(QStringLiteral("exited with status 1")), qPrintable(dialog.message()));
        QVERIFY2(dialog.message().contains(QStringLiteral("/nowhere/data.noun is missing")),
            qPrintable(dialog.message()));
    }

    void cancelSendsSigint()
    {
        // ladder's Ctrl+C: it says so, stops at the next step and exits 130 (kExitCancelled).
        QTemporaryDir dir;
        const QString marker = dir.filePath(QStringLiteral("interrupted"));
        DemoBuildDialog dialog(writeFakeLadder(dir,
            QStringLiteral("trap 'echo \"ladder: interrupted\" >&2; touch %1; exit 130' INT\n"
                           "echo '%2' >&2\nfor i in $(seq 600); do sleep 0.05; done\nexit 0\n")
                .arg(marker, stepLine(1, 1000))));
        QVERIFY(dialog.start());
        QTRY_COMPARE_WITH_TIMEOUT(dialog.step(), qint64(1), 10000);
        QElapsedTimer clock;
        clock.start();
        dialog.cancel();
        QTRY_COMPARE_WITH_TIMEOUT(dialog.outcome(), DemoBuildDialog::Outcome::Cancelled, 10000);
        QVERIFY2(clock.elapsed() < DemoBuildDialog::kCancelGraceMs, "ended by SIGKILL, not by its SIGINT");
        QVERIFY(QFile::exists(marker));
        QCOMPARE(dialog.result(), int(QDialog::Rejected));
    }

    void missingProgramIsAClearFailure()
    {
        DemoBuildDialog dialog(QStringLiteral("/nonexistent/ladder"));
        QVERIFY(!dialog.start());
        QCOMPARE(dialog.outcome(), DemoBuildDialog::Outcome::Failed);
        QVERIFY2(dialog.message().contains(QStringLiteral("/nonexistent/ladder: no such executable")),
            qPrintable(dialog.message()));
    }

    void realLadderDemoReportsAMissingWordNet()
    {
        // The real program, into an empty demo folder, with WordNet's folder missing: it fails in a second
        // (before any pretraining), and the dialog shows its error line.
        const QString cli = QString::fromStdString(ladder::test::cliPath());
        if (!QFileInfo(cli).isExecutable())
            QSKIP("the ladder executable is not built");
        QTemporaryDir cache;
        DemoBuildDialog dialog(cli);
        QVERIFY(dialog.start({ QStringLiteral("--dir"), cache.filePath(QStringLiteral("demo")),
            QStringLiteral("--wordnet-dir"), cache.filePath(QStringLiteral("no-wordnet")) }));
        QTRY_COMPARE_WITH_TIMEOUT(dialog.outcome(), DemoBuildDialog::Outcome::Failed, 60000);
        QVERIFY2(dialog.message().contains(QStringLiteral("no-wordnet")), qPrintable(dialog.message()));
        QVERIFY2(dialog.message().contains(QStringLiteral("wordnet-base")), qPrintable(dialog.message()));
    }
};

QTEST_MAIN(TestDemoSetup)
#include "test_demosetup.moc"
