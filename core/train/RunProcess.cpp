#include "RunProcess.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace ladder {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t)
{
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// Splits what arrives on one stream into lines.
struct LineBuffer {
    std::string pending;
    void feed(const char* data, std::size_t n, const ChildProcess::LineHandler& handler)
    {
        pending.append(data, n);
        std::size_t start = 0;
        for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
            if (handler)
                handler(pending.substr(start, nl - start));
        pending.erase(0, start);
    }
    void flush(const ChildProcess::LineHandler& handler)
    {
        if (!pending.empty() && handler)
            handler(pending);
        pending.clear();
    }
};

// Reads what is available now; false at end of stream (or an error other than "try again").
bool drain(int fd, LineBuffer& buffer, const ChildProcess::LineHandler& handler)
{
    char chunk[8192];
    for (;;) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n > 0) {
            buffer.feed(chunk, static_cast<std::size_t>(n), handler);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        buffer.flush(handler);
        return false;
    }
}

} // namespace

std::string signalName(int signal)
{
    static const std::map<int, const char*> names { { SIGHUP, "SIGHUP" }, { SIGINT, "SIGINT" },
        { SIGQUIT, "SIGQUIT" }, { SIGILL, "SIGILL" }, { SIGTRAP, "SIGTRAP" }, { SIGABRT, "SIGABRT" },
        { SIGBUS, "SIGBUS" }, { SIGFPE, "SIGFPE" }, { SIGKILL, "SIGKILL" }, { SIGUSR1, "SIGUSR1" },
        { SIGSEGV, "SIGSEGV" }, { SIGUSR2, "SIGUSR2" }, { SIGPIPE, "SIGPIPE" }, { SIGALRM, "SIGALRM" },
        { SIGTERM, "SIGTERM" }, { SIGXCPU, "SIGXCPU" }, { SIGXFSZ, "SIGXFSZ" }, { SIGSYS, "SIGSYS" } };
    const auto it = names.find(signal);
    return it != names.end() ? it->second : "signal " + std::to_string(signal);
}

std::string ProcessExit::describe() const
{
    if (!started)
        return "could not start: " + startError;
    if (signalled) {
        std::string s = "killed by signal " + std::to_string(signal) + " (" + signalName(signal) + ")";
        if (signal == SIGKILL && !stoppedByUs)
            s += "; the kernel's out-of-memory killer sends this one";
        return s;
    }
    return "exited with status " + std::to_string(exitCode);
}

ChildProcess::~ChildProcess()
{
    if (m_pid > 0 && !m_reaped) {
        ::kill(m_pid, SIGKILL);
        int status = 0;
        while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) { }
    }
    closeFd(m_stdin);
    closeFd(m_stdout);
    closeFd(m_stderr);
}

void ChildProcess::closeFd(int& fd)
{
    if (fd >= 0)
        ::close(fd);
    fd = -1;
}

bool ChildProcess::start(const Options& options, std::string* error)
{
    auto fail = [&](const std::string& what) {
        if (error)
            *error = what;
        return false;
    };
    if (m_pid > 0)
        return fail("a child process was started already");
    m_options = options;
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0)
        return fail(std::string("pipe: ") + std::strerror(errno));
    if (::pipe2(out, O_CLOEXEC) != 0) {
        ::close(in[0]);
        ::close(in[1]);
        return fail(std::string("pipe: ") + std::strerror(errno));
    }
    if (::pipe2(err, O_CLOEXEC) != 0) {
        for (int fd : { in[0], in[1], out[0], out[1] })
            ::close(fd);
        return fail(std::string("pipe: ") + std::strerror(errno));
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    // dup2 clears close-on-exec on the target, so the child keeps exactly 0, 1 and 2.
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);

    std::vector<std::string> argStore { options.program };
    argStore.insert(argStore.end(), options.args.begin(), options.args.end());
    std::vector<char*> argv;
    for (auto& a : argStore)
        argv.push_back(a.data());
    argv.push_back(nullptr);

    // The environment: this process's, with setEnv's entries replacing those of the same name.
    std::vector<std::string> envStore;
    for (char** e = environ; e && *e; ++e) {
        const std::string entry = *e;
        const auto name = entry.substr(0, entry.find('='));
        bool replaced = false;
        for (const auto& s : options.setEnv)
            replaced = replaced || s.substr(0, s.find('=')) == name;
        if (!replaced)
            envStore.push_back(entry);
    }
    envStore.insert(envStore.end(), options.setEnv.begin(), options.setEnv.end());
    std::vector<char*> envp;
    for (auto& e : envStore)
        envp.push_back(e.data());
    envp.push_back(nullptr);

    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, options.program.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    if (rc != 0) {
        ::close(in[1]);
        ::close(out[0]);
        ::close(err[0]);
        return fail(options.program + ": " + std::strerror(rc));
    }
    m_pid = pid;
    m_stdin = in[1];
    m_stdout = out[0];
    m_stderr = err[0];
    ::fcntl(m_stdout, F_SETFL, ::fcntl(m_stdout, F_GETFL) | O_NONBLOCK);
    ::fcntl(m_stderr, F_SETFL, ::fcntl(m_stderr, F_GETFL) | O_NONBLOCK);
    return true;
}

bool ChildProcess::writeStdin(const std::string& text)
{
    if (m_stdin < 0)
        return false;
    // A child that has exited closed its end: without this the write would raise SIGPIPE here.
    sigset_t pipeSet, old;
    sigemptyset(&pipeSet);
    sigaddset(&pipeSet, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipeSet, &old);
    std::size_t done = 0;
    bool ok = true;
    while (done < text.size()) {
        const ssize_t n = ::write(m_stdin, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ok = false;
            break;
        }
        done += static_cast<std::size_t>(n);
    }
    if (!ok) {
        // Consume the SIGPIPE this thread may have raised while it was blocked, then restore the mask.
        const timespec zero { 0, 0 };
        while (sigtimedwait(&pipeSet, nullptr, &zero) > 0) { }
        closeFd(m_stdin);
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return ok;
}

ProcessExit ChildProcess::supervise(const LineHandler& onStdout, const LineHandler& onStderr,
    const StopQuery& shouldStop, const std::function<void()>& onStop, int pollMilliseconds)
{
    ProcessExit result;
    if (m_pid <= 0) {
        result.startError = "no child process was started";
        return result;
    }
    result.started = true;
    LineBuffer outBuffer, errBuffer;
    bool stopping = false, termSent = false, killSent = false;
    Clock::time_point stopAt, termAt;
    int status = 0;
    bool exited = false;
    while (true) {
        pollfd fds[2];
        nfds_t n = 0;
        if (m_stdout >= 0)
            fds[n++] = { m_stdout, POLLIN, 0 };
        if (m_stderr >= 0)
            fds[n++] = { m_stderr, POLLIN, 0 };
        if (n > 0) {
            const int rc = ::poll(fds, n, pollMilliseconds);
            if (rc < 0 && errno != EINTR)
                break;
        } else if (!exited) {
            ::usleep(static_cast<useconds_t>(pollMilliseconds) * 1000);
        }
        if (m_stdout >= 0 && !drain(m_stdout, outBuffer, onStdout))
            closeFd(m_stdout);
        if (m_stderr >= 0 && !drain(m_stderr, errBuffer, onStderr))
            closeFd(m_stderr);
        if (!exited) {
            const pid_t w = ::waitpid(m_pid, &status, WNOHANG);
            exited = w == m_pid;
        }
        if (exited) {
            // Whatever the child wrote before it ended is in the pipes now; a grandchild that kept them
            // open must not keep us here.
            if (m_stdout >= 0) {
                drain(m_stdout, outBuffer, onStdout);
                outBuffer.flush(onStdout);
                closeFd(m_stdout);
            }
            if (m_stderr >= 0) {
                drain(m_stderr, errBuffer, onStderr);
                errBuffer.flush(onStderr);
                closeFd(m_stderr);
            }
            break;
        }
        if (!stopping && shouldStop && shouldStop()) {
            stopping = true;
            stopAt = Clock::now();
            if (onStop)
                onStop();
        }
        if (stopping && !termSent && secondsSince(stopAt) >= m_options.politeSeconds) {
            termSent = true;
            termAt = Clock::now();
            result.stoppedByUs = true;
            result.stopSignal = SIGTERM;
            ::kill(m_pid, SIGTERM);
        }
        if (termSent && !killSent && secondsSince(termAt) >= m_options.termSeconds) {
            killSent = true;
            result.stopSignal = SIGKILL;
            ::kill(m_pid, SIGKILL);
        }
    }
    if (!exited)
        while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) { }
    m_reaped = true;
    closeFd(m_stdin);
    if (WIFSIGNALED(status)) {
        result.signalled = true;
        result.signal = WTERMSIG(status);
    } else if (WIFEXITED(status)) {
        result.exitCode = WEXITSTATUS(status);
    }
    return result;
}

} // namespace ladder
