#pragma once

#include <QDialog>
#include <QProcess>
#include <QString>
#include <QStringList>

class QLabel;
class QProgressBar;
class QPushButton;
class QTimer;

namespace ladder::widgets {

// One line of `ladder demo`'s stderr, as the progress dialog reads it: a stage line ("ladder demo:
// building the WordNet tasks in ...", "ladder demo: training: ...") or a step line of the pretraining's
// progress bar ("[####....] step 120/2000  loss ...  ETA 3:02").
struct DemoProgressLine {
    bool isStep = false;
    qint64 step = 0;
    qint64 totalSteps = 0;
    QString text; // the line without the bar and without "ladder demo: "
};
DemoProgressLine parseDemoProgressLine(const QString& line);

// Builds the built-in demo by running `<program> demo` as a child process (the window never trains in its
// own process) and shows its progress: the stage, then the pretraining's steps with the ETA. Cancel sends
// the child SIGINT (ladder demo then stops at its next step and leaves no half-built folder), and SIGKILL
// if it has not ended kCancelGraceMs later. The dialog closes by itself when the child has ended: accepted
// when it exited 0, rejected otherwise (result() / outcome() / message() say how).
//
//   DemoBuildDialog dialog(RunQueueController::defaultWorkerProgram(), this);
//   dialog.start();
//   if (dialog.exec() == QDialog::Accepted) ...
class DemoBuildDialog : public QDialog {
    Q_OBJECT

public:
    enum class Outcome { NotStarted, Running, Built, Failed, Cancelled };
    static constexpr int kCancelGraceMs = 15000;
    static constexpr int kStartTimeoutMs = 10000;

    explicit DemoBuildDialog(QString program, QWidget* parent = nullptr);
    ~DemoBuildDialog() override;

    // Starts the child; false (outcome Failed, message set) when the program is missing or cannot start.
    bool start(const QStringList& extraArguments = {});
    Outcome outcome() const { return m_outcome; }
    // Why it failed (the child's last stderr lines), or the finished summary.
    QString message() const { return m_message; }
    qint64 step() const { return m_step; }
    qint64 totalSteps() const { return m_totalSteps; }
    QString stageText() const;

public Q_SLOTS:
    void cancel();

protected:
    void reject() override; // Esc and the window's close button cancel the build

private:
    void readStderr();
    void handleLine(const QString& line);
    void processFinished(int exitCode, QProcess::ExitStatus status);

    QString m_program;
    QProcess* m_process = nullptr;
    QTimer* m_killTimer = nullptr;
    QLabel* m_stage = nullptr;
    QLabel* m_detail = nullptr;
    QProgressBar* m_bar = nullptr;
    QPushButton* m_cancel = nullptr;
    QByteArray m_pending; // stderr bytes after the last full line
    QStringList m_lastLines;
    Outcome m_outcome = Outcome::NotStarted;
    QString m_message;
    qint64 m_step = 0;
    qint64 m_totalSteps = 0;
    bool m_cancelRequested = false;
};

// A first start without the demo (ladderbench asks when the form's backbone is the demo and the picker
// says it is not built yet, never offscreen or in --screenshot): asks whether to build it now (a few minutes
// on two cores), and if so builds it with DemoBuildDialog. Returns true when the demo was built. A failure is
// shown in a message box that names the reason and the command to run by hand.
bool offerDemoBuild(QWidget* parent, const QString& program);

} // namespace ladder::widgets
