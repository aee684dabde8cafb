// ladderbench: the LadderBench workbench.
//   ladderbench [--store FILE] [--start-queue] [--view NAME] [--screenshot FILE.png]
// --screenshot renders the main window offscreen at a fixed size, saves it and exits, so README
// screenshots and GUI checks need no display. With --store it shows that store's runs (the queue) and the
// time series of its running or newest run (the live view); the queue is not started. An interactive
// launch starts the queue only when the store holds no queued runs: runs left queued from before wait for
// the queue view's Start (MainWindow), unless --start-queue asks to start them (an unattended queue).
// An interactive start whose form shows the built-in demo before it is built offers to build it
// (widgets/DemoSetupDialog: `ladder demo` in a child process, with a progress dialog); a screenshot or the
// offscreen platform never asks.
#include <cstdio>
#include <cstring>

#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QFileInfo>
#include <QIcon>
#include <QPixmap>
#include <QSize>
#include <QTimer>

#include "BackbonePicker.h"
#include "DemoSetupDialog.h"
#include "ExperimentForm.h"
#include "LiveViewBenchmark.h"
#include "MainWindow.h"
#include "RunQueueController.h"
#include "ladder/Version.h"
#include "train/MemoryMeter.h"

namespace {

constexpr QSize kScreenshotSize(1280, 800);
constexpr int kCompareLoadTimeoutMs = 30000;
constexpr int kDeviceQueryTimeoutMs = 30000;
// The reverse-DNS id of the desktop file, the AppStream metainfo and the icon (resources/).
const char* const kAppId = "io.github.ladderbench.LadderBench";

// True when the command line asks for something that needs no display: a screenshot, help or the version.
bool runsWithoutDisplay(int argc, char** argv)
{
    for (int i = 1; i < argc; ++i) {
        const char* arg = argv[i];
        if (std::strcmp(arg, "--screenshot") == 0 || std::strncmp(arg, "--screenshot=", 13) == 0
            || std::strcmp(arg, "--help") == 0 || std::strcmp(arg, "-h") == 0
            || std::strcmp(arg, "--help-all") == 0 || std::strcmp(arg, "--version") == 0
            || std::strcmp(arg, "-v") == 0 || std::strcmp(arg, "--bench-live") == 0)
            return true;
    }
    return false;
}

bool hasDisplay()
{
    return !qEnvironmentVariableIsEmpty("DISPLAY") || !qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY");
}

int fail(const QString& message)
{
    std::fprintf(stderr, "ladderbench: %s\n", qPrintable(message));
    return 1;
}

int saveScreenshot(ladder::widgets::MainWindow& window, const QString& path)
{
    const QFileInfo target(path);
    if (!QDir().mkpath(target.absolutePath()))
        return fail(QStringLiteral("cannot create the folder %1").arg(target.absolutePath()));
    window.resize(kScreenshotSize);
    window.show();
    QApplication::processEvents();
    const QPixmap pixmap = window.grab();
    if (pixmap.isNull())
        return fail(QStringLiteral("rendering the main window failed"));
    if (!pixmap.save(target.absoluteFilePath()))
        return fail(QStringLiteral("cannot write %1 (a writable path ending in .png is expected)")
                        .arg(target.absoluteFilePath()));
    std::printf("%s: %dx%d\n", qPrintable(target.absoluteFilePath()), pixmap.width(), pixmap.height());
    return 0;
}

// The theme's icon where the package installed it (hicolor), else the PNGs compiled in
// (resources/ladderbench.qrc).
QIcon applicationIcon()
{
    QIcon builtIn;
    for (const int size : { 16, 32, 48, 64, 128, 256 })
        builtIn.addFile(
            QStringLiteral(":/icons/hicolor/%1x%1/apps/%2.png").arg(size).arg(QLatin1String(kAppId)),
            QSize(size, size));
    return QIcon::fromTheme(QLatin1String(kAppId), builtIn);
}

// A first start: the form shows the built-in demo backbone, and the picker says it is not built yet.
void offerDemoWhenMissing(ladder::widgets::MainWindow& window)
{
    const QString platform = QGuiApplication::platformName();
    if (platform == QLatin1String("offscreen") || platform == QLatin1String("minimal"))
        return;
    auto* picker = window.experimentForm()->backbonePicker();
    if (picker->backbone() != QLatin1String("demo") || picker->info().error.isEmpty())
        return;
    QTimer::singleShot(0, &window, [&window, picker] {
        if (ladder::widgets::offerDemoBuild(
                &window, ladder::widgets::RunQueueController::defaultWorkerProgram()))
            picker->refresh();
    });
}

} // namespace

int main(int argc, char** argv)
{
    // Before any tensor exists, so that CPU runs count every byte (as `ladder` does).
    ladder::installCpuMemoryTracker();
    // A screenshot needs no display: use the offscreen platform unless one was chosen explicitly.
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) {
        if (runsWithoutDisplay(argc, argv))
            qputenv("QT_QPA_PLATFORM", "offscreen");
        else if (!hasDisplay())
            return fail(
                QStringLiteral("no display (DISPLAY and WAYLAND_DISPLAY are unset); run it under "
                               "`xvfb-run -a`, or use --screenshot FILE.png to render the window offscreen"));
    }

    QApplication app(argc, argv);
    QApplication::setOrganizationName(QStringLiteral("LadderBench"));
    QApplication::setApplicationName(QStringLiteral("ladderbench"));
    QApplication::setApplicationDisplayName(QStringLiteral("LadderBench"));
    QApplication::setApplicationVersion(QString::fromUtf8(ladder::kVersion));
    QGuiApplication::setDesktopFileName(QLatin1String(kAppId));
    QApplication::setWindowIcon(applicationIcon());

    QCommandLineParser parser;
    parser.setApplicationDescription(
        QStringLiteral("LadderBench: memory-efficient fine-tuning of T5 models with Ladder Side-Tuning."));
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption screenshotOption(QStringLiteral("screenshot"),
        QStringLiteral("Render the main window (%1x%2) offscreen, save it to <file> and exit.")
            .arg(kScreenshotSize.width())
            .arg(kScreenshotSize.height()),
        QStringLiteral("file"));
    const QCommandLineOption viewOption(QStringLiteral("view"),
        QStringLiteral("Open the view <name> (overview, experiment, queue, live, ...)."),
        QStringLiteral("name"));
    const QCommandLineOption storeOption(QStringLiteral("store"),
        QStringLiteral(
            "Use the results store <file> (default: the one in the settings, else the standard one)."),
        QStringLiteral("file"));
    parser.addOption(screenshotOption);
    parser.addOption(viewOption);
    const QCommandLineOption benchLiveOption(QStringLiteral("bench-live"),
        QStringLiteral(
            "Measure the live chart's append and replot times at 1,000 and 100,000 points, print them "
            "and exit."));
    const QCommandLineOption startQueueOption(QStringLiteral("start-queue"),
        QStringLiteral("Start the queue at launch even when the store holds queued runs (by default they "
                       "wait for the Queue tab's Start)."));
    parser.addOption(storeOption);
    parser.addOption(startQueueOption);
    parser.addOption(benchLiveOption);
    parser.process(app);
    if (!parser.positionalArguments().isEmpty())
        return fail(QStringLiteral("unexpected argument '%1' (see --help)")
                        .arg(parser.positionalArguments().first()));

    if (parser.isSet(benchLiveOption)) {
        std::printf("%s",
            qPrintable(ladder::widgets::formatLiveViewBenchmark(ladder::widgets::runLiveViewBenchmark())));
        return 0;
    }

    const bool screenshot = parser.isSet(screenshotOption);
    ladder::widgets::MainWindowOptions options;
    options.storePath = parser.value(storeOption);
    options.startQueue = !screenshot; // a screenshot never starts training
    options.startQueuedRuns = parser.isSet(startQueueOption);
    if (screenshot && !options.storePath.isEmpty() && !QFileInfo(options.storePath).isFile())
        return fail(QStringLiteral("%1: no such results store file").arg(options.storePath));
    ladder::widgets::MainWindow window(options);
    if (parser.isSet(viewOption)) {
        const QString view = parser.value(viewOption);
        if (!window.showView(view))
            return fail(QStringLiteral("unknown view '%1' (available: %2)")
                            .arg(view, window.viewNames().join(QStringLiteral(", "))));
    }

    if (screenshot) {
        QString error;
        if (!window.loadStoreNow(&error))
            return fail(error);
        // The GPUs are queried off the GUI thread: a screenshot shows them once the query has answered.
        if (!window.waitForDevices(kDeviceQueryTimeoutMs))
            std::fprintf(stderr,
                "ladderbench: the GPU query did not answer within %d s; the screenshot shows "
                "the CPU only\n",
                kDeviceQueryTimeoutMs / 1000);
        if (window.currentViewName() == QLatin1String("compare")
            && !window.waitForCompare(kCompareLoadTimeoutMs))
            return fail(QStringLiteral("the compare view did not load the store within %1 s")
                            .arg(kCompareLoadTimeoutMs / 1000));
        return saveScreenshot(window, parser.value(screenshotOption));
    }

    window.show();
    offerDemoWhenMissing(window);
    return QApplication::exec();
}
