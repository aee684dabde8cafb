#include "DistributedLaunch.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "Commands.h"
#include "store/ResultsStore.h"
#include "train/RunWorkerProcess.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

std::vector<std::string> g_arguments;
volatile std::sig_atomic_t g_forward = 0; // the last SIGINT/SIGTERM this launcher received

void onForwardedSignal(int signal)
{
    g_forward = signal;
}

// A port the kernel has just handed out on loopback (closed again: a small race that torchrun's
// --standalone takes too).
int freeLoopbackPort()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        throw Error(std::string("a free port for the rendezvous: socket: ") + std::strerror(errno));
    sockaddr_in addr {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
        || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        throw Error(std::string("a free port for the rendezvous: ") + std::strerror(errno));
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

std::string describeStatus(int status)
{
    if (WIFEXITED(status))
        return "exited with " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " ("
            + ::strsignal(WTERMSIG(status)) + ")";
    return "ended";
}

int exitCodeOf(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

// Rank 0 ended without its own verdict (a signal, or an exit code no run outcome gives): its run, if it
// named one and it is still running, is failed with how rank 0 ended.
void markRunOfDeadRankZero(const std::string& report, int status, pid_t rank0)
{
    const int code = exitCodeOf(status);
    if (WIFEXITED(status)
        && (code == kExitDone || code == kExitError || code == kExitCancelled || code == kExitUsage))
        return;
    std::ifstream in(report);
    std::string storePath;
    std::int64_t runId = 0;
    if (!std::getline(in, storePath) || !(in >> runId))
        return;
    ResultsStore store;
    std::string error;
    RunRecord run;
    if (!store.open(storePath, ResultsStore::OpenMode::Existing, &error)
        || !store.getRun(runId, &run, &error))
        return;
    // Opening the store may have found rank 0 dead already and marked its run interrupted (resumable),
    // which a data-parallel run is not.
    const bool interruptedHere = run.status == RunState::Interrupted
        && run.errorMessage.find("(pid " + std::to_string(rank0) + ")") != std::string::npos;
    if (run.status != RunState::Running && !interruptedHere)
        return;
    // interrupted -> running (this process's) -> failed: the store's own transitions.
    if (interruptedHere && !store.resumeRun(runId, RunState::Running, &error)) {
        std::cerr << "ladder: run " << runId << " could not be marked failed: " << error << std::endl;
        return;
    }
    const auto message = "data-parallel run stopped: rank 0 " + describeStatus(status);
    if (store.setStatus(runId, RunState::Failed, message, &error))
        std::cerr << "ladder: run " << runId << " marked failed: " << message << std::endl;
    else
        std::cerr << "ladder: run " << runId << " could not be marked failed: " << error << std::endl;
}

} // namespace

void reportRunToLauncher(const std::string& storePath, std::int64_t runId)
{
    const char* report = std::getenv("LADDER_LAUNCH_REPORT");
    const char* rank = std::getenv("RANK");
    if (!report || !*report || !rank || std::string(rank) != "0")
        return;
    std::ofstream(report) << storePath << "\n" << runId << "\n";
}

void setProgramArguments(int argc, char** argv)
{
    g_arguments.assign(argv, argv + argc);
}

const std::vector<std::string>& programArguments()
{
    return g_arguments;
}

// fork and exec here rather than core's ChildProcess (train/RunProcess.h): ChildProcess pipes a child's
// streams to its supervisor, and rank 0 must have this process's own stdin and stdout (a supervisor's
// cancel line and the event stream pass straight through), and every rank PR_SET_PDEATHSIG.
int launchLocalRanks(const LocalLaunch& launch)
{
    if (launch.processes < 1 || launch.processes > 1024)
        throw UsageError("--nproc: expected 1 to 1024 processes, got " + std::to_string(launch.processes));
    if (launch.arguments.empty())
        throw Error("launching ranks: no command");
    const auto program = selfExecutable();
    const int port = freeLoopbackPort();
    const auto supervisor = std::to_string(::getpid());
    std::cerr << "ladder: starting " << launch.processes << " ranks (rendezvous 127.0.0.1:" << port << ")"
              << std::endl;
    std::signal(SIGINT, onForwardedSignal);
    std::signal(SIGTERM, onForwardedSignal);
    const std::string report = "/tmp/ladder-launch-" + supervisor + ".run";
    ::unlink(report.c_str());
    std::vector<pid_t> pids(static_cast<std::size_t>(launch.processes), -1);
    for (int rank = 0; rank < launch.processes; ++rank) {
        std::vector<std::string> env = { "RANK=" + std::to_string(rank),
            "WORLD_SIZE=" + std::to_string(launch.processes), "LOCAL_RANK=" + std::to_string(rank),
            "LOCAL_WORLD_SIZE=" + std::to_string(launch.processes), "MASTER_ADDR=127.0.0.1",
            "MASTER_PORT=" + std::to_string(port), "LADDER_LAUNCHER=ladder --nproc",
            "LADDER_LAUNCH_REPORT=" + report, std::string(kSupervisorPidVariable) + "=" + supervisor };
        const pid_t pid = ::fork();
        if (pid < 0)
            throw Error(
                std::string("starting rank ") + std::to_string(rank) + ": fork: " + std::strerror(errno));
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            std::signal(SIGINT, SIG_DFL);
            std::signal(SIGTERM, SIG_DFL);
            if (rank > 0) {
                const int null = ::open("/dev/null", O_RDONLY);
                if (null >= 0)
                    ::dup2(null, STDIN_FILENO);
                ::dup2(STDERR_FILENO, STDOUT_FILENO);
            }
            for (const auto& kv : env)
                ::putenv(const_cast<char*>(kv.c_str()));
            std::vector<char*> argv;
            argv.push_back(const_cast<char*>(program.c_str()));
            for (std::size_t i = 1; i < launch.arguments.size(); ++i)
                argv.push_back(const_cast<char*>(launch.arguments[i].c_str()));
            argv.push_back(nullptr);
            ::execv(program.c_str(), argv.data());
            std::fprintf(stderr, "ladder: starting rank %d: exec %s: %s\n", rank, program.c_str(),
                std::strerror(errno));
            ::_exit(127);
        }
        pids[static_cast<std::size_t>(rank)] = pid;
    }
    const pid_t rank0Pid = pids[0];
    std::vector<int> statuses(pids.size(), 0);
    std::size_t running = pids.size();
    int firstFailed = -1;
    using Clock = std::chrono::steady_clock;
    Clock::time_point termAt {}, killAt {};
    bool termSent = false, killSent = false;
    int forwarded = 0;
    while (running > 0) {
        if (g_forward && g_forward != forwarded) { // Ctrl+C or a supervisor's SIGTERM: every rank hears it
            forwarded = g_forward;
            for (std::size_t r = 0; r < pids.size(); ++r)
                if (pids[r] > 0)
                    ::kill(pids[r], forwarded);
        }
        int status = 0;
        const pid_t done = ::waitpid(-1, &status, WNOHANG);
        if (done > 0) {
            for (std::size_t r = 0; r < pids.size(); ++r) {
                if (pids[r] != done)
                    continue;
                pids[r] = -1;
                statuses[r] = status;
                --running;
                if (exitCodeOf(status) != 0) {
                    std::cerr << "ladder: rank " << r << " " << describeStatus(status) << std::endl;
                    if (firstFailed < 0) {
                        firstFailed = static_cast<int>(r);
                        termAt = Clock::now() + launch.grace;
                        killAt = termAt + std::chrono::seconds(10);
                    }
                }
            }
            continue;
        }
        if (firstFailed >= 0 && !termSent && Clock::now() >= termAt) {
            termSent = true;
            std::cerr << "ladder: rank " << firstFailed << " failed " << launch.grace.count()
                      << " s ago; stopping the ranks still running" << std::endl;
            for (const auto pid : pids)
                if (pid > 0)
                    ::kill(pid, SIGTERM);
        }
        if (termSent && !killSent && Clock::now() >= killAt) {
            killSent = true;
            for (const auto pid : pids)
                if (pid > 0)
                    ::kill(pid, SIGKILL);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const int rank0 = exitCodeOf(statuses[0]);
    markRunOfDeadRankZero(report, statuses[0], rank0Pid);
    ::unlink(report.c_str());
    if (rank0 != 0)
        return rank0;
    return firstFailed >= 0 ? exitCodeOf(statuses[static_cast<std::size_t>(firstFailed)]) : 0;
}

} // namespace ladder::cli
