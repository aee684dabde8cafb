// ResultsStore: the queue of runs and the device leases of the windows that run it (docs/STORE.md, "The
// queue and device leases").
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <random>

#include <signal.h>
#include <unistd.h>

#include "store/ResultsStoreImpl.h"
#include "store/Sqlite.h"
#include "util/Error.h"

namespace ladder {

using sqlite::Statement;
using sqlite::Transaction;
using store_detail::kSelectRuns;
using store_detail::readRun;
using store_detail::runLabel;

namespace {

std::string isoIn(int seconds)
{
    return utcIso8601(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

void requireLeaseArguments(const std::string& device, const std::string& owner, int ttlSeconds)
{
    if (device.empty())
        throw Error("a lease needs a device name");
    if (owner.empty())
        throw Error("a lease needs an owner name");
    if (ttlSeconds <= 0)
        throw Error("a lease lasts a positive number of seconds, not " + std::to_string(ttlSeconds));
}

} // namespace

// ---- Leases -----------------------------------------------------------------------------------------------

bool store_detail::leaseHeld(sqlite::Connection& db, const std::string& device, const std::string& owner)
{
    Statement s(
        db, "SELECT 1 FROM device_leases WHERE device = :device AND owner = :owner AND expires_at > :now");
    s.bind(":device", device).bind(":owner", owner).bind(":now", utcNowIso8601());
    return s.step();
}

std::string ResultsStore::newLeaseOwner()
{
    std::random_device device;
    std::mt19937_64 generator((static_cast<std::uint64_t>(device()) << 32) ^ device()
        ^ static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    char random[17];
    std::snprintf(random, sizeof random, "%016llx", static_cast<unsigned long long>(generator()));
    return store_detail::hostName() + ":" + std::to_string(getpid()) + ":" + random;
}

namespace {

// Whether a lease owner named by newLeaseOwner() ("<host>:<pid>:<random>") is a process of this host that
// no longer exists: its window was killed, and its lease need not wait for its expiry. False for another
// host's owner, a name of another form and a live pid (a reused pid keeps the lease until it expires).
bool leaseOwnerGone(const std::string& owner)
{
    const auto last = owner.rfind(':');
    if (last == std::string::npos || last == 0)
        return false;
    const auto before = owner.rfind(':', last - 1);
    if (before == std::string::npos || owner.substr(0, before) != store_detail::hostName())
        return false;
    const std::string pidText = owner.substr(before + 1, last - before - 1);
    if (pidText.empty() || pidText.size() > 9 || pidText.find_first_not_of("0123456789") != std::string::npos)
        return false;
    const auto pid = static_cast<pid_t>(std::stol(pidText));
    return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH;
}

} // namespace

bool ResultsStore::acquireDeviceLease(
    const std::string& device, const std::string& owner, int ttlSeconds, bool* acquired, std::string* error)
{
    return m_impl->guard("acquiring the lease on " + device + " for " + owner, error, [&] {
        requireLeaseArguments(device, owner, ttlSeconds);
        auto& db = m_impl->db;
        Transaction tx(db);
        const std::string now = utcNowIso8601();
        {
            // A live lease whose owner process on this host is gone (a window killed with SIGKILL) is free
            // now, not when it expires.
            Statement held(
                db, "SELECT owner FROM device_leases WHERE device = :device AND expires_at > :now");
            held.bind(":device", device).bind(":now", now);
            std::string holder;
            if (held.step())
                holder = held.text("owner");
            held.reset();
            if (!holder.empty() && holder != owner && leaseOwnerGone(holder)) {
                Statement drop(db, "DELETE FROM device_leases WHERE device = :device AND owner = :owner");
                drop.bind(":device", device).bind(":owner", holder).run();
            }
        }
        // Free, expired or already ours: take it (keeping acquired_at when it stays ours).
        Statement s(db, R"sql(INSERT INTO device_leases (device, owner, acquired_at, renewed_at, expires_at)
            VALUES (:device, :owner, :now, :now, :expires)
            ON CONFLICT (device) DO UPDATE SET
                acquired_at = CASE WHEN owner = excluded.owner THEN acquired_at ELSE excluded.acquired_at END,
                owner = excluded.owner, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
            WHERE owner = excluded.owner OR expires_at <= :now)sql");
        s.bind(":device", device)
            .bind(":owner", owner)
            .bind(":now", now)
            .bind(":expires", isoIn(ttlSeconds))
            .run();
        const bool got = db.changes() > 0;
        tx.commit();
        if (acquired)
            *acquired = got;
    });
}

bool ResultsStore::renewDeviceLease(
    const std::string& device, const std::string& owner, int ttlSeconds, bool* renewed, std::string* error)
{
    return m_impl->guard("renewing the lease on " + device + " for " + owner, error, [&] {
        requireLeaseArguments(device, owner, ttlSeconds);
        auto& db = m_impl->db;
        Transaction tx(db);
        // Still ours (expired or not: an expired lease nobody took is still this owner's row).
        Statement s(db,
            "UPDATE device_leases SET renewed_at = :now, expires_at = :expires "
            "WHERE device = :device AND owner = :owner");
        s.bind(":now", utcNowIso8601())
            .bind(":expires", isoIn(ttlSeconds))
            .bind(":device", device)
            .bind(":owner", owner);
        s.run();
        const bool kept = db.changes() > 0;
        tx.commit();
        if (renewed)
            *renewed = kept;
    });
}

bool ResultsStore::releaseDeviceLease(const std::string& device, const std::string& owner, std::string* error)
{
    return m_impl->guard("releasing the lease on " + device + " for " + owner, error, [&] {
        auto& db = m_impl->db;
        Transaction tx(db);
        Statement s(db, "DELETE FROM device_leases WHERE device = :device AND owner = :owner");
        s.bind(":device", device).bind(":owner", owner).run();
        tx.commit();
    });
}

bool ResultsStore::getDeviceLease(
    const std::string& device, std::optional<DeviceLease>* lease, std::string* error)
{
    return m_impl->guard("reading the lease on " + device, error, [&] {
        Statement s(m_impl->db, "SELECT * FROM device_leases WHERE device = :device AND expires_at > :now");
        s.bind(":device", device).bind(":now", utcNowIso8601());
        std::optional<DeviceLease> found;
        if (s.step()) {
            DeviceLease l;
            l.device = s.text("device");
            l.owner = s.text("owner");
            l.acquiredAt = s.text("acquired_at");
            l.renewedAt = s.text("renewed_at");
            l.expiresAt = s.text("expires_at");
            found = std::move(l);
        }
        if (lease)
            *lease = std::move(found);
    });
}

// ---- Queue ------------------------------------------------------------------------------------------------

std::optional<RunRecord> ResultsStore::Impl::nextQueued(const std::string& device)
{
    Statement s(db,
        std::string(kSelectRuns) + " WHERE status = 'queued'"
            + (device.empty() ? "" : " AND device = :device") + " ORDER BY queue_position, id LIMIT 1");
    if (!device.empty())
        s.bind(":device", device);
    if (!s.step())
        return std::nullopt;
    return readRun(s);
}

std::vector<std::int64_t> ResultsStore::Impl::queueOrder()
{
    Statement s(db, "SELECT id FROM runs WHERE status = 'queued' ORDER BY queue_position, id");
    std::vector<std::int64_t> ids;
    while (s.step())
        ids.push_back(s.int64("id"));
    return ids;
}

void ResultsStore::Impl::applyQueueOrder(const std::vector<std::int64_t>& ids)
{
    Statement s(db, "UPDATE runs SET queue_position = :position WHERE id = :id AND status = 'queued'");
    std::int64_t position = 1;
    for (const auto id : ids) {
        s.bind(":position", position++).bind(":id", id).run();
        s.reset();
    }
}

void ResultsStore::Impl::requireQueued(std::int64_t runId)
{
    const RunState status = requireRun(runId);
    if (status != RunState::Queued)
        throw Error(runLabel(runId) + " is " + toString(status) + ", not queued");
}

bool ResultsStore::nextQueued(const std::string& device, std::optional<RunRecord>* run, std::string* error)
{
    return m_impl->guard("reading the queue", error, [&] {
        auto next = m_impl->nextQueued(device);
        if (run)
            *run = std::move(next);
    });
}

bool ResultsStore::claimNextQueued(
    const std::string& device, std::optional<RunRecord>* run, std::string* error)
{
    return m_impl->guard(
        "starting the next queued run" + (device.empty() ? std::string() : " on " + device), error, [&] {
            Transaction tx(m_impl->db);
            std::optional<RunRecord> next = m_impl->nextQueued(device);
            if (next) {
                m_impl->setStatus(next->id, RunState::Running, {});
                next = m_impl->getRun(next->id);
            }
            tx.commit();
            if (run)
                *run = std::move(next);
        });
}

bool ResultsStore::claimNextQueuedUnderLease(const std::string& device, const std::string& leaseOwner,
    std::optional<RunRecord>* run, bool* leaseHeld, std::string* error)
{
    return m_impl->guard(
        "starting the next queued run on " + device + " under the lease of " + leaseOwner, error, [&] {
            Transaction tx(m_impl->db);
            const bool held = store_detail::leaseHeld(m_impl->db, device, leaseOwner);
            std::optional<RunRecord> next;
            if (held) {
                next = m_impl->nextQueued(device);
                if (next) {
                    m_impl->setStatus(next->id, RunState::Running, {});
                    next = m_impl->getRun(next->id);
                }
            }
            tx.commit();
            if (leaseHeld)
                *leaseHeld = held;
            if (run)
                *run = std::move(next);
        });
}

bool ResultsStore::claimQueuedUnderLease(std::int64_t runId, const std::string& leaseDevice,
    const std::string& leaseOwner, std::optional<RunRecord>* run, bool* leaseHeld, std::string* error)
{
    return m_impl->guard(
        "starting queued " + runLabel(runId) + " on " + leaseDevice + " under the lease of " + leaseOwner,
        error, [&] {
            Transaction tx(m_impl->db);
            const bool held = store_detail::leaseHeld(m_impl->db, leaseDevice, leaseOwner);
            std::optional<RunRecord> claimed;
            if (held) {
                Statement s(m_impl->db, "SELECT status FROM runs WHERE id = :id");
                s.bind(":id", runId);
                if (s.step() && s.text("status") == "queued") {
                    m_impl->setStatus(runId, RunState::Running, {});
                    claimed = m_impl->getRun(runId);
                }
            }
            tx.commit();
            if (leaseHeld)
                *leaseHeld = held;
            if (run)
                *run = std::move(claimed);
        });
}

bool ResultsStore::setQueueOrder(const std::vector<std::int64_t>& runIds, std::string* error)
{
    return m_impl->guard("reordering the queue", error, [&] {
        Transaction tx(m_impl->db);
        std::vector<std::int64_t> order;
        for (const auto id : runIds) {
            m_impl->requireQueued(id);
            if (std::find(order.begin(), order.end(), id) != order.end())
                throw Error(runLabel(id) + " is listed twice");
            order.push_back(id);
        }
        for (const auto id : m_impl->queueOrder())
            if (std::find(order.begin(), order.end(), id) == order.end())
                order.push_back(id);
        m_impl->applyQueueOrder(order);
        tx.commit();
    });
}

bool ResultsStore::moveQueuedRun(std::int64_t runId, int offset, std::string* error)
{
    return m_impl->guard("moving " + runLabel(runId) + " in the queue", error, [&] {
        Transaction tx(m_impl->db);
        m_impl->requireQueued(runId);
        std::vector<std::int64_t> order = m_impl->queueOrder();
        const auto it = std::find(order.begin(), order.end(), runId);
        const auto from = static_cast<std::int64_t>(it - order.begin());
        const auto last = static_cast<std::int64_t>(order.size()) - 1;
        const std::int64_t to = std::clamp<std::int64_t>(from + offset, 0, last);
        order.erase(it);
        order.insert(order.begin() + to, runId);
        m_impl->applyQueueOrder(order);
        tx.commit();
    });
}

bool ResultsStore::removeQueuedRun(std::int64_t runId, std::string* error)
{
    return m_impl->guard("removing " + runLabel(runId) + " from the queue", error, [&] {
        Transaction tx(m_impl->db);
        m_impl->requireQueued(runId);
        Statement s(m_impl->db, "DELETE FROM runs WHERE id = :id AND status = 'queued'");
        s.bind(":id", runId).run();
        tx.commit();
    });
}

} // namespace ladder
