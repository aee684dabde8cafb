#pragma once

#include <vector>

#include <QString>
#include <QWidget>

#include "store/StoreTypes.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QTableView;
class QTimer;

namespace ladder::widgets {

class ComparePlot;
class RunDetailsView;
class RunsFilterProxy;
class RunsTableModel;
class StoreReader;

// The compare tab: filters (free text, task, backbone, metric, log memory axis) over the accuracy-versus-
// memory plot and the runs table side by side, and the selected run's details below the table.
//
// Data: one StoreReader reads the store on its own thread and polls PRAGMA data_version every second,
// reloading only when another connection committed; the table applies the difference (RunsTableModel),
// the plot shows the runs the table's filters accept. Selecting a point or a row selects the run
// everywhere and emits runSelected().
//
// Embedding (MainWindow): `auto* compare = new CompareTab(storePath); addView(compare, "compare", ...)`;
// wire Ctrl+F to focusFilter() and Ctrl+E to exportInteractive(). For a screenshot, wait for loaded()
// (or hasLoaded()) before grabbing.
class CompareTab : public QWidget {
    Q_OBJECT

public:
    // Opens `storePath` at once (empty: no store until setStorePath()).
    explicit CompareTab(const QString& storePath = QString(), QWidget* parent = nullptr);
    ~CompareTab() override;

    void setStorePath(const QString& path);
    QString storePath() const;
    // True once the first runs of the current store arrived.
    bool hasLoaded() const { return m_loaded; }
    // The last export or load error (empty when none).
    QString lastError() const { return m_lastError; }
    // The run selected (0: none).
    qint64 selectedRun() const { return m_selectedRun; }
    // Shows or hides the run details under the table (shown by default). A window that shows the details
    // elsewhere (a dock fed by reader()) hides them here.
    void setDetailsVisible(bool visible);
    bool detailsVisible() const;

    // The runs the filters accept, in the table's order (what the plot shows).
    std::vector<RunRecord> visibleRuns() const;

    StoreReader* reader() const { return m_reader; }
    RunsTableModel* model() const { return m_model; }
    RunsFilterProxy* proxy() const { return m_proxy; }
    ComparePlot* plot() const { return m_plot; }
    QTableView* table() const { return m_table; }
    RunDetailsView* details() const { return m_details; }
    QLineEdit* filterEdit() const { return m_filter; }
    QComboBox* taskCombo() const { return m_taskCombo; }
    QComboBox* backboneCombo() const { return m_backboneCombo; }
    QComboBox* metricCombo() const { return m_metricCombo; }
    QCheckBox* logAxisCheck() const { return m_logAxis; }

    // CSV column names of exportTableCsv(), one per RunsTableModel column.
    static QStringList csvColumns();
    // RFC 4180 quoting: fields with a comma, quote or line break are quoted, quotes doubled.
    static QString csvField(const QString& value);

public Q_SLOTS:
    // Saves the plot as PNG, SVG or PDF by the file's extension; false (lastError()) otherwise.
    bool exportPlot(const QString& path);
    // Writes the rows the filters accept, in the table's order, with unformatted values (bytes, seconds,
    // full-precision metrics); false (lastError()) when the file cannot be written.
    bool exportTableCsv(const QString& path);
    // Ctrl+E: asks for a file name; .csv exports the table, .png/.svg/.pdf the plot.
    void exportInteractive();
    // Ctrl+F: focuses and selects the free-text filter.
    void focusFilter();
    // Selects run `runId` in the table and the plot and shows its details (0: clears the selection).
    void selectRun(qint64 runId);
    // Reads the store again now.
    void reload();

Q_SIGNALS:
    void runSelected(qint64 runId);
    // Runs arrived from the store (every reload), the table and the plot are up to date.
    void loaded();
    // The user renamed a run in the table; the window writes it to the store (RunQueueController::renameRun).
    void renameRequested(qint64 runId, const QString& name);

private:
    void onRunsLoaded(const std::vector<ladder::RunRecord>& runs);
    void onTableSelectionChanged();
    void refreshFilterChoices();
    void updatePlot();
    void setError(const QString& message);

    StoreReader* m_reader = nullptr;
    RunsTableModel* m_model = nullptr;
    RunsFilterProxy* m_proxy = nullptr;
    ComparePlot* m_plot = nullptr;
    QTableView* m_table = nullptr;
    RunDetailsView* m_details = nullptr;
    QLineEdit* m_filter = nullptr;
    QComboBox* m_taskCombo = nullptr;
    QComboBox* m_backboneCombo = nullptr;
    QComboBox* m_metricCombo = nullptr;
    QCheckBox* m_logAxis = nullptr;
    QLabel* m_status = nullptr;
    QTimer* m_plotTimer = nullptr;
    bool m_loaded = false;
    qint64 m_selectedRun = 0;
    QString m_lastError;
};

} // namespace ladder::widgets
