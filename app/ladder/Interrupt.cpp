#include "Interrupt.h"

#include <unistd.h>

#include "Commands.h"

namespace ladder::cli {

volatile std::sig_atomic_t g_interrupted = 0;

void onSigint(int)
{
    if (g_interrupted) {
        static const char quit[] = "\nladder: interrupted again: quitting now\n";
        if (::write(STDERR_FILENO, quit, sizeof quit - 1) < 0) { }
        ::_exit(kExitCancelled);
    }
    g_interrupted = 1;
    static const char stopping[]
        = "\nladder: interrupted: stopping at the next step or stage (Ctrl+C again to quit at once)\n";
    if (::write(STDERR_FILENO, stopping, sizeof stopping - 1) < 0) { }
}

void installInterruptHandler()
{
    struct sigaction current { };
    if (::sigaction(SIGINT, nullptr, &current) == 0 && current.sa_handler == SIG_IGN)
        return;
    struct sigaction action { };
    action.sa_handler = onSigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &action, nullptr);
}

bool interrupted()
{
    return g_interrupted != 0;
}

void throwIfInterrupted()
{
    if (g_interrupted)
        throw Cancelled();
}

} // namespace ladder::cli
