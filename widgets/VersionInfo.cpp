#include "VersionInfo.h"

#include <QCoreApplication>
#include <QtGlobal>

#include "device/Devices.h"
#include "ladder/Version.h"

namespace ladder::widgets {

VersionInfo VersionInfo::current()
{
    VersionInfo v;
    v.ladderbench = QString::fromUtf8(kVersion);
    v.qt = QString::fromUtf8(qVersion());
    v.torch = QString::fromStdString(torchVersion());
    v.cuda = QString::fromStdString(cudaRuntimeVersion());
    v.builtWithCuda = kBuiltWithCuda;
    return v;
}

QString VersionInfo::aboutHtml() const
{
    const QString cudaLine = builtWithCuda
        ? QCoreApplication::translate("VersionInfo", "CUDA runtime %1").arg(cuda)
        : QCoreApplication::translate("VersionInfo", "CUDA: not built in (CPU only)");
    return QCoreApplication::translate("VersionInfo",
        "<h3>LadderBench %1</h3>"
        "<p>A workbench for memory-efficient fine-tuning of T5 models "
        "with Ladder Side-Tuning.</p>"
        "<p>Qt %2<br>LibTorch %3<br>%4</p>")
        .arg(
            ladderbench.toHtmlEscaped(), qt.toHtmlEscaped(), torch.toHtmlEscaped(), cudaLine.toHtmlEscaped());
}

} // namespace ladder::widgets
