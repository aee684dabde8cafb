#pragma once

#include <csignal>

namespace ladder::cli {

// Ctrl+C for the commands that stop cleanly (train, sweep, eval, demo, pretrain). The first SIGINT sets
// g_interrupted and says on stderr that the command is stopping; the command polls it between loading
// stages, Fisher examples and steps, and ends with exit 130 (a run is recorded as cancelled). A second
// SIGINT ends the process at once with _exit(130). Commands without the handler (info, forward, bench, ...)
// hold nothing to clean up: SIGINT ends them at once, which shells report as 130 too.
extern volatile std::sig_atomic_t g_interrupted;

// The SIGINT handler (async-signal-safe: a flag, write(2) and _exit).
void onSigint(int);

// Installs onSigint for SIGINT, unless SIGINT is ignored (a background job of a shell without job
// control must not be stopped by the terminal's Ctrl+C). Call it first, before anything is loaded.
void installInterruptHandler();

bool interrupted();

// Throws Cancelled (exit 130) when Ctrl+C was pressed: called between loading stages.
void throwIfInterrupted();

} // namespace ladder::cli
