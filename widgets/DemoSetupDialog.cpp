#include "DemoSetupDialog.h"

#include <algorithm>
#include <csignal>
#include <utility>

#include <QCheckBox>
#include <QDialogButtonBox>
#include <QFileInfo>
#include <QLabel>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QRegularExpression>
#include <QSettings>
#include <QTimer>
#include <QVBoxLayout>

#include "data/DemoTasks.h"

namespace ladder::widgets {
namespace {

constexpr int kKeptLines = 6; // stderr lines a failure shows
const QString kStagePrefix = QStringLiteral("ladder demo: ");
const QString kAskSetting = QStringLiteral("demo/offerBuild");

// Where `ladder demo` builds the demo, for the dialog's text.
QString demoFolderText()
{
    try {
        return QString::fromStdString(demoCacheDir());
    } catch (const std::exception& e) {
        return QString::fromUtf8(e.what()); // neither XDG_CACHE_HOME nor HOME: ladder demo fails and says so
    }
}

} // namespace

DemoProgressLine parseDemoProgressLine(const QString& line)
{
    static const QRegularExpression stepPattern(QStringLiteral(R"(\bstep (\d+)/(\d+)\b)"));
    DemoProgressLine out;
    QString text = line.trimmed();
    if (const auto m = stepPattern.match(text); m.hasMatch()) {
        out.isStep = true;
        out.step = m.captured(1).toLongLong();
        out.totalSteps = m.captured(2).toLongLong();
        text = text.mid(m.capturedStart(0)); // without the bar "[###....] "
    } else if (text.startsWith(kStagePrefix)) {
        text = text.mid(kStagePrefix.size());
    }
    out.text = text;
    return out;
}

DemoBuildDialog::DemoBuildDialog(QString program, QWidget* parent)
    : QDialog(parent)
    , m_program(std::move(program))
{
    setWindowTitle(tr("Building the built-in demo"));
    setModal(true);
    m_stage = new QLabel(tr("Starting `ladder demo`…"));
    m_stage->setObjectName(QStringLiteral("demoStage"));
    m_stage->setWordWrap(true);
    m_detail
        = new QLabel(tr("A small T5 is pretrained on WordNet's glosses: a few minutes on two cores, once. "
                        "It is kept in %1.")
                         .arg(demoFolderText()));
    m_detail->setWordWrap(true);
    m_bar = new QProgressBar;
    m_bar->setObjectName(QStringLiteral("demoProgress"));
    m_bar->setRange(0, 0); // busy until the first step
    auto* buttons = new QDialogButtonBox;
    m_cancel = buttons->addButton(QDialogButtonBox::Cancel);
    connect(m_cancel, &QPushButton::clicked, this, &DemoBuildDialog::cancel);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(m_stage);
    layout->addWidget(m_bar);
    layout->addWidget(m_detail);
    layout->addWidget(buttons);
    setMinimumWidth(520);

    m_process = new QProcess(this);
    m_process->setStandardOutputFile(QProcess::nullDevice()); // the folder it prints is demoCacheDir()'s
    connect(m_process, &QProcess::readyReadStandardError, this, &DemoBuildDialog::readStderr);
    connect(m_process, &QProcess::finished, this, &DemoBuildDialog::processFinished);
    m_killTimer = new QTimer(this);
    m_killTimer->setSingleShot(true);
    connect(m_killTimer, &QTimer::timeout, this, [this] {
        if (m_process->state() != QProcess::NotRunning)
            m_process->kill();
    });
}

DemoBuildDialog::~DemoBuildDialog()
{
    if (m_process->state() != QProcess::NotRunning) {
        m_process->disconnect(this);
        m_process->kill();
        m_process->waitForFinished(5000);
    }
}

bool DemoBuildDialog::start(const QStringList& extraArguments)
{
    const QFileInfo program(m_program);
    if (m_program.isEmpty() || !program.isFile() || !program.isExecutable()) {
        m_outcome = Outcome::Failed;
        m_message = m_program.isEmpty()
            ? tr("no `ladder` executable was found (it is looked for beside this program and on PATH; "
                 "LADDER_WORKER names it)")
            : tr("%1: no such executable (the `ladder` program builds the demo)").arg(m_program);
        return false;
    }
    m_process->start(m_program, QStringList { QStringLiteral("demo") } + extraArguments);
    if (!m_process->waitForStarted(kStartTimeoutMs)) {
        m_outcome = Outcome::Failed;
        m_message = tr("%1 could not be started: %2").arg(m_program, m_process->errorString());
        return false;
    }
    m_outcome = Outcome::Running;
    return true;
}

QString DemoBuildDialog::stageText() const
{
    return m_stage->text();
}

void DemoBuildDialog::cancel()
{
    if (m_process->state() == QProcess::NotRunning) {
        QDialog::reject();
        return;
    }
    if (m_cancelRequested)
        return;
    m_cancelRequested = true;
    m_cancel->setEnabled(false);
    m_stage->setText(tr("Cancelling: `ladder demo` stops at its next step…"));
    // SIGINT is ladder's Ctrl+C: it stops at the next step or stage and removes its staging folder.
    ::kill(static_cast<pid_t>(m_process->processId()), SIGINT);
    m_killTimer->start(kCancelGraceMs);
}

void DemoBuildDialog::reject()
{
    cancel(); // closes once the child has ended
}

void DemoBuildDialog::readStderr()
{
    m_pending += m_process->readAllStandardError();
    for (;;) {
        const qsizetype end = m_pending.indexOf('\n');
        const qsizetype cr = m_pending.indexOf('\r');
        const qsizetype at = end < 0 ? cr : (cr < 0 ? end : std::min(end, cr));
        if (at < 0)
            break;
        const QString line = QString::fromUtf8(m_pending.left(at)).trimmed();
        m_pending.remove(0, at + 1);
        if (!line.isEmpty())
            handleLine(line);
    }
}

void DemoBuildDialog::handleLine(const QString& line)
{
    m_lastLines.push_back(line);
    if (m_lastLines.size() > kKeptLines)
        m_lastLines.pop_front();
    if (m_cancelRequested)
        return;
    const DemoProgressLine progress = parseDemoProgressLine(line);
    if (progress.isStep && progress.totalSteps > 0) {
        m_step = progress.step;
        m_totalSteps = progress.totalSteps;
        // QProgressBar holds an int: the steps are far below INT_MAX (the recipe has a few thousand).
        m_bar->setRange(0, static_cast<int>(progress.totalSteps));
        m_bar->setValue(static_cast<int>(progress.step));
        m_stage->setText(tr("Pretraining the demo backbone: %1").arg(progress.text));
    } else {
        m_stage->setText(progress.text);
    }
}

void DemoBuildDialog::processFinished(int exitCode, QProcess::ExitStatus status)
{
    m_killTimer->stop();
    m_pending += '\n';
    readStderr();
    if (status == QProcess::NormalExit && exitCode == 0) {
        m_outcome = Outcome::Built;
        m_message = m_lastLines.isEmpty() ? QString() : m_lastLines.back();
        if (m_totalSteps > 0)
            m_bar->setValue(m_bar->maximum());
        QDialog::accept();
        return;
    }
    m_outcome = m_cancelRequested ? Outcome::Cancelled : Outcome::Failed;
    const QString how = status == QProcess::CrashExit
        ? tr("`ladder demo` was killed or crashed")
        : tr("`ladder demo` exited with status %1").arg(exitCode);
    m_message
        = m_lastLines.isEmpty() ? how : how + QStringLiteral(":\n") + m_lastLines.join(QLatin1Char('\n'));
    QDialog::reject();
}

bool offerDemoBuild(QWidget* parent, const QString& program)
{
    QSettings settings;
    if (!settings.value(kAskSetting, true).toBool())
        return false;
    QMessageBox ask(QMessageBox::Question, QObject::tr("Built-in demo"),
        QObject::tr("The built-in demo is not built yet. The experiment form starts with it: a small T5 "
                    "pretrained on WordNet and two WordNet tasks, made on this machine with no download."),
        QMessageBox::NoButton, parent);
    ask.setInformativeText(QObject::tr("Building it takes a few minutes on two cores, once (`ladder demo`). "
                                       "Build it now?"));
    QPushButton* build = ask.addButton(QObject::tr("Build the demo"), QMessageBox::AcceptRole);
    ask.addButton(QObject::tr("Not now"), QMessageBox::RejectRole);
    ask.setDefaultButton(build);
    auto* never = new QCheckBox(QObject::tr("Do not ask again"));
    ask.setCheckBox(never);
    ask.exec();
    if (never->isChecked())
        settings.setValue(kAskSetting, false);
    if (ask.clickedButton() != build)
        return false;

    DemoBuildDialog dialog(program, parent);
    if (dialog.start())
        dialog.exec();
    switch (dialog.outcome()) {
    case DemoBuildDialog::Outcome::Built:
        return true;
    case DemoBuildDialog::Outcome::Cancelled:
        return false;
    default:
        QMessageBox::warning(parent, QObject::tr("Built-in demo"),
            QObject::tr("The demo could not be built: %1\n\nRun `ladder demo` in a terminal to see every "
                        "message.")
                .arg(dialog.message()));
        return false;
    }
}

} // namespace ladder::widgets
