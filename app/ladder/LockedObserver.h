#pragma once

#include <memory>
#include <mutex>

#include "train/Trainer.h"

namespace ladder::cli {

// Serialises an observer's calls: the runs of a parallel sweep report from several threads.
class LockedObserver : public TrainerObserver {
public:
    LockedObserver(std::unique_ptr<TrainerObserver> inner, std::mutex& mutex)
        : m_inner(std::move(inner))
        , m_mutex(mutex)
    {
    }
    void onStep(const TrainStep& s) override
    {
        std::lock_guard lock(m_mutex);
        m_inner->onStep(s);
    }
    void onEval(const TrainEval& e) override
    {
        std::lock_guard lock(m_mutex);
        m_inner->onEval(e);
    }
    void onLog(const std::string& level, const std::string& message) override
    {
        std::lock_guard lock(m_mutex);
        m_inner->onLog(level, message);
    }
    void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) override
    {
        std::lock_guard lock(m_mutex);
        m_inner->onInitProgress(what, done, total);
    }
    bool cancelRequested() override { return m_inner->cancelRequested(); }

private:
    std::unique_ptr<TrainerObserver> m_inner;
    std::mutex& m_mutex;
};

} // namespace ladder::cli
