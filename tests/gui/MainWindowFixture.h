#pragma once

// The fixture of the main-window tests test_mainwindow, test_mainwindow_devices, test_mainwindow_queue and
// test_mainwindow_screenshot: a fresh window for every test function, on a store and settings of its own in
// a temporary folder, never the user's. Header-only: each test class derives from it and calls setUpCase()
// from initTestCase(), openWindow() from init() and closeWindow() from cleanup().

#include <memory>

#include <QAction>
#include <QGuiApplication>
#include <QString>
#include <QTemporaryDir>
#include <QTest>
#include <QWidget>

#include "MainWindow.h"

class MainWindowFixture {
protected:
    void setUpCase()
    {
        // The demo is looked for in an empty folder: the form reports it missing, nothing else reads it.
        qputenv("LADDER_DEMO_DIR", m_home.filePath(QStringLiteral("no-demo")).toUtf8());
        // As ladderbench's main() sets it: the platform appends it to titles that do not end with it.
        QGuiApplication::setApplicationDisplayName(QStringLiteral("LadderBench"));
    }

    void openWindow()
    {
        // A store and settings of its own for every test function: an empty store, a first launch.
        m_options = ladder::widgets::MainWindowOptions();
        m_options.storePath = m_home.filePath(QStringLiteral("store-%1/results.sqlite").arg(++m_counter));
        m_options.settingsFile = m_home.filePath(QStringLiteral("settings-%1.ini").arg(m_counter));
        m_options.startQueue = false;
        m_window = std::make_unique<ladder::widgets::MainWindow>(m_options);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window.get()));
    }

    void closeWindow() { m_window.reset(); }

    static QAction* findAction(QWidget* window, const QString& objectName)
    {
        return window->findChild<QAction*>(objectName);
    }

    QTemporaryDir m_home;
    int m_counter = 0;
    ladder::widgets::MainWindowOptions m_options;
    std::unique_ptr<ladder::widgets::MainWindow> m_window;
};
