#pragma once

#include <nlohmann/json.hpp>

#include <QDialog>
#include <QString>

#include "train/SlurmExport.h"

class QLabel;
class QLineEdit;
class QSpinBox;

namespace ladder::widgets {

// Tools > Sweeps > Export for Slurm...: the sweep's runs as a Slurm job array, the same files as `ladder
// sweep --emit slurm` writes (train/SlurmExport.h, writeSlurmSweep): DIR/sweep.sbatch, DIR/sweep.json (the
// runs as {"runs": [...]}), DIR/logs/. The fields are the CLI's flags: the folder (--out), partition, GPUs
// and CPUs per run, time limit, runs at once (--max-parallel) and the `ladder` program the tasks run (the
// one beside this window's, RunQueueController::defaultWorkerProgram()). Export checks them as the CLI
// does, shows an error in the dialog and stays open, or writes the files and shows what to submit.
//
//   SlurmExportDialog dialog({{"runs", specs}}, this);
//   dialog.exec();
class SlurmExportDialog : public QDialog {
    Q_OBJECT

public:
    explicit SlurmExportDialog(nlohmann::json sweep, QWidget* parent = nullptr);

    // The options as the fields hold them (the working directory is this process's).
    SlurmOptions options() const;
    QString folder() const;
    void setFolder(const QString& folder);
    void setOptions(const SlurmOptions& options);
    // What the last export wrote (runs 0 before one succeeded), and the message shown.
    const SlurmExport& written() const { return m_written; }
    QString message() const;

public Q_SLOTS:
    // Writes the files; false (the error shown in the dialog) when a field or the folder is refused.
    bool exportSweep();
    void chooseFolder();

private:
    nlohmann::json m_sweep;
    SlurmExport m_written;
    QLineEdit* m_folder = nullptr;
    QLineEdit* m_partition = nullptr;
    QSpinBox* m_gpus = nullptr;
    QSpinBox* m_cpus = nullptr;
    QLineEdit* m_time = nullptr;
    QSpinBox* m_maxParallel = nullptr;
    QLineEdit* m_ladder = nullptr;
    QLabel* m_message = nullptr;
};

} // namespace ladder::widgets
