#pragma once

// The one way to include QCustomPlot in LadderBench. Everything is compiled with QT_NO_KEYWORDS (Qt's
// signals/slots/emit macros clash with LibTorch headers), but Debian's qcustomplot.h declares its signals
// with the bare `signals:` keyword and iterates with `foreach`. This header defines those two keywords
// around the include only.

#include <QtGlobal>

#ifndef signals
#define signals Q_SIGNALS
#define LADDER_QCP_UNDEF_SIGNALS
#endif
#ifndef foreach
#define foreach Q_FOREACH
#define LADDER_QCP_UNDEF_FOREACH
#endif

#include <qcustomplot.h>

#ifdef LADDER_QCP_UNDEF_SIGNALS
#undef signals
#undef LADDER_QCP_UNDEF_SIGNALS
#endif
#ifdef LADDER_QCP_UNDEF_FOREACH
#undef foreach
#undef LADDER_QCP_UNDEF_FOREACH
#endif
