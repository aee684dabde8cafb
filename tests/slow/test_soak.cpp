// The soak (issue #17, docs/RELIABILITY.md "The soak"): the real `ladderbench` under Xvfb drains a queue
// of 20 runs on a tiny backbone, queued into its store before it starts (`--start-queue`), while faults
// meet five of them:
//   - an injected NaN loss (LADDER_FAULT_INJECT="nan@2 run=ID"),
//   - a real out-of-memory: the worker's address space capped (LADDER_WORKER_RLIMIT_AS="MiB run=ID"),
//   - a cancel: SIGTERM to the run's `ladder worker` (what the window's Cancel escalates to),
//   - a backbone whose model.safetensors is overwritten with garbage after the run was queued,
//   - a worker that dies of SIGSEGV mid-step (LADDER_WORKER_FAULT="SIGSEGV step=2 run=ID").
// The window stays up, every run ends in its state with a one-line reason, the store passes
// `PRAGMA integrity_check`. Then the window is killed with SIGKILL while a run trains: its worker dies with
// it, and the window started again finds the run interrupted and the two runs behind it queued in order.
#include <csignal>
#include <fstream>
#include <functional>
#include <random>

#include <QDateTime>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QProcess>
#include <QStandardPaths>
#include <QtTest>

#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"
#include "train/StoreRecorder.h"

using namespace ladder;

namespace {

// Resume (issue #17): the trainer's state file at "<store file>.files/state/run-<id>.state", saved every
// training.save_state_every_steps steps. The soak's runs save it every step and the killed run's file is
// checked; false turns both off (the soak was written before resume landed, b215cc7).
constexpr bool kResumeLanded = true;

constexpr int kRuns = 20; // the soak's queue
constexpr int kNanRun = 3, kOomRun = 5, kCancelRun = 7, kCorruptRun = 9, kSignalRun = 11;
constexpr int kKilledRun = 21; // trains when the window is killed; 22 and 23 wait behind it
constexpr int kAllRuns = 23;
constexpr int kSoakTimeoutMs = 240000;
constexpr int kOomHeadroomMiB = 64; // LADDER_WORKER_RLIMIT_AS for the out-of-memory run

QString stateName(RunState state)
{
    return QString::fromLatin1(toString(state));
}

// A short run on the tiny demo (LADDER_DEMO_DIR): 6 steps of batch 8, one evaluation, one thread. The
// methods take turns.
nlohmann::json shortSpec(int seed)
{
    static const char* methods[] = { "lora", "bitfit", "ladder" };
    nlohmann::json method = { { "method", methods[seed % 3] } };
    if (method["method"] == "lora")
        method["rank"] = 4;
    if (method["method"] == "ladder")
        method["r"] = 4;
    return { { "name", "soak " + std::to_string(seed) }, { "backbone", "demo" },
        { "task", { { "type", "demo" } } }, { "method", method },
        { "training",
            { { "max_steps", 6 }, { "batch_size", 8 }, { "warmup_steps", 1 }, { "threads", 1 },
                { "max_source_length", 16 }, { "max_eval_examples", 8 }, { "learning_rate", 0.01 } } },
        { "seed", seed } };
}

// The process state of `pid` from /proc ('R', 'S', 'Z', ...), or 0 when there is no such process.
char processState(qint64 pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat))
        return 0;
    const auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : 0;
}

QString commandLineOf(qint64 pid)
{
    QFile f(QStringLiteral("/proc/%1/cmdline").arg(pid));
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return QString::fromLocal8Bit(f.readAll().replace('\0', ' ')).trimmed();
}

QString tail(const QString& path, int lines = 30)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return QStringLiteral("(no %1)").arg(path);
    const QStringList all = QString::fromLocal8Bit(f.readAll()).split(QLatin1Char('\n'));
    return all.mid(std::max<qsizetype>(0, all.size() - lines)).join(QLatin1Char('\n'));
}

} // namespace

class TestSoak : public QObject {
    Q_OBJECT

private:
    QString m_root;
    QString m_store;
    std::string m_demo;
    QProcess m_xvfb;
    QString m_display;
    ResultsStore m_reader; // read-only: the test never marks or changes a run itself

    // The workbench as a user starts it, on the Xvfb display, with its settings and data under m_root.
    std::unique_ptr<QProcess> startWorkbench(const QStringList& extraArgs, const QStringList& env, int n)
    {
        const QString program = QFileInfo(QString::fromStdString(test::cliPath()))
                                    .dir()
                                    .filePath(QStringLiteral("ladderbench"));
        auto p = std::make_unique<QProcess>();
        QProcessEnvironment e = QProcessEnvironment::systemEnvironment();
        e.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("xcb"));
        e.insert(QStringLiteral("DISPLAY"), m_display);
        e.insert(QStringLiteral("XDG_CONFIG_HOME"), m_root + QStringLiteral("/config"));
        e.insert(QStringLiteral("XDG_DATA_HOME"), m_root + QStringLiteral("/data"));
        e.insert(QStringLiteral("LADDER_DEMO_DIR"), QString::fromStdString(m_demo));
        for (const QString& kv : env)
            e.insert(kv.section(QLatin1Char('='), 0, 0), kv.section(QLatin1Char('='), 1));
        p->setProcessEnvironment(e);
        p->setStandardOutputFile(QStringLiteral("%1/workbench-%2.out").arg(m_root).arg(n));
        p->setStandardErrorFile(QStringLiteral("%1/workbench-%2.err").arg(m_root).arg(n));
        p->start(program, QStringList { QStringLiteral("--store"), m_store } + extraArgs);
        if (!p->waitForStarted(10000))
            qFatal("cannot start %s: %s", qPrintable(program), qPrintable(p->errorString()));
        return p;
    }

    QString workbenchErr(int n) const
    {
        return tail(QStringLiteral("%1/workbench-%2.err").arg(m_root).arg(n));
    }

    RunRecord run(qint64 id)
    {
        RunRecord r;
        std::string error;
        if (!m_reader.getRun(id, &r, &error))
            qFatal("reading run %lld: %s", static_cast<long long>(id), error.c_str());
        return r;
    }

    std::vector<qint64> queuedInOrder()
    {
        RunFilter filter;
        filter.statuses = { RunState::Queued };
        filter.order = RunFilter::Order::QueuePosition;
        std::vector<RunRecord> runs;
        std::string error;
        if (!m_reader.listRuns(filter, &runs, &error))
            qFatal("listing the queue: %s", error.c_str());
        std::vector<qint64> ids;
        for (const auto& r : runs)
            ids.push_back(r.id);
        return ids;
    }

    static bool isFinal(RunState s) { return s != RunState::Queued && s != RunState::Running; }

    // The run's state and its reason: one line of at most 1,000 characters holding every word of `words`.
    void expectRun(qint64 id, RunState state, const QStringList& words)
    {
        const RunRecord r = run(id);
        const QString reason = QString::fromStdString(r.errorMessage);
        const auto time = [](const std::string& iso) {
            return QDateTime::fromString(QString::fromStdString(iso), Qt::ISODateWithMs);
        };
        qInfo("run %lld (%.1f s): %s%s%s", static_cast<long long>(id),
            time(r.startedAt).msecsTo(time(r.finishedAt)) / 1000.0, qPrintable(stateName(r.status)),
            reason.isEmpty() ? "" : ": ", qPrintable(reason));
        QVERIFY2(r.status == state,
            qPrintable(QStringLiteral("run %1 is %2 (%3), expected %4")
                           .arg(id)
                           .arg(stateName(r.status), reason, stateName(state))));
        if (state == RunState::Finished) {
            QVERIFY2(reason.isEmpty(), qPrintable(reason));
            QVERIFY(r.figures.bestValidationMetric.has_value());
            std::string path, error;
            QVERIFY2(m_reader.verifyCheckpoint(id, &path, &error), error.c_str());
            return;
        }
        std::vector<LogLine> log;
        if (m_reader.getLogs(id, 0, &log))
            for (const auto& line : log)
                qInfo("    log: %s: %s", toString(line.level), line.message.c_str());
        QVERIFY2(!reason.isEmpty() && !reason.contains(QLatin1Char('\n')) && reason.size() <= 1000,
            qPrintable(QStringLiteral("run %1's reason is not one readable line: '%2'").arg(id).arg(reason)));
        for (const QString& w : words)
            QVERIFY2(reason.contains(w, Qt::CaseInsensitive),
                qPrintable(QStringLiteral("run %1's reason lacks '%2': %3").arg(id).arg(w, reason)));
    }

    // The top-level windows on the Xvfb display, as xwininfo lists them ("" without xwininfo: x11-utils).
    QString windowsOnDisplay()
    {
        const QString xwininfo = QStandardPaths::findExecutable(QStringLiteral("xwininfo"));
        if (xwininfo.isEmpty())
            return {};
        QProcess p;
        p.start(xwininfo,
            { QStringLiteral("-root"), QStringLiteral("-tree"), QStringLiteral("-display"), m_display });
        p.waitForFinished(10000);
        return QString::fromUtf8(p.readAllStandardOutput());
    }

    // The window is on the display with the store in its title, and so is one error box per failed run.
    void expectWindows(const std::vector<int>& failedRuns)
    {
        QStringList expected { QStringLiteral("\"results.sqlite — LadderBench\"") };
        for (int id : failedRuns)
            expected << QStringLiteral("\"Run %1 failed").arg(id);
        QString windows;
        const auto allShown = [&] {
            for (const QString& title : expected)
                if (!windows.contains(title))
                    return false;
            return true;
        };
        QElapsedTimer wait;
        wait.start();
        while (!(windows = windowsOnDisplay()).isEmpty() && !allShown() && wait.elapsed() < 15000)
            QTest::qWait(250);
        if (windows.isEmpty()) {
            qInfo("xwininfo (x11-utils) is missing: the windows on the display are not checked");
            return;
        }
        QVERIFY2(
            allShown(), qPrintable(expected.join(QStringLiteral(", ")) + QStringLiteral(" in:\n") + windows));
    }

    void expectIntegrity()
    {
        QCOMPARE(QString::fromStdString(test::rawQuery(m_store.toStdString(), "PRAGMA integrity_check")),
            QStringLiteral("ok"));
    }

private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        m_root = QString::fromStdString(test::makeTempDir());
        m_demo = test::makeTinyDemo(m_root.toStdString());
        m_store = m_root + QStringLiteral("/soak/results.sqlite");

        // A display of our own: Xvfb picks a free one and writes its number on stdout (-displayfd).
        m_xvfb.start(QStringLiteral("Xvfb"),
            { QStringLiteral("-displayfd"), QStringLiteral("1"), QStringLiteral("-screen"),
                QStringLiteral("0"), QStringLiteral("1280x800x24"), QStringLiteral("-nolisten"),
                QStringLiteral("tcp") });
        QString why;
        if (!m_xvfb.waitForStarted(10000))
            why = QStringLiteral("Xvfb could not start: %1").arg(m_xvfb.errorString());
        else if (!m_xvfb.waitForReadyRead(15000))
            why = QStringLiteral("Xvfb gave no display number within 15 s: %1")
                      .arg(QString::fromLocal8Bit(m_xvfb.readAllStandardError()).trimmed());
        if (!why.isEmpty()) {
            if (test::runningInCi())
                QFAIL(qPrintable(why)); // setup.sh installs xvfb: CI must run the soak
            test::noteSkippedForMissingProgram(why.toStdString());
            QSKIP(qPrintable(why));
        }
        m_display = QStringLiteral(":") + QString::fromLatin1(m_xvfb.readAllStandardOutput()).trimmed();
        qInfo("Xvfb on display %s", qPrintable(m_display));
    }

    void cleanupTestCase()
    {
        if (m_xvfb.state() != QProcess::NotRunning) {
            m_xvfb.terminate();
            m_xvfb.waitForFinished(5000);
        }
    }

    void twentyRunsThenSigkill()
    {
        QElapsedTimer clock;
        clock.start();

        // The corrupted run's backbone: a folder of its own, intact when queued.
        const std::string ownBackbone = m_root.toStdString() + "/own-backbone";
        test::writeTinyBackbone(ownBackbone, 11);

        // ---- The queue, written into the store before the window starts ---------------------------------
        std::vector<NewRun> runs;
        for (int id = 1; id <= kAllRuns; ++id) {
            nlohmann::json spec = shortSpec(id);
            if (id == kOomRun) { // full fine-tuning of a batch of 48: more than the capped address space
                spec["method"] = { { "method", "full" } };
                spec["training"]["batch_size"] = 48;
            }
            if (id == kCancelRun || id == kKilledRun)
                spec["training"]["max_steps"] = 5000; // ends only when stopped
            if (id == kCorruptRun)
                spec["backbone"] = ownBackbone;
            if (kResumeLanded)
                spec["training"]["save_state_every_steps"] = 1;
            runs.push_back(
                newRunFor(RunSpec::fromJson(spec, "soak run " + std::to_string(id)), RunState::Queued));
        }
        {
            ResultsStore store;
            std::vector<std::int64_t> ids;
            std::string error;
            QVERIFY2(store.open(m_store.toStdString(), &error) && store.createRuns(runs, &ids, &error),
                error.c_str());
            QCOMPARE(ids.front(), std::int64_t(1));
            QCOMPARE(ids.back(), std::int64_t(kAllRuns));
        }
        std::string error;
        QVERIFY2(
            m_reader.open(m_store.toStdString(), ResultsStore::OpenMode::ReadOnly, &error), error.c_str());

        // ---- The window drains the queue ----------------------------------------------------------------
        const auto workbench = startWorkbench({ QStringLiteral("--start-queue") },
            { QStringLiteral("LADDER_FAULT_INJECT=nan@2 run=%1").arg(kNanRun),
                QStringLiteral("LADDER_WORKER_RLIMIT_AS=%1 run=%2").arg(kOomHeadroomMiB).arg(kOomRun),
                QStringLiteral("LADDER_WORKER_FAULT=SIGSEGV step=2 run=%1").arg(kSignalRun) },
            1);
        bool corrupted = false, cancelled = false;
        qint64 cancelledWorker = 0;
        int done = 0;
        while (done < kRuns) {
            QTest::qWait(100);
            QVERIFY2(workbench->state() == QProcess::Running,
                qPrintable(QStringLiteral("the window ended (exit %1) after %2 runs:\n%3")
                               .arg(workbench->exitCode())
                               .arg(done)
                               .arg(workbenchErr(1))));
            QVERIFY2(clock.elapsed() < kSoakTimeoutMs,
                qPrintable(QStringLiteral("only %1 of %2 runs ended in %3 s")
                               .arg(done)
                               .arg(kRuns)
                               .arg(kSoakTimeoutMs / 1000)));
            // The corrupted run's checkpoint is overwritten with garbage while the first run trains.
            if (!corrupted && run(1).status != RunState::Queued) {
                std::mt19937 random(17);
                std::ofstream out(ownBackbone + "/model.safetensors", std::ios::binary | std::ios::trunc);
                for (int i = 0; i < 4096; ++i)
                    out.put(static_cast<char>(random() & 0xff));
                corrupted = true;
            }
            // Cancelled as the window's Cancel ends up doing after its grace: SIGTERM to the run's worker,
            // which the worker takes as a cancel. Its owner is the worker once it has adopted the run.
            if (!cancelled) {
                const RunRecord r = run(kCancelRun);
                if (r.status == RunState::Running && r.step >= 2 && r.ownerPid
                    && *r.ownerPid != workbench->processId()) {
                    cancelledWorker = *r.ownerPid;
                    QVERIFY2(commandLineOf(cancelledWorker).contains(QStringLiteral("worker")),
                        qPrintable(commandLineOf(cancelledWorker)));
                    QCOMPARE(::kill(static_cast<pid_t>(cancelledWorker), SIGTERM), 0);
                    cancelled = true;
                }
            }
            done = 0;
            for (int id = 1; id <= kRuns; ++id)
                done += isFinal(run(id).status) ? 1 : 0;
        }
        const double soakSeconds = clock.elapsed() / 1000.0;
        qInfo("20 runs ended in %.1f s; the window is up", soakSeconds);
        QVERIFY(corrupted && cancelled);
        expectWindows({ kNanRun, kOomRun, kCorruptRun, kSignalRun });

        // ---- Every run in its state, with its reason ------------------------------------------------------
        for (int id = 1; id <= kRuns; ++id) {
            if (id == kNanRun)
                expectRun(id, RunState::Failed, { QStringLiteral("NaN"), QStringLiteral("step 2") });
            else if (id == kOomRun)
                expectRun(id, RunState::Failed, { QStringLiteral("out of memory") });
            else if (id == kCancelRun)
                expectRun(id, RunState::Cancelled, { QStringLiteral("cancelled") });
            else if (id == kCorruptRun)
                expectRun(
                    id, RunState::Failed, { QString::fromStdString(ownBackbone + "/model.safetensors") });
            else if (id == kSignalRun)
                expectRun(id, RunState::Failed, { QStringLiteral("SIGSEGV") });
            else
                expectRun(id, RunState::Finished, {});
        }
        // One at a time, in the queue's order: each run started after the one before it had ended.
        for (int id = 2; id <= kRuns; ++id)
            QVERIFY2(run(id).startedAt >= run(id - 1).finishedAt, qPrintable(QString::number(id)));
        expectIntegrity();

        // ---- SIGKILL while a run trains -------------------------------------------------------------------
        RunRecord killed;
        QElapsedTimer wait;
        wait.start();
        for (;;) {
            killed = run(kKilledRun);
            if (killed.status == RunState::Running && killed.step >= 3 && killed.ownerPid
                && *killed.ownerPid != workbench->processId())
                break;
            QVERIFY2(wait.elapsed() < 120000 && workbench->state() == QProcess::Running,
                qPrintable(QStringLiteral("run %1 is %2 at step %3 (owner %4); the window's last lines:\n%5")
                               .arg(kKilledRun)
                               .arg(stateName(killed.status))
                               .arg(killed.step)
                               .arg(killed.ownerPid.value_or(0))
                               .arg(workbenchErr(1))));
            QTest::qWait(100);
        }
        const qint64 worker = *killed.ownerPid;
        QVERIFY2(commandLineOf(worker).contains(QStringLiteral("worker")), qPrintable(commandLineOf(worker)));
        workbench->kill(); // SIGKILL
        QVERIFY(workbench->waitForFinished(10000));
        QCOMPARE(workbench->exitStatus(), QProcess::CrashExit);
        // The worker dies with its window (PR_SET_PDEATHSIG): gone, or a zombie nobody has reaped yet.
        QTRY_VERIFY_WITH_TIMEOUT(processState(worker) == 0 || processState(worker) == 'Z', 10000);
        QCOMPARE(stateName(run(kKilledRun).status), QStringLiteral("running")); // until a writer opens it
        const auto restarted = startWorkbench({}, {}, 2);
        QTRY_VERIFY_WITH_TIMEOUT(run(kKilledRun).status == RunState::Interrupted, 30000);
        expectRun(kKilledRun, RunState::Interrupted,
            { QStringLiteral("ended before the run did"), QStringLiteral("pid %1").arg(worker) });
        if constexpr (kResumeLanded) {
            // ---- Resumable: the trainer's last state is on disk for `ladder train --resume` ----------
            const QString state
                = QStringLiteral("%1/state/run-%2.state")
                      .arg(QString::fromStdString(ResultsStore::filesDirFor(m_store.toStdString())))
                      .arg(kKilledRun);
            QVERIFY2(QFileInfo(state).isFile() && QFileInfo(state).size() > 0, qPrintable(state));
        }
        // The rest of the queue, in order; the window started again waits for Start (nothing trains).
        const std::vector<qint64> expectedQueue { kKilledRun + 1, kKilledRun + 2 };
        QCOMPARE(queuedInOrder(), expectedQueue);
        QTest::qWait(2000);
        QVERIFY2(restarted->state() == QProcess::Running, qPrintable(workbenchErr(2)));
        expectWindows({});
        QCOMPARE(queuedInOrder(), expectedQueue);
        expectIntegrity();
        restarted->terminate();
        QVERIFY(restarted->waitForFinished(10000));
        expectIntegrity();
        qInfo("the soak took %.1f s in all", clock.elapsed() / 1000.0);
    }
};

LADDER_TEST_GUILESS_MAIN(TestSoak)
#include "test_soak.moc"
