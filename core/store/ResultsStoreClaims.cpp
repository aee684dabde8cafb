// ResultsStore: claiming a spec, so that writers sharing a store (two `ladder sweep`s, a sweep and the
// workbench's queue) train each spec once (docs/STORE.md, "Writers sharing a store").
#include <nlohmann/json.hpp>

#include "store/ResultsStoreImpl.h"
#include "store/SpecHash.h"
#include "store/Sqlite.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {

using sqlite::Statement;
using sqlite::Transaction;
using store_detail::kSelectRuns;
using store_detail::ownerAlive;
using store_detail::readRun;

std::optional<RunRecord> ResultsStore::Impl::holderOf(
    const std::string& hash, std::vector<std::int64_t>* dead)
{
    // Finished first (the most recent), then the newest queued or running one.
    Statement s(db,
        std::string(kSelectRuns)
            + " WHERE spec_hash = :hash AND status IN ('finished', 'queued', 'running')"
              " ORDER BY status = 'finished' DESC, id DESC");
    s.bind(":hash", hash);
    std::optional<RunRecord> found;
    while (s.step()) {
        if (s.text("status") == "running"
            && !ownerAlive(s.optInt64("owner_pid"), s.optInt64("owner_start_ticks"))) {
            dead->push_back(s.int64("id"));
            continue;
        }
        if (!found)
            found = readRun(s);
    }
    return found;
}

bool ResultsStore::createRunsUnlessHeld(const std::vector<NewRun>& runs, std::vector<std::int64_t>* runIds,
    std::vector<std::optional<RunRecord>>* holders, std::string* error)
{
    return m_impl->guard("queueing " + std::to_string(runs.size()) + " runs unless held", error, [&] {
        auto& db = m_impl->db;
        Transaction tx(db);
        std::vector<std::string> hashes;
        std::vector<std::optional<RunRecord>> held;
        std::vector<std::int64_t> dead;
        for (const auto& run : runs) {
            if (run.status != RunState::Queued)
                throw Error(std::string("a run queued unless held is queued, not ") + toString(run.status));
            hashes.push_back(
                run.specHash.empty() ? specHash(parseJson(run.specJson, "the run spec")) : run.specHash);
            held.push_back(m_impl->holderOf(hashes.back(), &dead));
        }
        const std::string now = utcNowIso8601();
        for (const auto id : dead)
            m_impl->markRunInterrupted(id, now);
        // Looked up before any is inserted: a batch that repeats a spec queues every entry.
        std::vector<std::int64_t> ids;
        for (std::size_t i = 0; i < runs.size(); ++i) {
            if (held[i]) {
                ids.push_back(-1);
                continue;
            }
            NewRun withHash = runs[i];
            withHash.specHash = hashes[i];
            ids.push_back(m_impl->insertRun(withHash));
        }
        tx.commit();
        if (runIds)
            *runIds = std::move(ids);
        if (holders)
            *holders = std::move(held);
    });
}

bool ResultsStore::claimSpec(
    const NewRun& run, std::int64_t* runId, std::optional<RunRecord>* holder, std::string* error)
{
    const std::string label = run.name.empty() ? std::string("a spec") : "\"" + run.name + "\"";
    return m_impl->guard("claiming " + label, error, [&] {
        if (run.status != RunState::Running)
            throw Error(
                std::string("a claimed spec becomes a running run, not a ") + toString(run.status) + " one");
        const std::string hash
            = run.specHash.empty() ? specHash(parseJson(run.specJson, "the run spec")) : run.specHash;
        auto& db = m_impl->db;
        // BEGIN IMMEDIATE: the look and the insert are one write transaction, so of two writers claiming
        // the same spec at once the second sees the first's run.
        Transaction tx(db);
        std::vector<std::int64_t> dead;
        const std::optional<RunRecord> found = m_impl->holderOf(hash, &dead);
        const std::string now = utcNowIso8601();
        for (const auto id : dead)
            m_impl->markRunInterrupted(id, now);
        std::int64_t id = -1;
        if (!found) {
            NewRun withHash = run;
            withHash.specHash = hash;
            id = m_impl->insertRun(withHash);
        }
        tx.commit();
        if (runId)
            *runId = id;
        if (holder)
            *holder = std::move(found);
    });
}

} // namespace ladder
