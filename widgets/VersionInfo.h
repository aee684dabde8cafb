#pragma once

#include <QString>

namespace ladder::widgets {

// The versions an About box and the overview panel show, gathered once from the build.
struct VersionInfo {
    QString ladderbench; // project version, "0.1.0"
    QString qt; // Qt at run time
    QString torch; // LibTorch the core was built against, "2.11.0"
    QString cuda; // CUDA runtime of that LibTorch, "13.0", or "none" in a CPU-only build
    bool builtWithCuda = false;

    static VersionInfo current();

    // Rich text for Help > About.
    QString aboutHtml() const;
};

} // namespace ladder::widgets
