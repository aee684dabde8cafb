#pragma once

#include <string>

#include <QPointer>
#include <QWidget>

#include "StoreReader.h"

class QLabel;
class QPlainTextEdit;
class QPushButton;
class QTabWidget;
class QTreeWidget;

namespace ladder::widgets {

class MemoryBreakdownBar;

// Everything about one run: a title with its status (and error message), the final figures (metrics,
// memory, parameters, time), the memory breakdown bar (weights, gradients, optimizer state, activations =
// peak - the three static parts), and tabs with the full spec (pretty-printed JSON), the log lines and
// the evaluations.
//
// Feed it either directly with setDetails(), or give it a StoreReader and call showRun(id): the details
// are then read off the GUI thread and re-read whenever the reader sees the store change (a running run's
// log grows while it is shown).
class RunDetailsView : public QWidget {
    Q_OBJECT

public:
    explicit RunDetailsView(QWidget* parent = nullptr);

    // Not owned. Replaces any previous reader.
    void setReader(StoreReader* reader);
    // The run shown (0: none).
    qint64 runId() const { return m_runId; }

    // What the view shows, as plain text (the tests read these).
    QString titleText() const;
    QString specText() const;
    QString logText() const;
    // "label: value" lines of the final-figures table.
    QStringList figureLines() const;
    QStringList evaluationLines() const;
    MemoryBreakdownBar* memoryBar() const { return m_memoryBar; }

    // The spec JSON indented by 2, keys sorted; the text itself when it is not JSON.
    static QString prettySpec(const std::string& specJson);
    // The shell line "Copy CLI command" copies: the spec (without "store") as compact JSON on standard
    // input of `ladder train --config -`, quoted for POSIX shells:
    //   printf '%s\n' '{"backbone":"demo",...}' | ladder train --config -
    // Empty when the spec is not a JSON object.
    static QString cliCommand(const std::string& specJson);

public Q_SLOTS:
    // Asks the reader for run `runId` (0 clears the view).
    void showRun(qint64 runId);
    void setDetails(const ladder::widgets::RunDetailsSnapshot& details);
    void clear();

private:
    void onStoreChanged();
    void fillFigures(const RunRecord& run, std::int64_t metricPoints);

    QPointer<StoreReader> m_reader;
    QMetaObject::Connection m_detailsConnection;
    QMetaObject::Connection m_changedConnection;
    qint64 m_runId = 0;

    QLabel* m_title = nullptr;
    QTreeWidget* m_figures = nullptr;
    MemoryBreakdownBar* m_memoryBar = nullptr;
    QTabWidget* m_tabs = nullptr;
    QPlainTextEdit* m_spec = nullptr;
    QPushButton* m_copyCommand = nullptr;
    std::string m_specJson; // of the run shown
    QPlainTextEdit* m_log = nullptr;
    QTreeWidget* m_evaluations = nullptr;
};

} // namespace ladder::widgets
