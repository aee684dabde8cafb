#pragma once

#include <QDialog>
#include <QString>

class QComboBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QThread;

namespace ladder::widgets {

// Export… on a run (the compare table's context menu, Run > Export Run…): one finished run of the store as
// a HuggingFace folder (hf), a PEFT adapter (peft) or a ladder bundle (ladder), as `ladder export` writes
// them (export/Export.h, docs/EXPORT.md). A format the run's method has no form in is disabled, the reason
// as its tooltip; a run that is not finished disables all. The export runs on a thread of its own with a
// store connection of its own; the dialog shows what it wrote or why it failed, and stays open.
//
//   ExportDialog dialog(storePath, runId, this);
//   dialog.exec();
class ExportDialog : public QDialog {
    Q_OBJECT

public:
    ExportDialog(const QString& storePath, qint64 runId, QWidget* parent = nullptr);
    ~ExportDialog() override;

    // "hf", "peft", "ladder"
    QString format() const;
    // Selects `format`; false when it is disabled for this run.
    bool setFormat(const QString& format);
    // Why `format` is disabled; empty when it is enabled.
    QString disabledReason(const QString& format) const;
    QString folder() const;
    void setFolder(const QString& folder);
    bool isExporting() const { return m_thread != nullptr; }
    // The shown result: what was written, or the error.
    QString message() const;

public Q_SLOTS:
    // Starts the export off the GUI thread; false (with the reason shown) when no folder is given, the
    // format is disabled or one is running.
    bool startExport();
    void chooseFolder();

Q_SIGNALS:
    // ok: the folder was written; message: its files and how to load it, or the error.
    void exportFinished(bool ok, const QString& message);

private:
    void finish(bool ok, const QString& message);
    void closeEvent(QCloseEvent* event) override;
    void reject() override;

    QString m_storePath;
    qint64 m_runId = 0;
    QComboBox* m_format = nullptr;
    QLineEdit* m_folder = nullptr;
    QLabel* m_message = nullptr;
    QPushButton* m_export = nullptr;
    QThread* m_thread = nullptr;
    bool m_exportable = false;
};

} // namespace ladder::widgets
