#include "RunWorkerProcess.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "store/ResultsStore.h"
#include "train/RunProcess.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {
namespace {

using nlohmann::json;

// JSON has no NaN or infinity: a diverged loss travels as null and comes back as NaN.
json number(double v)
{
    return std::isfinite(v) ? json(v) : json(nullptr);
}

double numberOf(const json& j, const char* key)
{
    const auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : std::nan("");
}

std::int64_t intOf(const json& j, const char* key)
{
    const auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<std::int64_t>() : 0;
}

std::string textOf(const json& j, const char* key)
{
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int signalByName(const std::string& name)
{
    for (int s = 1; s < 32; ++s)
        if (signalName(s) == name)
            return s;
    return 0;
}

// Retries a store write while the store is busy (ResultsStore::lastErrorWasBusy: another process held the
// write lock past the busy timeout), for at most about `seconds`.
template <typename F>
bool retried(const ResultsStore& store, F write, std::string* error, double seconds = 60.0)
{
    const auto start = std::chrono::steady_clock::now();
    auto wait = std::chrono::milliseconds(100);
    for (;;) {
        if (write(error))
            return true;
        if (!store.lastErrorWasBusy()
            || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds)
            return false;
        std::this_thread::sleep_for(wait);
        wait = std::min(wait * 2, std::chrono::milliseconds(2000));
    }
}

} // namespace

// ---- The worker's side --------------------------------------------------------------------------------

RunEventWriter::RunEventWriter(std::FILE* out)
    : m_out(out)
{
}

void RunEventWriter::write(const std::string& line)
{
    std::lock_guard lock(m_mutex);
    // The supervisor may be gone (its pipe closed): SIGPIPE is ignored by the worker and the write fails
    // quietly; the run goes on and records itself in the store.
    std::fputs(line.c_str(), m_out);
    std::fputc('\n', m_out);
    std::fflush(m_out);
}

void RunEventWriter::setFault(int signal, std::int64_t step)
{
    m_faultSignal = signal;
    m_faultStep = step;
}

void RunEventWriter::onStep(const TrainStep& s)
{
    if (m_faultSignal && s.step >= m_faultStep) {
        write(json { { "event", "log" }, { "level", "warning" },
            { "message",
                "fault injection (LADDER_WORKER_FAULT): raising " + signalName(m_faultSignal) + " at step "
                    + std::to_string(s.step) } }
                  .dump());
        // The default action, whatever handler is installed: under AddressSanitizer (handle_segv) a raised
        // SIGSEGV would otherwise be reported and end the worker with the sanitizer's exit status, not the
        // signal this fault stands for.
        std::signal(m_faultSignal, SIG_DFL);
        std::raise(m_faultSignal);
    }
    write(json { { "event", "step" }, { "step", s.step }, { "total_steps", s.totalSteps },
        { "epoch", s.epoch }, { "loss", number(s.loss) }, { "learning_rate", number(s.learningRate) },
        { "allocated", s.memory.allocated }, { "peak_allocated", s.memory.peakAllocated },
        { "reserved", s.memory.reserved }, { "peak_reserved", s.memory.peakReserved },
        { "tokens_per_second", number(s.tokensPerSecond) }, { "elapsed_seconds", number(s.elapsedSeconds) } }
              .dump());
}

void RunEventWriter::onEval(const TrainEval& e)
{
    json values = json::object();
    for (const auto& [k, v] : e.values)
        values[k] = number(v);
    write(json { { "event", "eval" }, { "step", e.step }, { "epoch", e.epoch }, { "split", e.split },
        { "main_name", e.mainName }, { "main", number(e.main) }, { "values", values },
        { "examples", e.examples }, { "invalid", e.invalid }, { "seconds", number(e.seconds) } }
              .dump());
}

void RunEventWriter::onLog(const std::string& level, const std::string& message)
{
    write(json { { "event", "log" }, { "level", level }, { "message", message } }.dump(
        -1, ' ', false, json::error_handler_t::replace));
}

void RunEventWriter::onInitProgress(const std::string& what, std::int64_t done, std::int64_t total)
{
    write(json { { "event", "init" }, { "what", what }, { "done", done }, { "total", total } }.dump());
}

void RunEventWriter::writeEnd(RunState state, const std::string& message)
{
    write(json { { "event", "end" }, { "status", toString(state) }, { "message", message } }.dump(
        -1, ' ', false, json::error_handler_t::replace));
}

bool parseFaultInjection(const std::string& value, std::int64_t runId, int* signal, std::int64_t* step)
{
    std::istringstream in(value);
    std::string word;
    int sig = 0;
    std::int64_t atStep = -1, forRun = -1;
    auto bad = [&](const std::string& why) {
        return Error("LADDER_WORKER_FAULT=\"" + value + "\": " + why
            + " (expected \"SIGNAL step=N [run=ID]\", e.g. \"SIGSEGV step=2\")");
    };
    while (in >> word) {
        try {
            if (word.rfind("step=", 0) == 0)
                atStep = std::stoll(word.substr(5));
            else if (word.rfind("run=", 0) == 0)
                forRun = std::stoll(word.substr(4));
            else if ((sig = signalByName(word)) == 0)
                throw bad("unknown signal or field \"" + word + "\"");
        } catch (const std::logic_error&) { // std::stoll's invalid_argument and out_of_range
            throw bad("\"" + word + "\" is not a number");
        }
    }
    if (sig == 0 || atStep < 1)
        throw bad("a signal and step=N (N >= 1) are required");
    if (forRun >= 0 && forRun != runId)
        return false;
    *signal = sig;
    *step = atStep;
    return true;
}

namespace {

// Splits "WORDS run=ID" into the words without run=ID and the run (-1 when absent); false when ID does
// not parse.
bool splitRunField(const std::string& value, std::string* rest, std::int64_t* run)
{
    std::istringstream in(value);
    std::string word;
    *run = -1;
    rest->clear();
    while (in >> word) {
        if (word.rfind("run=", 0) == 0) {
            try {
                std::size_t used = 0;
                *run = std::stoll(word.substr(4), &used);
                if (used != word.size() - 4 || *run < 0)
                    return false;
            } catch (const std::logic_error&) {
                return false;
            }
            continue;
        }
        *rest += (rest->empty() ? "" : " ") + word;
    }
    return true;
}

} // namespace

std::string nanInjectionForRun(const std::string& value, std::int64_t runId)
{
    std::string rest;
    std::int64_t run = -1;
    if (!splitRunField(value, &rest, &run) || rest.rfind("nan@", 0) != 0)
        return value;
    return run < 0 || run == runId ? rest : std::string();
}

bool parseAddressSpaceLimit(const std::string& value, std::int64_t runId, std::uint64_t* headroomBytes)
{
    auto bad = [&](const std::string& why) {
        return Error("LADDER_WORKER_RLIMIT_AS=\"" + value + "\": " + why
            + " (expected \"MiB [run=ID]\", e.g. \"64 run=3\": the address space may grow by 64 MiB)");
    };
    std::string rest;
    std::int64_t run = -1;
    if (!splitRunField(value, &rest, &run))
        throw bad("run= needs a run id");
    std::uint64_t mib = 0;
    try {
        std::size_t used = 0;
        const auto n = std::stoll(rest, &used);
        if (used != rest.size() || n < 1 || n > (std::int64_t(1) << 30))
            throw bad("the headroom must be a whole number of MiB from 1 to 2^30");
        mib = static_cast<std::uint64_t>(n);
    } catch (const std::logic_error&) {
        throw bad("\"" + rest + "\" is not a number of MiB");
    }
    if (run >= 0 && run != runId)
        return false;
    *headroomBytes = mib << 20;
    return true;
}

// ---- The supervisor's side -----------------------------------------------------------------------------

bool dispatchRunEvent(
    const std::string& line, TrainerObserver& observer, RunState* endState, std::string* endMessage)
{
    if (line.empty() || line.front() != '{')
        return false;
    json j;
    try {
        j = parseJson(line, "run event");
    } catch (const Error&) {
        return false;
    }
    const std::string event = textOf(j, "event");
    if (event == "step") {
        TrainStep s;
        s.step = intOf(j, "step");
        s.totalSteps = intOf(j, "total_steps");
        s.epoch = intOf(j, "epoch");
        s.loss = numberOf(j, "loss");
        s.learningRate = numberOf(j, "learning_rate");
        s.memory.allocated = static_cast<std::uint64_t>(intOf(j, "allocated"));
        s.memory.peakAllocated = static_cast<std::uint64_t>(intOf(j, "peak_allocated"));
        s.memory.reserved = static_cast<std::uint64_t>(intOf(j, "reserved"));
        s.memory.peakReserved = static_cast<std::uint64_t>(intOf(j, "peak_reserved"));
        s.tokensPerSecond = numberOf(j, "tokens_per_second");
        s.elapsedSeconds = numberOf(j, "elapsed_seconds");
        observer.onStep(s);
    } else if (event == "eval") {
        TrainEval e;
        e.step = intOf(j, "step");
        e.epoch = intOf(j, "epoch");
        e.split = textOf(j, "split");
        e.mainName = textOf(j, "main_name");
        e.main = numberOf(j, "main");
        if (const auto it = j.find("values"); it != j.end() && it->is_object())
            for (const auto& [k, v] : it->items())
                e.values[k] = v.is_number() ? v.get<double>() : std::nan("");
        e.examples = static_cast<std::size_t>(intOf(j, "examples"));
        e.invalid = static_cast<std::size_t>(intOf(j, "invalid"));
        e.seconds = numberOf(j, "seconds");
        observer.onEval(e);
    } else if (event == "log") {
        observer.onLog(textOf(j, "level"), textOf(j, "message"));
    } else if (event == "init") {
        observer.onInitProgress(textOf(j, "what"), intOf(j, "done"), intOf(j, "total"));
    } else if (event == "end") {
        RunState state = RunState::Failed;
        if (endState && parseRunState(textOf(j, "status"), &state))
            *endState = state;
        if (endMessage)
            *endMessage = textOf(j, "message");
    } else {
        return false;
    }
    return true;
}

RunWorkerResult superviseRunWorker(const RunWorkerLaunch& launch, TrainerObserver& observer)
{
    RunWorkerResult result;
    const std::string label = "run " + std::to_string(launch.runId);
    ResultsStore store;
    std::string error;
    if (!store.open(launch.storePath, &error)) {
        result.message = error;
        return result; // without a connection nothing can be recorded; the caller reports it
    }

    ChildProcess child;
    ChildProcess::Options options;
    options.program = launch.program;
    options.args = { "worker", "--store", launch.storePath, "--run", std::to_string(launch.runId) };
    if (launch.processes > 1) {
        options.args.push_back("--nproc");
        options.args.push_back(std::to_string(launch.processes));
    }
    options.setEnv = launch.setEnv;
    // The worker dies with this process (WorkerCommands.cpp): a window killed mid-run leaves the run to be
    // marked interrupted, never a worker training on unsupervised beside the next window's runs.
    options.setEnv.push_back(std::string(kSupervisorPidVariable) + "=" + std::to_string(::getpid()));
    options.politeSeconds = launch.politeSeconds;
    options.termSeconds = launch.termSeconds;

    // The observer, keeping the log lines too: with stderr's, the last lines a crash report shows.
    const std::function<void(const std::string&)> keep = [&](const std::string& line) {
        result.lastLines.push_back(line);
        if (result.lastLines.size() > RunWorkerResult::kKeptLines)
            result.lastLines.erase(result.lastLines.begin());
    };
    struct KeepLogs : TrainerObserver {
        TrainerObserver& inner;
        const std::function<void(const std::string&)>& keep;
        KeepLogs(TrainerObserver& i, const std::function<void(const std::string&)>& k)
            : inner(i)
            , keep(k)
        {
        }
        void onStep(const TrainStep& s) override { inner.onStep(s); }
        void onEval(const TrainEval& e) override { inner.onEval(e); }
        void onInitProgress(const std::string& w, std::int64_t d, std::int64_t t) override
        {
            inner.onInitProgress(w, d, t);
        }
        void onLog(const std::string& level, const std::string& message) override
        {
            keep(level + ": " + message);
            inner.onLog(level, message);
        }
        bool cancelRequested() override { return inner.cancelRequested(); }
    } forward(observer, keep);

    ProcessExit exit;
    bool cancelled = false;
    std::optional<RunState> endState;
    std::string endMessage;
    if (launch.program.empty()) {
        exit.startError = "no `ladder` executable was found to train the run in (it is looked for beside "
                          "this program and on PATH; LADDER_WORKER names it)";
    } else if (!child.start(options, &error)) {
        exit.startError = error;
    } else {
        exit = child.supervise(
            [&](const std::string& line) {
                RunState state = RunState::Failed;
                std::string message;
                if (line.rfind(R"({"event":"end")", 0) == 0
                    && dispatchRunEvent(line, forward, &state, &message)) {
                    endState = state;
                    endMessage = message;
                } else if (!dispatchRunEvent(line, forward, nullptr, nullptr) && !line.empty()) {
                    keep(line); // not an event: stray output
                }
            },
            keep, [&] { return observer.cancelRequested(); },
            [&] {
                cancelled = true;
                child.writeStdin("cancel\n");
            });
    }
    result.exit = exit.describe();

    // The worker records its own end. When it could not (it never started, it was killed, it crashed),
    // the run is still "running" here: end it, with how the process ended and its last lines.
    RunRecord run;
    const auto readRun = [&](std::string* e) { return store.getRun(launch.runId, &run, e); };
    if (!retried(store, readRun, &error)) {
        result.message = error;
        return result;
    }
    if (run.status == RunState::Running) {
        const bool stoppedAfterCancel = cancelled && exit.started && (!exit.signalled || exit.stoppedByUs);
        const RunState state = stoppedAfterCancel ? RunState::Cancelled : RunState::Failed;
        std::string message;
        if (!exit.started)
            message = "the worker process " + exit.describe();
        else if (stoppedAfterCancel)
            message = "cancelled: the worker process did not stop in time and was " + exit.describe();
        else
            message = "the worker process " + std::string(exit.signalled ? "was " : "") + exit.describe()
                + " before the run ended"
                + (result.lastLines.empty() ? "" : "; its last line: " + result.lastLines.back());
        std::string tail;
        for (const auto& l : result.lastLines)
            tail += "\n  " + l;
        if (!tail.empty())
            retried(
                store,
                [&](std::string* e) {
                    return store.addLog(launch.runId, LogLevel::Error, "last lines of the worker:" + tail, e);
                },
                &error);
        if (!retried(
                store, [&](std::string* e) { return store.setStatus(launch.runId, state, message, e); },
                &error)) {
            result.message = message + "; recording it failed: " + error;
            return result;
        }
        observer.onLog(state == RunState::Failed ? "error" : "warning", label + ": " + message);
        retried(store, readRun, &error);
    }
    result.state = run.status;
    result.message = run.errorMessage;
    if (endState && *endState != run.status && result.message.empty())
        result.message = endMessage;
    return result;
}

} // namespace ladder
