#pragma once

// Helpers of the store safety tests test_store_safety, test_store_open_modes and test_store_leases: a fresh
// folder, a sample run (with a seed of its own), another writer holding the write lock, and a substring test.
// Header-only: each of those test executables includes it.

#include <string>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "TestSupport.h"
#include "store/ResultsStore.h"

namespace ladder::test::store_safety {

inline std::string freshDir()
{
    return ladder::test::makeTempDir();
}

inline NewRun sampleRun(const std::string& name = "lst-r8", RunState status = RunState::Queued,
    const std::string& device = "cpu", int seed = 1)
{
    NewRun r;
    r.name = name;
    r.specJson = nlohmann::json {
        { "method", { { "name", "lst" }, { "r", 8 } } }, { "task", "rte" }, { "seed", seed }, { "name", name }
    }.dump();
    r.method = "lst";
    r.methodOptionsJson = R"({"r":8})";
    r.backbone = "demo";
    r.task = "rte";
    r.seed = seed;
    r.device = device;
    r.status = status;
    return r;
}

// Another writer: holds the store's write lock (BEGIN IMMEDIATE) until release().
class WriteLock {
public:
    explicit WriteLock(const std::string& path)
    {
        sqlite3_open_v2(path.c_str(), &m_db, SQLITE_OPEN_READWRITE, nullptr);
        m_held = sqlite3_exec(m_db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    ~WriteLock()
    {
        release();
        sqlite3_close(m_db);
    }
    bool held() const { return m_held; }
    void release()
    {
        if (m_held)
            sqlite3_exec(m_db, "COMMIT", nullptr, nullptr, nullptr);
        m_held = false;
    }

private:
    sqlite3* m_db = nullptr;
    bool m_held = false;
};

inline bool contains(const std::string& text, const std::string& part)
{
    return text.find(part) != std::string::npos;
}

} // namespace ladder::test::store_safety
