// The main window, driven offscreen: its title, menus and status bar, versions, Help > About, File > Quit,
// the views and keyboard shortcuts (real key events to real widgets, checked by their effect). Its devices,
// queue and --screenshot: test_mainwindow_devices, test_mainwindow_queue, test_mainwindow_screenshot.
#include <QAction>
#include <QApplication>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStatusBar>
#include <QTableView>
#include <QTimer>
#include <QWindow>
#include <QtTest>

#include "CompareTab.h"
#include "ExperimentForm.h"
#include "MainWindow.h"
#include "MainWindowFixture.h"
#include "QueueView.h"
#include "RunQueueModel.h"
#include "TestSupport.h"
#include "device/Devices.h"
#include "ladder/Version.h"

using ladder::widgets::MainWindow;

class TestMainWindow : public QObject, protected MainWindowFixture {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { setUpCase(); }

    void init() { openWindow(); }

    void cleanup() { closeWindow(); }

    void titleMenusAndStatusBar()
    {
        // "document — application", ending with the display name so that the platform adds nothing (the title
        // read "LadderBench — results.sqlite — LadderBench" when it started with it).
        QCOMPARE(m_window->windowTitle(), QStringLiteral("results.sqlite — LadderBench"));
        QVERIFY(m_window->windowTitle().endsWith(QGuiApplication::applicationDisplayName()));
        QCOMPARE(m_window->windowHandle()->title(), QStringLiteral("results.sqlite — LadderBench"));
        QCOMPARE(QFileInfo(m_window->windowFilePath()).fileName(), QStringLiteral("results.sqlite"));
        QStringList menus;
        for (QAction* action : m_window->menuBar()->actions())
            menus << action->text().remove(QLatin1Char('&'));
        QCOMPARE(menus,
            (QStringList { QStringLiteral("File"), QStringLiteral("Run"), QStringLiteral("View"),
                QStringLiteral("Tools"), QStringLiteral("Help") }));
        QVERIFY(findAction(m_window.get(), QStringLiteral("actionQuit")));
        QVERIFY(findAction(m_window.get(), QStringLiteral("actionAbout")));
        QVERIFY(m_window->statusBar()->currentMessage().startsWith(QStringLiteral("Ready")));
        auto* build = m_window->findChild<QLabel*>(QStringLiteral("buildStatusLabel"));
        QVERIFY(build);
        QVERIFY(build->text().contains(QString::fromStdString(ladder::torchVersion())));
    }

    void overviewShowsVersions()
    {
        auto label = [this](const char* name) {
            auto* l = m_window->findChild<QLabel*>(QString::fromLatin1(name));
            return l ? l->text() : QStringLiteral("<missing %1>").arg(QString::fromLatin1(name));
        };
        QCOMPARE(label("versionLabel"), QString::fromUtf8(ladder::kVersion));
        QCOMPARE(label("torchVersionLabel"), QString::fromStdString(ladder::torchVersion()));
        QCOMPARE(label("qtVersionLabel"), QString::fromUtf8(qVersion()));
        QVERIFY(label("cudaVersionLabel").contains(QString::fromStdString(ladder::cudaRuntimeVersion())));
    }

    void aboutShowsVersions()
    {
        QAction* about = findAction(m_window.get(), QStringLiteral("actionAbout"));
        QVERIFY(about);
        QString text;
        bool seen = false;
        // QMessageBox::about runs a modal loop: read and close it from inside that loop.
        QTimer::singleShot(0, this, [&] {
            auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
            if (!box)
                return;
            seen = true;
            text = box->text();
            box->accept();
        });
        about->trigger();
        QVERIFY2(seen, "Help > About did not open a message box");
        QVERIFY2(text.contains(QString::fromStdString(ladder::torchVersion())), qPrintable(text));
        QVERIFY(text.contains(QString::fromUtf8(ladder::kVersion)));
        QVERIFY(text.contains(QString::fromUtf8(qVersion())));
        if (ladder::kBuiltWithCuda)
            QVERIFY(text.contains(QString::fromStdString(ladder::cudaRuntimeVersion())));
    }

    void quitClosesTheWindow()
    {
        QAction* quit = findAction(m_window.get(), QStringLiteral("actionQuit"));
        QVERIFY(quit);
        quit->trigger();
        QVERIFY(!m_window->isVisible());
    }

    void views()
    {
        QCOMPARE(m_window->viewNames(),
            (QStringList { QStringLiteral("overview"), QStringLiteral("experiment"), QStringLiteral("queue"),
                QStringLiteral("live"), QStringLiteral("compare") }));
        // An empty store: the window opens where one begins, the experiment form.
        QCOMPARE(m_window->currentViewName(), QStringLiteral("experiment"));
        // The overview describes the app as it is, not as milestones to come.
        auto* started = m_window->findChild<QLabel*>(QStringLiteral("gettingStartedLabel"));
        QVERIFY(started);
        QVERIFY2(!started->text().contains(QStringLiteral("later milestone")), qPrintable(started->text()));
        for (const char* word : { "Experiment", "Queue", "Live", "Compare", "ladder demo", "Start" })
            QVERIFY2(started->text().contains(QString::fromLatin1(word)), word);
        QVERIFY(m_window->showView(QStringLiteral("live")));
        QCOMPARE(m_window->currentViewName(), QStringLiteral("live"));
        QVERIFY(!m_window->showView(QStringLiteral("no-such-view")));
        QCOMPARE(m_window->currentViewName(), QStringLiteral("live"));
    }

    // Ctrl+Enter (and the keypad's Enter) from a field of the form runs the form: without the demo it
    // reports the form's problem instead of queueing.
    void ctrlEnterRunsTheForm_data()
    {
        QTest::addColumn<int>("key");
        QTest::newRow("return") << int(Qt::Key_Return);
        QTest::newRow("keypad enter") << int(Qt::Key_Enter);
    }

    void ctrlEnterRunsTheForm()
    {
        QFETCH(int, key);
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        m_window->showView(QStringLiteral("experiment"));
        auto* steps = m_window->experimentForm()->findChild<QSpinBox*>(QStringLiteral("maxStepsSpin"));
        QVERIFY(steps);
        steps->setFocus();
        QSignalSpy shown(m_window.get(), &MainWindow::errorShown);
        QTest::keyClick(steps, Qt::Key(key), Qt::ControlModifier);
        QCOMPARE(shown.count(), 1);
        QVERIFY2(shown.at(0).at(0).toString().contains(QStringLiteral("not built")),
            qPrintable(shown.at(0).at(0).toString()));
        QCOMPARE(m_window->queueModel()->rowCount(), 0);
    }

    // Ctrl+S saves the form through the real file dialog; Ctrl+O loads it back.
    void ctrlSAndCtrlOSaveAndLoadAPreset()
    {
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        m_window->showView(QStringLiteral("experiment"));
        auto* steps = m_window->experimentForm()->findChild<QSpinBox*>(QStringLiteral("maxStepsSpin"));
        QVERIFY(steps);
        steps->setValue(1234);
        steps->setFocus();
        const QString preset = m_home.filePath(QStringLiteral("preset-%1.json").arg(m_counter));
        bool seen = false;
        auto choose = [&] {
            QTimer::singleShot(0, this, [&] {
                auto* dialog = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
                if (!dialog)
                    return;
                seen = true;
                dialog->selectFile(preset);
                static_cast<QDialog*>(dialog)->accept(); // QFileDialog::accept(), as the Save button does
            });
        };
        choose();
        QTest::keyClick(steps, Qt::Key_S, Qt::ControlModifier);
        QVERIFY2(seen, "Ctrl+S opened no file dialog");
        QFile file(preset);
        QVERIFY2(file.open(QIODevice::ReadOnly), qPrintable(preset));
        QVERIFY(file.readAll().contains("\"max_steps\": 1234"));
        steps->setValue(7);
        m_window->activateWindow(); // the offscreen platform has no window manager to reactivate it
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        steps->setFocus();
        seen = false;
        choose();
        QTest::keyClick(steps, Qt::Key_O, Qt::ControlModifier);
        QVERIFY2(seen, "Ctrl+O opened no file dialog");
        QCOMPARE(steps->value(), 1234);
    }

    // Ctrl+E from another view: the compare view and its export dialog.
    void ctrlEExportsFromTheCompareView()
    {
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        m_window->showView(QStringLiteral("queue"));
        m_window->queueView()->table()->setFocus();
        bool seen = false;
        QTimer::singleShot(0, this, [&] {
            auto* dialog = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
            if (!dialog)
                return;
            seen = true;
            dialog->reject();
        });
        QTest::keyClick(m_window->queueView()->table(), Qt::Key_E, Qt::ControlModifier);
        QVERIFY2(seen, "Ctrl+E opened no file dialog");
        QCOMPARE(m_window->currentViewName(), QStringLiteral("compare"));
    }

    void ctrlFFocusesTheCompareFilter()
    {
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        QTest::keyClick(m_window.get(), Qt::Key_F, Qt::ControlModifier);
        QCOMPARE(m_window->currentViewName(), QStringLiteral("compare"));
        QTRY_VERIFY(m_window->compareTab()->filterEdit()->hasFocus());
    }
};

QTEST_MAIN(TestMainWindow)
#include "test_mainwindow.moc"
