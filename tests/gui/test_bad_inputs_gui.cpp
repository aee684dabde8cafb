// Bad input, as a list, for the workbench (docs/RELIABILITY.md): the hostile and mistaken files the window
// reads, each driven through the path a user takes (File > Open Results Store and File > Load Preset through
// Qt's own file dialog, the backbone picker's Add folder…, Run on a damaged backbone, Tools > Sweeps, a
// settings file at launch). Each row expects what the CLI's table (tests/unit/test_bad_inputs.cpp) expects
// of `ladder`, in the window's terms: the window's error box (MainWindow::showError, non-modal, object name
// errorMessageBox; the sweep dialog shows its own note), whose message names the file and the field or line,
// of at most two lines ("Run N failed:" and the run's one-line reason) of at most kMaxLine characters, with
// no backtrace; the window still up, on its store; and the window's results store byte-identical.
//
// The store is compared byte for byte, main file and write-ahead log, while the window holds it open and
// again after the window closed. That is stable because every window opens a copy of a template store that
// was closed cleanly (its log checkpointed into the file and removed): the window only reads it, so the file
// never changes and the log it creates stays empty; any write the window made would show in one of the two.
// (The -shm file is SQLite's index of the log, which readers write: it is not compared.) Rows that queue a
// run change the store by design, as `ladder train` does: there exactly one run more, failed with the
// reason, and PRAGMA integrity_check ok.
#include <functional>

#include <QAction>
#include <QApplication>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStatusBar>
#include <QTimer>
#include <QtTest>

#include <nlohmann/json.hpp>

#include "BackbonePicker.h"
#include "ExperimentForm.h"
#include "MainWindow.h"
#include "RunQueueController.h"
#include "SweepDialog.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"

using namespace ladder;
using namespace ladder::widgets;

// Writes a row's bad input at the path it is given (a file or a folder).
using Maker = std::function<void(const QString& path)>;
Q_DECLARE_METATYPE(Maker)

namespace {

// One line of the CLI's cap (400) plus the window's own words ("Results store", a path).
constexpr int kMaxLine = 500;
constexpr int kRunTimeoutMs = 60000;

QByteArray readBytes(const QString& path)
{
    QFile file(path);
    return file.open(QIODevice::ReadOnly) ? file.readAll() : QByteArray("<missing>");
}

void writeBytes(const QString& path, const QByteArray& bytes)
{
    QDir().mkpath(QFileInfo(path).absolutePath());
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly | QIODevice::Truncate) || file.write(bytes) != bytes.size())
        qFatal("cannot write %s", qPrintable(path));
}

QByteArray nested(int depth)
{
    return QByteArray(depth, '[') + QByteArray(depth, ']');
}

// A copy of the tiny demo's backbone folder (config.json, model.safetensors, spiece.model) at `dir`.
void copyBackbone(const QString& from, const QString& dir)
{
    QDir().mkpath(dir);
    for (const char* name : { "config.json", "model.safetensors", "spiece.model" })
        QFile::copy(
            from + QLatin1Char('/') + QLatin1String(name), dir + QLatin1Char('/') + QLatin1String(name));
}

// The backbone folder's config.json edited by `edit`.
void editConfig(const QString& dir, const std::function<void(nlohmann::json&)>& edit)
{
    auto config = nlohmann::json::parse(readBytes(dir + QStringLiteral("/config.json")).toStdString());
    edit(config);
    writeBytes(dir + QStringLiteral("/config.json"), QByteArray::fromStdString(config.dump(2)));
}

// A spec the form accepts, with `edit` applied: the preset rows' base.
QByteArray presetWith(const std::function<void(nlohmann::json&)>& edit)
{
    nlohmann::json spec = ExperimentForm::firstLaunchSpec();
    edit(spec);
    return QByteArray::fromStdString(spec.dump(2));
}

} // namespace

class TestBadInputsGui : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_home;
    QString m_demo; // the tiny demo (LADDER_DEMO_DIR): a form that is valid, a backbone to copy
    QString m_template; // a store with one finished run, closed cleanly
    int m_counter = 0;
    QString m_dir; // this row's folder
    QString m_store; // this row's window's store
    QByteArray m_storeBytes;
    QByteArray m_walBytes;
    std::unique_ptr<MainWindow> m_window;

    QString rowPath(const QString& name) const { return m_dir + QLatin1Char('/') + name; }

    // A window on a copy of the template store, as a user's second launch; the queue runs when asked.
    void openWindow(bool startQueue = false)
    {
        m_dir = m_home.filePath(QStringLiteral("row-%1").arg(++m_counter));
        QVERIFY(QDir().mkpath(m_dir));
        m_store = rowPath(QStringLiteral("store/results.sqlite"));
        QVERIFY(QDir().mkpath(QFileInfo(m_store).absolutePath()));
        QVERIFY(QFile::copy(m_template, m_store));
        MainWindowOptions options;
        options.storePath = m_store;
        options.settingsFile = rowPath(QStringLiteral("settings.ini"));
        options.startQueue = startQueue;
        m_window = std::make_unique<MainWindow>(options);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window.get()));
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        QCOMPARE(m_window->storePath(), m_store);
        m_storeBytes = readBytes(m_store);
        m_walBytes = readBytes(m_store + QStringLiteral("-wal"));
    }

    // The window's store has the bytes it had when the window opened, its log too.
    void verifyStoreUnchanged()
    {
        QVERIFY2(readBytes(m_store) == m_storeBytes, "the window's results store changed");
        QVERIFY2(
            readBytes(m_store + QStringLiteral("-wal")) == m_walBytes, "the store's write-ahead log changed");
    }

    // And after the window closed (its connections closed, the log checkpointed and removed).
    void closeAndVerifyStore(bool unchanged = true)
    {
        m_window.reset();
        if (unchanged)
            QVERIFY2(readBytes(m_store) == m_storeBytes, "the results store changed once the window closed");
        QCOMPARE(QString::fromStdString(test::rawQuery(m_store.toStdString(), "PRAGMA integrity_check")),
            QStringLiteral("ok"));
    }

    // The window is up, on the store it opened, and answers: its controller reads the store.
    void verifyWindowGoesOn(int expectedRuns = 1)
    {
        QVERIFY(m_window->isVisible());
        QCOMPARE(m_window->storePath(), m_store);
        QCOMPARE(m_window->windowTitle(), QStringLiteral("results.sqlite — LadderBench"));
        int runs = -1, queued = -1;
        QString error;
        QVERIFY2(m_window->queueController()->countRuns(&runs, &queued, &error),
            qPrintable(QStringLiteral("the window's store is no longer readable: ") + error));
        QCOMPARE(runs, expectedRuns);
        QVERIFY(m_window->showView(QStringLiteral("queue")));
        QVERIFY(m_window->showView(QStringLiteral("experiment")));
    }

    // A message shown to the user: every word there, at most two lines of kMaxLine characters, no backtrace.
    static void verifyMessage(const QString& message, const QStringList& words)
    {
        qInfo().noquote() << "  shown:" << message.left(600);
        QVERIFY(!message.trimmed().isEmpty());
        for (const QString& word : words)
            QVERIFY2(message.contains(word),
                qPrintable(QStringLiteral("'%1' not in: %2").arg(word, message.left(600))));
        const QStringList lines = message.split(QLatin1Char('\n'));
        QVERIFY2(lines.size() <= 2,
            qPrintable(QStringLiteral("%1 lines: %2").arg(lines.size()).arg(message.left(600))));
        for (const QString& line : lines)
            QVERIFY2(line.size() <= kMaxLine,
                qPrintable(
                    QStringLiteral("a line of %1 characters: %2").arg(line.size()).arg(line.left(600))));
        for (const char* trace : { "Exception raised from", "frame #", "terminate called", "Backtrace" })
            QVERIFY2(!message.contains(QLatin1String(trace)), qPrintable(message.left(600)));
    }

    // The one error box the window shows for `message`: visible, non-modal, with that text. Closes it.
    void verifyErrorBox(const QString& message)
    {
        QMessageBox* shown = nullptr;
        for (auto* box : m_window->findChildren<QMessageBox*>(QStringLiteral("errorMessageBox")))
            if (box->isVisible())
                shown = box;
        QVERIFY2(shown, "no error box is shown");
        QVERIFY(!shown->isModal());
        QCOMPARE(shown->text(), message);
        shown->close();
    }

    // Runs `open` (which opens a modal file dialog) and answers the dialog with `path`, as a user who types
    // or picks it and presses Open. Qt's own widget dialog on the offscreen platform. Returns whether the
    // dialog was there.
    bool answerFileDialog(const std::function<void()>& open, const QString& path)
    {
        bool seen = false;
        QTimer::singleShot(0, this, [&] {
            auto* dialog = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
            if (!dialog)
                return;
            seen = true;
            dialog->selectFile(path);
            static_cast<QDialog*>(dialog)->accept(); // QFileDialog::accept(), as the Open button does
            if (dialog->isVisible()) // it refused (a folder it entered, a file not found): the user gives up
                dialog->reject();
        });
        open();
        return seen;
    }

    void triggerAndAnswer(const char* action, const QString& path, QSignalSpy* shown)
    {
        QAction* a = m_window->findChild<QAction*>(QLatin1String(action));
        QVERIFY(a);
        QVERIFY2(answerFileDialog([a] { a->trigger(); }, path), "no file dialog opened");
        QCOMPARE(shown->count(), 1);
    }

private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        QGuiApplication::setApplicationDisplayName(QStringLiteral("LadderBench"));
        m_demo = QString::fromStdString(test::makeTinyDemo(m_home.path().toStdString()));
        qputenv("LADDER_DEMO_DIR", m_demo.toUtf8());
        // The template store: one finished run, closed (the log checkpointed into the file).
        m_template = m_home.filePath(QStringLiteral("template/results.sqlite"));
        ResultsStore store;
        std::string error;
        QVERIFY2(store.open(m_template.toStdString(), &error), error.c_str());
        NewRun run;
        run.name = "earlier run";
        run.specJson = ExperimentForm::firstLaunchSpec().dump();
        run.method = "lst";
        run.backbone = "demo";
        run.task = "demo-supersense";
        run.seed = 0;
        run.status = RunState::Running;
        std::int64_t id = 0;
        QVERIFY2(store.createRun(run, &id, &error), error.c_str());
        FinalFigures figures;
        figures.bestValidationMetric = 0.75;
        figures.mainMetricName = "accuracy";
        QVERIFY2(store.finishRun(id, RunState::Finished, figures, {}, &error), error.c_str());
        store.close();
        QVERIFY(!QFileInfo::exists(m_template + QStringLiteral("-wal")));
    }

    void cleanup() { m_window.reset(); }

    // File > Open Results Store…, through the file dialog, on a file that is not a store the window can use.
    void openResultsStore_data()
    {
        QTest::addColumn<Maker>("make");
        QTest::addColumn<QStringList>("words");
        const auto text = [](const QByteArray& bytes) {
            return Maker([bytes](const QString& p) { writeBytes(p, bytes); });
        };
        QTest::newRow("a text file") << text("these are my notes, not a store\n")
                                     << QStringList { "not an SQLite database" };
        QTest::newRow("a JSON file") << text(R"({"runs": [{"id": 1}]})")
                                     << QStringList { "not an SQLite database" };
        QTest::newRow("an empty file") << text("") << QStringList { "no results store" };
        QTest::newRow("binary noise")
            << text(QByteArray(5000, '\xa7')) << QStringList { "not an SQLite database" };
        QTest::newRow("a truncated store") << Maker([this](const QString& p) {
            const QByteArray full = readBytes(m_template);
            writeBytes(p, full.left(full.size() / 2));
        }) << QStringList {};
        QTest::newRow("a store cut to its first page")
            << Maker([this](const QString& p) { writeBytes(p, readBytes(m_template).left(4096)); })
            << QStringList {};
        // Its first page reads, the runs table's page does not: the store opened (for writing too), and the
        // window was left on it with an empty queue and "listing runs: ... malformed" in the status bar.
        QTest::newRow("a store whose runs table is damaged") << Maker([this](const QString& p) {
            QByteArray bytes = readBytes(m_template);
            const int root = std::stoi(test::rawQuery(
                m_template.toStdString(), "SELECT rootpage FROM sqlite_master WHERE name = 'runs'"));
            bytes.replace((root - 1) * 4096, 4096, QByteArray(4096, '\xff'));
            writeBytes(p, bytes);
        }) << QStringList { "malformed" };
        QTest::newRow("another application's SQLite database") << Maker([](const QString& p) {
            test::rawQuery(p.toStdString(),
                "PRAGMA application_id = 1179602508; CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES "
                "('x');");
        }) << QStringList { "another application" };
        QTest::newRow("an SQLite database with tables but no version") << Maker([](const QString& p) {
            test::rawQuery(p.toStdString(), "CREATE TABLE runs(id INTEGER);");
        }) << QStringList { "no LadderBench schema version" };
        QTest::newRow("a store written by a newer LadderBench") << Maker([this](const QString& p) {
            QFile::copy(m_template, p);
            test::rawQuery(p.toStdString(), "PRAGMA user_version = 9999;");
        }) << QStringList { "9999", "newer LadderBench" };
    }

    void openResultsStore()
    {
        QFETCH(Maker, make);
        QFETCH(QStringList, words);
        openWindow();
        if (QTest::currentTestFailed())
            return;
        const QString bad = rowPath(QStringLiteral("bad.sqlite"));
        make(bad);
        const QByteArray badBytes = readBytes(bad);
        QSignalSpy shown(m_window.get(), &MainWindow::errorShown);
        triggerAndAnswer("actionOpenStore", bad, &shown);
        if (QTest::currentTestFailed())
            return;
        const QString message = shown.at(0).at(0).toString();
        verifyMessage(message, QStringList { bad } + words);
        verifyErrorBox(message);
        verifyStoreUnchanged();
        verifyWindowGoesOn();
        QVERIFY2(readBytes(bad) == badBytes, "the file that was refused changed");
        closeAndVerifyStore();
    }

    // What Qt's file dialog lets through to the window at all: a folder is entered, a name that does not
    // exist is refused by the dialog itself ("File not found"). Nothing reaches the window, which stays on
    // its store.
    void openResultsStoreDialogRefuses_data()
    {
        QTest::addColumn<bool>("folder");
        QTest::newRow("a folder") << true;
        QTest::newRow("a path that does not exist") << false;
    }

    void openResultsStoreDialogRefuses()
    {
        QFETCH(bool, folder);
        openWindow();
        if (QTest::currentTestFailed())
            return;
        const QString bad = rowPath(QStringLiteral("bad.sqlite"));
        if (folder)
            QVERIFY(QDir().mkpath(bad));
        QString refusal;
        // The dialog's own "File not found" box runs a modal loop inside accept(): answer it from there.
        QTimer::singleShot(0, this, [&] {
            auto* dialog = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
            if (!dialog)
                return;
            QTimer::singleShot(0, this, [&] {
                if (auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget())) {
                    refusal = box->text();
                    box->accept();
                }
            });
            dialog->selectFile(bad);
            static_cast<QDialog*>(dialog)->accept();
            QVERIFY(dialog->isVisible()); // not accepted
            dialog->reject();
        });
        QSignalSpy shown(m_window.get(), &MainWindow::errorShown);
        m_window->findChild<QAction*>(QStringLiteral("actionOpenStore"))->trigger();
        QCOMPARE(shown.count(), 0);
        if (!folder)
            QVERIFY2(refusal.contains(QStringLiteral("File not found")), qPrintable(refusal));
        qInfo().noquote() << "  the dialog:"
                          << (folder ? QStringLiteral("entered the folder") : refusal.simplified());
        verifyStoreUnchanged();
        verifyWindowGoesOn();
        QCOMPARE(QFileInfo::exists(bad), folder); // nothing was created
        closeAndVerifyStore();
    }

    // File > Load Preset…, through the file dialog: the form refuses the file and stays as it was.
    void loadPreset_data()
    {
        QTest::addColumn<Maker>("make");
        QTest::addColumn<QStringList>("words");
        const auto text = [](const QByteArray& bytes) {
            return Maker([bytes](const QString& p) { writeBytes(p, bytes); });
        };
        QTest::newRow("not JSON") << text("{\"backbone\": demo,\n") << QStringList { "not valid JSON" };
        QTest::newRow("100,000 nested brackets")
            << text(nested(100000)) << QStringList { "nested deeper than 64" };
        QTest::newRow("an empty file") << text("") << QStringList { "not valid JSON" };
        QTest::newRow("a JSON array") << text("[1, 2, 3]") << QStringList { "expected" };
        QTest::newRow("a binary file")
            << text(QByteArray("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16) + QByteArray(3000, '\xff'))
            << QStringList { "not valid JSON" };
        QTest::newRow("batch_size a string")
            << text(presetWith([](nlohmann::json& s) { s["training"]["batch_size"] = "x"; }))
            << QStringList { "batch_size" };
        QTest::newRow("an unknown field")
            << text(presetWith([](nlohmann::json& s) { s["trainig"] = nlohmann::json::object(); }))
            << QStringList { "trainig" };
        QTest::newRow("an unknown method") << text(presetWith([](nlohmann::json& s) {
            s["method"] = { { "method", "magic" } };
        })) << QStringList { "magic" };
        QTest::newRow("a negative batch size")
            << text(presetWith([](nlohmann::json& s) { s["training"]["batch_size"] = -8; }))
            << QStringList { "batch_size" };
        QTest::newRow("a negative max_steps")
            << text(presetWith([](nlohmann::json& s) { s["training"]["max_steps"] = -1; }))
            << QStringList { "max_steps" };
        QTest::newRow("LST r negative")
            << text(presetWith([](nlohmann::json& s) { s["method"]["r"] = -4; })) << QStringList { "r" };
        QTest::newRow("batch_size 2^40")
            << text(presetWith([](nlohmann::json& s) { s["training"]["batch_size"] = 1LL << 40; }))
            << QStringList { "batch_size" };
        QTest::newRow("a 1 MB string value")
            << text(presetWith([](nlohmann::json& s) { s["device"] = std::string(1 << 20, 'x'); }))
            << QStringList { "device" };
        QTest::newRow("a backbone folder that is missing") << text(presetWith([this](nlohmann::json& s) {
            s["backbone"] = m_home.filePath(QStringLiteral("gone")).toStdString();
        })) << QStringList { "gone/config.json" };
    }

    void loadPreset()
    {
        QFETCH(Maker, make);
        QFETCH(QStringList, words);
        openWindow();
        if (QTest::currentTestFailed())
            return;
        const QString bad = rowPath(QStringLiteral("preset.json"));
        make(bad);
        ExperimentForm* form = m_window->experimentForm();
        const nlohmann::json before = form->specJson();
        QSignalSpy shown(m_window.get(), &MainWindow::errorShown);
        triggerAndAnswer("actionLoadPreset", bad, &shown);
        if (QTest::currentTestFailed())
            return;
        const QString message = shown.at(0).at(0).toString();
        verifyMessage(message, QStringList { bad } + words);
        verifyErrorBox(message);
        QCOMPARE(form->specJson(), before); // the form as it was
        verifyStoreUnchanged();
        verifyWindowGoesOn();
        closeAndVerifyStore();
    }

    // The backbone picker's Add folder…, through the folder dialog: a folder whose config.json cannot be
    // used is not added.
    void backboneFolder_data()
    {
        QTest::addColumn<Maker>("make");
        QTest::addColumn<QStringList>("words");
        const QString demo = m_demo + QStringLiteral("/backbone");
        const auto withConfig = [demo](const QByteArray& text) {
            return Maker([demo, text](const QString& dir) {
                copyBackbone(demo, dir);
                writeBytes(dir + QStringLiteral("/config.json"), text);
            });
        };
        const auto edited = [demo](std::function<void(nlohmann::json&)> edit) {
            return Maker([demo, edit](const QString& dir) {
                copyBackbone(demo, dir);
                editConfig(dir, edit);
            });
        };
        QTest::newRow("no config.json") << Maker([](const QString& dir) { QDir().mkpath(dir); })
                                        << QStringList { "config.json", "missing" };
        QTest::newRow("config.json not JSON")
            << withConfig("{\"d_model\": 32,") << QStringList { "config.json", "not valid JSON" };
        QTest::newRow("config.json empty") << withConfig("") << QStringList { "config.json" };
        QTest::newRow("config.json an array") << withConfig("[32, 64]") << QStringList { "config.json" };
        QTest::newRow("config.json nested 100,000 deep")
            << withConfig(nested(100000)) << QStringList { "config.json", "nested" };
        QTest::newRow("d_model negative") << edited([](nlohmann::json& c) { c["d_model"] = -32; })
                                          << QStringList { "config.json", "d_model" };
        QTest::newRow("d_model a string") << edited([](nlohmann::json& c) { c["d_model"] = "big"; })
                                          << QStringList { "config.json", "d_model" };
        QTest::newRow("d_model 2^34") << edited([](nlohmann::json& c) { c["d_model"] = 1LL << 34; })
                                      << QStringList { "config.json", "d_model" };
        QTest::newRow("vocab_size a 1 MB string")
            << edited([](nlohmann::json& c) { c["vocab_size"] = std::string(1 << 20, '9'); })
            << QStringList { "config.json", "vocab_size" };
    }

    void backboneFolder()
    {
        QFETCH(Maker, make);
        QFETCH(QStringList, words);
        openWindow();
        if (QTest::currentTestFailed())
            return;
        const QString bad = rowPath(QStringLiteral("my-backbone"));
        make(bad);
        ExperimentForm* form = m_window->experimentForm();
        const QStringList folders = form->backbonePicker()->folders();
        auto* add = form->findChild<QPushButton*>(QStringLiteral("addBackboneButton"));
        QVERIFY(add);
        m_window->showView(QStringLiteral("experiment"));
        QSignalSpy shown(m_window.get(), &MainWindow::errorShown);
        QVERIFY2(answerFileDialog([add] { QTest::mouseClick(add, Qt::LeftButton); }, bad),
            "no folder dialog opened");
        QCOMPARE(shown.count(), 1);
        const QString message = shown.at(0).at(0).toString();
        verifyMessage(message, QStringList { bad } + words);
        verifyErrorBox(message);
        QCOMPARE(form->backbonePicker()->folders(), folders); // not added
        QCOMPARE(form->backbonePicker()->backbone(), QStringLiteral("demo"));
        verifyStoreUnchanged();
        verifyWindowGoesOn();
        closeAndVerifyStore();
    }

    // A backbone whose config.json reads but whose weights do not: the picker takes the folder (it reads the
    // config only), and the run queued on it fails while loading, with the window's error box naming the
    // file; the window goes on. The store gains that one failed run, as with `ladder train`.
    void runOnADamagedBackbone_data()
    {
        QTest::addColumn<Maker>("make");
        QTest::addColumn<QStringList>("words");
        const QString demo = m_demo + QStringLiteral("/backbone");
        QTest::newRow("model.safetensors truncated") << Maker([demo](const QString& dir) {
            copyBackbone(demo, dir);
            const QString weights = dir + QStringLiteral("/model.safetensors");
            const QByteArray bytes = readBytes(weights);
            writeBytes(weights, bytes.left(bytes.size() / 2));
        }) << QStringList { "model.safetensors" };
        QTest::newRow("d_model unlike the weights") << Maker([demo](const QString& dir) {
            copyBackbone(demo, dir);
            editConfig(dir, [](nlohmann::json& c) { c["d_model"] = 64; });
        }) << QStringList { "config.json", "model.safetensors" };
        QTest::newRow("no weights") << Maker([demo](const QString& dir) {
            copyBackbone(demo, dir);
            QFile::remove(dir + QStringLiteral("/model.safetensors"));
        }) << QStringList { "my-backbone" };
    }

    void runOnADamagedBackbone()
    {
        QFETCH(Maker, make);
        QFETCH(QStringList, words);
        openWindow(true);
        if (QTest::currentTestFailed())
            return;
        const QString bad = rowPath(QStringLiteral("my-backbone"));
        make(bad);
        ExperimentForm* form = m_window->experimentForm();
        auto* add = form->findChild<QPushButton*>(QStringLiteral("addBackboneButton"));
        QVERIFY(add);
        QSignalSpy shown(m_window.get(), &MainWindow::errorShown);
        QVERIFY(answerFileDialog([add] { QTest::mouseClick(add, Qt::LeftButton); }, bad));
        QCOMPARE(shown.count(), 0); // the config reads: the folder is taken
        QCOMPARE(form->backbonePicker()->backbone(), QDir::cleanPath(bad));
        auto* method = form->findChild<QComboBox*>(QStringLiteral("methodCombo"));
        method->setCurrentIndex(method->findData(QStringLiteral("bitfit")));
        form->findChild<QSpinBox*>(QStringLiteral("maxStepsSpin"))->setValue(4);
        form->findChild<QSpinBox*>(QStringLiteral("batchSpin"))->setValue(8);
        form->findChild<QSpinBox*>(QStringLiteral("maxSourceLengthSpin"))->setValue(16);
        QVERIFY2(form->isValid(), qPrintable(form->problem()));
        QSignalSpy finished(m_window->queueController(), &RunQueueController::runFinished);
        QTest::mouseClick(form->runButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        QTRY_COMPARE_WITH_TIMEOUT(shown.count(), 1, 5000);
        const qint64 runId = finished.at(0).at(0).toLongLong();
        const QString message = shown.at(0).at(0).toString();
        verifyMessage(message, QStringList { QStringLiteral("Run %1 failed").arg(runId), bad } + words);
        verifyErrorBox(message);
        verifyWindowGoesOn(2);
        // The run is failed in the store with the same reason.
        const auto reason = test::rawQuery(m_store.toStdString(),
            "SELECT status || ': ' || error_message FROM runs WHERE id = " + std::to_string(runId));
        QVERIFY2(QString::fromStdString(reason).startsWith(QStringLiteral("failed: ")), reason.c_str());
        QVERIFY2(message.endsWith(QString::fromStdString(reason).mid(8)), reason.c_str());
        closeAndVerifyStore(false);
        QCOMPARE(QString::fromStdString(test::rawQuery(m_store.toStdString(), "SELECT count(*) FROM runs")),
            QStringLiteral("2"));
    }

    // Tools > Sweeps… accepts free text in one place, its seeds: a seed that is not one is reported in the
    // dialog's note (naming the field and the value, capped) and nothing can be queued.
    void sweepSeeds_data()
    {
        QTest::addColumn<QString>("seeds");
        QTest::addColumn<QStringList>("words");
        QTest::newRow("a word") << QStringLiteral("0, x") << QStringList { "seeds", "\"x\"" };
        QTest::newRow("a negative seed") << QStringLiteral("-1") << QStringList { "seeds", "\"-1\"" };
        QTest::newRow("a fraction") << QStringLiteral("1.5") << QStringList { "seeds", "\"1.5\"" };
        QTest::newRow("20 digits") << QStringLiteral("99999999999999999999") << QStringList { "seeds" };
        QTest::newRow("nothing") << QStringLiteral("  ,  ") << QStringList { "seeds", "at least one" };
        // Quoted whole before: a note line of 32,767 characters (the line edit's limit).
        QTest::newRow("100,000 characters")
            << QString(100000, QLatin1Char('7')) + QLatin1Char('x') << QStringList { "seeds", "7777..." };
        QStringList many;
        for (int i = 0; i < 10000; ++i)
            many << QString::number(i);
        // 10,000 seeds froze the window for minutes (4 runs each, listed and de-duplicated).
        QTest::newRow("10,000 seeds")
            << many.join(QLatin1Char(' ')) << QStringList { "seeds", "at most 100" };
    }

    void sweepSeeds()
    {
        QFETCH(QString, seeds);
        QFETCH(QStringList, words);
        openWindow();
        if (QTest::currentTestFailed())
            return;
        QString note;
        bool okEnabled = true;
        bool seen = false;
        QTimer::singleShot(0, this, [&] {
            auto* dialog = qobject_cast<SweepDialog*>(QApplication::activeModalWidget());
            if (!dialog)
                return;
            seen = true;
            auto* edit = dialog->findChild<QLineEdit*>();
            edit->setText(seeds);
            for (auto* button : dialog->findChildren<QPushButton*>())
                if (button->text().startsWith(QStringLiteral("LoRA rank")))
                    QTest::mouseClick(button, Qt::LeftButton);
            note = dialog->noteText();
            okEnabled = dialog->findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok)->isEnabled();
            dialog->reject();
        });
        QSignalSpy shown(m_window.get(), &MainWindow::errorShown);
        m_window->findChild<QAction*>(QStringLiteral("actionSweeps"))->trigger();
        QVERIFY2(seen, "Tools > Sweeps opened no sweep dialog");
        QVERIFY(!okEnabled);
        QCOMPARE(shown.count(), 0);
        verifyMessage(note, words);
        verifyStoreUnchanged();
        verifyWindowGoesOn();
        closeAndVerifyStore();
    }

    // The settings file at launch: a store path that is not a store, a last form that does not read. The
    // window comes up and says so in a box naming the file.
    void settingsAtLaunch_data()
    {
        QTest::addColumn<QString>("key");
        QTest::addColumn<Maker>("make");
        QTest::addColumn<QStringList>("words");
        const auto value = [](const QByteArray& v) {
            return Maker([v](const QString& settings) {
                QSettings s(settings, QSettings::IniFormat);
                s.setValue(QStringLiteral("form/lastSpec"), QString::fromUtf8(v));
            });
        };
        QTest::newRow("store/path a folder")
            << QStringLiteral("store") << Maker([](const QString&) {}) << QStringList { "folder" };
        QTest::newRow("store/path a text file")
            << QStringLiteral("store-text") << Maker([](const QString&) {})
            << QStringList { "not an SQLite database" };
        QTest::newRow("form/lastSpec not JSON")
            << QStringLiteral("form") << value("{\"backbone\": ") << QStringList { "not valid JSON" };
        QTest::newRow("form/lastSpec nested 100,000 deep")
            << QStringLiteral("form") << value(nested(100000)) << QStringList { "nested" };
        QTest::newRow("form/lastSpec batch_size a string")
            << QStringLiteral("form")
            << value(presetWith([](nlohmann::json& s) { s["training"]["batch_size"] = "x"; }))
            << QStringList { "batch_size" };
    }

    void settingsAtLaunch()
    {
        QFETCH(QString, key);
        QFETCH(Maker, make);
        QFETCH(QStringList, words);
        m_dir = m_home.filePath(QStringLiteral("row-%1").arg(++m_counter));
        QVERIFY(QDir().mkpath(m_dir));
        const QString settings = rowPath(QStringLiteral("settings.ini"));
        MainWindowOptions options;
        options.settingsFile = settings;
        options.startQueue = false;
        QString named; // what the message must name
        if (key.startsWith(QStringLiteral("store"))) {
            named = rowPath(QStringLiteral("results.sqlite"));
            if (key == QStringLiteral("store"))
                QVERIFY(QDir().mkpath(named));
            else
                writeBytes(named, "not a store\n");
            QSettings s(settings, QSettings::IniFormat);
            s.setValue(QStringLiteral("store/path"), named);
        } else {
            m_store = rowPath(QStringLiteral("store/results.sqlite"));
            QVERIFY(QDir().mkpath(QFileInfo(m_store).absolutePath()));
            QVERIFY(QFile::copy(m_template, m_store));
            options.storePath = m_store;
            named = settings;
            make(settings);
        }
        const QByteArray namedBytes = QFileInfo(named).isFile() ? readBytes(named) : QByteArray();
        m_window = std::make_unique<MainWindow>(options);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window.get()));
        QMessageBox* box = m_window->findChild<QMessageBox*>(QStringLiteral("errorMessageBox"));
        QVERIFY2(box,
            qPrintable(QStringLiteral("no error box; the status bar says: ")
                + m_window->statusBar()->currentMessage()));
        QVERIFY(box->isVisible());
        verifyMessage(box->text(), QStringList { named } + words);
        box->close();
        QVERIFY(m_window->isVisible());
        if (QFileInfo(named).isFile() && named != settings)
            QVERIFY2(readBytes(named) == namedBytes, "the file that was refused changed");
        if (!options.storePath.isEmpty()) {
            // The form is the first launch's; the window works on its store.
            QCOMPARE(m_window->experimentForm()->backbonePicker()->backbone(), QStringLiteral("demo"));
            verifyWindowGoesOn();
        }
    }
};

LADDER_TEST_MAIN(TestBadInputsGui)
#include "test_bad_inputs_gui.moc"
