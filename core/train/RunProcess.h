#pragma once

// A child process started with posix_spawn and supervised line by line: what a run in its own process
// needs. Its stdout and stderr arrive as whole lines on the supervising thread; stdin stays open so the
// supervisor can write to it (a polite "cancel"). Stopping escalates: stop() asks politely (the caller
// writes to stdin first), then SIGTERM after politeSeconds, then SIGKILL after termSeconds more.
//
// POSIX only (Linux): the core's one place that starts processes. Safe to use from any thread of a
// multi-threaded program: posix_spawn runs no user code in the child, and every pipe is close-on-exec, so
// two runs started at once from two threads never inherit each other's pipes.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace ladder {

struct ProcessExit {
    bool started = false; // false: the program could not be started (startError says why)
    std::string startError;
    bool signalled = false; // killed by a signal (exitCode is then 0)
    int signal = 0;
    int exitCode = 0;
    bool stoppedByUs = false; // the supervisor sent SIGTERM or SIGKILL (stop() escalated)
    int stopSignal = 0; // the last signal the supervisor sent

    // "exited with status 3", "killed by signal 11 (SIGSEGV)", "could not start: ...".
    std::string describe() const;
};

// "SIGSEGV" for 11 and so on; "signal N" for one without a name here.
std::string signalName(int signal);

class ChildProcess {
public:
    struct Options {
        std::string program;
        std::vector<std::string> args; // argv[1...]
        std::vector<std::string> setEnv; // "NAME=value" added to (or replacing in) this process's environment
        double politeSeconds = 30.0; // after stop(): how long before SIGTERM
        double termSeconds = 10.0; // after SIGTERM: how long before SIGKILL
    };
    // Called on the supervising thread for each complete line (without its newline); a last line without
    // a newline is delivered when the stream ends.
    using LineHandler = std::function<void(const std::string& line)>;
    // Called about every pollMilliseconds while the child runs; returning true asks it to stop (once).
    using StopQuery = std::function<bool()>;

    ChildProcess() = default;
    ~ChildProcess(); // a child still running is killed (SIGKILL) and reaped
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    // Starts the child. False (with *error) when it cannot be started.
    bool start(const Options& options, std::string* error);
    pid_t pid() const { return m_pid; }

    // Writes to the child's stdin (false when the pipe is closed, e.g. the child exited).
    bool writeStdin(const std::string& text);

    // Reads both streams until the child has exited and its streams are closed, then reaps it.
    // shouldStop is polled; when it first returns true, onStop (if set) runs (write a polite request
    // there) and the escalation clock starts.
    ProcessExit supervise(const LineHandler& onStdout, const LineHandler& onStderr,
        const StopQuery& shouldStop = {}, const std::function<void()>& onStop = {},
        int pollMilliseconds = 50);

private:
    void closeFd(int& fd);

    Options m_options;
    pid_t m_pid = -1;
    int m_stdin = -1;
    int m_stdout = -1;
    int m_stderr = -1;
    bool m_reaped = false;
};

} // namespace ladder
