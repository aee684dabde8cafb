#include "DistributedCommands.h"

#include <cstdlib>
#include <iostream>
#include <string>

#include <unistd.h>

#include "Commands.h"
#include "Interrupt.h"
#include "train/Trainer.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

// What a rank other than 0 shows: its warnings and errors, named by rank (rank 0 shows the progress).
class FollowerObserver : public TrainerObserver {
public:
    FollowerObserver(int rank, std::function<bool()> cancel)
        : m_rank(rank)
        , m_cancel(std::move(cancel))
    {
    }
    void onLog(const std::string& level, const std::string& message) override
    {
        if (level != "warning" && level != "error")
            return;
        // One write(2) per line: the ranks share the launcher's stderr, and a line written piecewise (as
        // std::cerr's unbuffered << does) interleaved with rank 0's progress ("[rank \n1] error: ...").
        const std::string line = "[rank " + std::to_string(m_rank) + "] " + level + ": " + message + "\n";
        std::size_t done = 0;
        while (done < line.size()) {
            const auto n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
            if (n <= 0)
                break;
            done += static_cast<std::size_t>(n);
        }
    }
    bool cancelRequested() override { return m_cancel ? m_cancel() : interrupted(); }

private:
    int m_rank;
    std::function<bool()> m_cancel;
};

} // namespace

std::chrono::milliseconds collectiveTimeout(double flagSeconds)
{
    if (flagSeconds > 0)
        return std::chrono::milliseconds(static_cast<long long>(flagSeconds * 1000.0));
    return collectiveTimeoutFrom([](const char* name) { return std::getenv(name); },
        std::chrono::duration_cast<std::chrono::milliseconds>(DistributedGroup::kDefaultTimeout));
}

std::shared_ptr<DistributedGroup> joinGroupFor(
    const RunSpec& spec, const DistributedEnv& env, std::chrono::milliseconds timeout)
{
    DistributedGroup::Options options;
    options.deviceType = c10::Device(spec.device).is_cuda() ? "cuda" : "cpu";
    options.timeout = timeout;
    auto group = DistributedGroup::join(env, options);
    if (env.rank == 0)
        std::cerr << "ladder: process group: " << group->describe() << std::endl;
    return group;
}

int trainFollowerRank(const RunSpec& spec, const std::shared_ptr<DistributedGroup>& group,
    std::function<bool()> cancelRequested)
{
    Trainer trainer(spec);
    trainer.setDistributed(group);
    FollowerObserver observer(group->rank(), std::move(cancelRequested));
    const auto summary = trainer.run(observer);
    group->shutdown();
    return summary.status == RunOutcome::Finished
        ? kExitDone
        : (summary.status == RunOutcome::Cancelled ? kExitCancelled : kExitError);
}

} // namespace ladder::cli
