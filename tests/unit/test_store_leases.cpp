// The results store's device leases (one window per device, expiry, a race, claims under a lease) and batches
// of runs: enqueued in one transaction, all or nothing, and the finished runs of a batch of spec hashes.
#include <QtTest>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "StoreSafetyTestHelpers.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"

using namespace ladder;
using ladder::test::store_safety::contains;
using ladder::test::store_safety::freshDir;
using ladder::test::store_safety::sampleRun;
using ladder::test::store_safety::WriteLock;

class TestStoreLeases : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void deviceLeases();
    void deviceLeaseRace();
    void leaseOfADeadOwnerIsFree();
    void claimUnderLease();
    void claimChosenRunUnderLease();
    void createRunsIsAllOrNothing();
    void findFinishedRunsForABatch();
};

void TestStoreLeases::deviceLeases()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore first, second;
    QVERIFY(first.open(path));
    QVERIFY(second.open(path));
    const std::string a = ResultsStore::newLeaseOwner();
    const std::string b = ResultsStore::newLeaseOwner();
    QVERIFY(a != b);
    QVERIFY2(contains(a, ":" + std::to_string(getpid()) + ":"), a.c_str());
    std::string error;
    bool ok = false;

    QVERIFY2(first.acquireDeviceLease("cuda:0", a, 60, &ok, &error), error.c_str());
    QVERIFY(ok);
    QVERIFY(second.acquireDeviceLease("cuda:0", b, 60, &ok));
    QVERIFY(!ok); // one window per device
    QVERIFY(second.acquireDeviceLease("cpu", b, 60, &ok));
    QVERIFY(ok); // another device is free
    std::optional<DeviceLease> lease;
    QVERIFY(second.getDeviceLease("cuda:0", &lease));
    QVERIFY(lease && lease->owner == a && lease->expiresAt > utcNowIso8601());
    const std::string acquiredAt = lease->acquiredAt;
    QVERIFY(first.acquireDeviceLease("cuda:0", a, 60, &ok));
    QVERIFY(ok); // asking again renews
    QVERIFY(first.getDeviceLease("cuda:0", &lease));
    QCOMPARE(lease->acquiredAt, acquiredAt);
    QVERIFY(first.renewDeviceLease("cuda:0", a, 60, &ok));
    QVERIFY(ok);
    QVERIFY(second.renewDeviceLease("cuda:0", b, 60, &ok));
    QVERIFY(!ok); // not b's
    QVERIFY(second.releaseDeviceLease("cuda:0", b)); // not b's: a no-op
    QVERIFY(second.getDeviceLease("cuda:0", &lease));
    QVERIFY(lease && lease->owner == a);
    QVERIFY(first.releaseDeviceLease("cuda:0", a));
    QVERIFY(second.getDeviceLease("cuda:0", &lease));
    QVERIFY(!lease);
    QVERIFY(first.renewDeviceLease("cuda:0", a, 60, &ok));
    QVERIFY(!ok); // released: lost
    QVERIFY(second.acquireDeviceLease("cuda:0", b, 1, &ok));
    QVERIFY(ok);

    // A lease that is not renewed expires: then another owner takes it, and the old one's renewal fails.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    QVERIFY(first.getDeviceLease("cuda:0", &lease));
    QVERIFY(!lease);
    QVERIFY(first.acquireDeviceLease("cuda:0", a, 60, &ok));
    QVERIFY(ok);
    QVERIFY(second.renewDeviceLease("cuda:0", b, 60, &ok));
    QVERIFY(!ok);
    // An expired lease that nobody took is renewed by its owner.
    QVERIFY(first.acquireDeviceLease("cuda:2", a, 1, &ok));
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    QVERIFY(first.renewDeviceLease("cuda:2", a, 60, &ok));
    QVERIFY(ok);

    QVERIFY(!first.acquireDeviceLease("", a, 60, &ok, &error));
    QVERIFY2(contains(error, "a lease needs a device name"), error.c_str());
    QVERIFY(!first.acquireDeviceLease("cuda:0", a, 0, &ok, &error));
    QVERIFY2(contains(error, "positive number of seconds"), error.c_str());
}

// Windows asking for the same device at once: exactly one gets it.
// A window killed with SIGKILL leaves its lease unexpired: the next window takes it at once when the
// owner's process (named in the owner, "<host>:<pid>:<random>") is gone from this host, and never from a
// live process or another host.
void TestStoreLeases::leaseOfADeadOwnerIsFree()
{
    const std::string path = freshDir() + "/results.sqlite";
    // The child takes the lease for an hour and dies without releasing it.
    const pid_t child = ::fork();
    if (child == 0) {
        ResultsStore store;
        bool got = false;
        const bool ok
            = store.open(path) && store.acquireDeviceLease("cpu", ResultsStore::newLeaseOwner(), 3600, &got);
        ::_exit(ok && got ? 0 : 1);
    }
    QVERIFY(child > 0);
    int status = 0;
    QCOMPARE(::waitpid(child, &status, 0), child);
    QVERIFY(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    ResultsStore store;
    QVERIFY(store.open(path));
    std::optional<DeviceLease> lease;
    QVERIFY(store.getDeviceLease("cpu", &lease));
    QVERIFY(lease.has_value());
    QVERIFY2(contains(lease->owner, ":" + std::to_string(child) + ":"), lease->owner.c_str());
    const auto next = ResultsStore::newLeaseOwner();
    bool acquired = false;
    QVERIFY(store.acquireDeviceLease("cpu", next, 60, &acquired));
    QVERIFY2(acquired, "the dead owner's lease was not taken over");
    QVERIFY(store.getDeviceLease("cpu", &lease));
    QCOMPARE(QString::fromStdString(lease->owner), QString::fromStdString(next));

    // A live owner (this process, another name) and another host's owner keep theirs.
    QVERIFY(store.acquireDeviceLease("cpu", ResultsStore::newLeaseOwner(), 60, &acquired));
    QVERIFY(!acquired);
    QVERIFY(store.acquireDeviceLease("cuda:0", "elsewhere.example:1:0123456789abcdef", 60, &acquired));
    QVERIFY(acquired);
    QVERIFY(store.acquireDeviceLease("cuda:0", ResultsStore::newLeaseOwner(), 60, &acquired));
    QVERIFY(!acquired);
}

void TestStoreLeases::deviceLeaseRace()
{
    const std::string path = freshDir() + "/results.sqlite";
    {
        ResultsStore setup;
        QVERIFY(setup.open(path));
    }
    constexpr int kThreads = 6;
    std::atomic<int> winners { 0 }, failures { 0 }, ready { 0 };
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&] {
            ResultsStore store;
            if (!store.open(path)) {
                ++failures;
                return;
            }
            ++ready;
            while (ready.load() < kThreads)
                std::this_thread::yield();
            bool acquired = false;
            if (!store.acquireDeviceLease("cuda:0", ResultsStore::newLeaseOwner(), 60, &acquired))
                ++failures;
            else if (acquired)
                ++winners;
        });
    }
    for (auto& t : threads)
        t.join();
    QCOMPARE(failures.load(), 0);
    QCOMPARE(winners.load(), 1);
}

void TestStoreLeases::claimUnderLease()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    QVERIFY(store.open(path));
    std::int64_t first = 0, second = 0;
    QVERIFY(store.createRun(sampleRun("q1", RunState::Queued, "cuda:0"), &first));
    QVERIFY(store.createRun(sampleRun("q2", RunState::Queued, "cuda:0"), &second));
    const std::string mine = ResultsStore::newLeaseOwner();
    const std::string theirs = ResultsStore::newLeaseOwner();
    std::optional<RunRecord> run;
    bool held = true;
    std::string error;
    // Without the lease nothing is claimed.
    QVERIFY2(store.claimNextQueuedUnderLease("cuda:0", mine, &run, &held, &error), error.c_str());
    QVERIFY(!held && !run);
    bool ok = false;
    QVERIFY(store.acquireDeviceLease("cuda:0", theirs, 60, &ok));
    QVERIFY(store.claimNextQueuedUnderLease("cuda:0", mine, &run, &held));
    QVERIFY(!held && !run);
    QVERIFY(store.claimNextQueuedUnderLease("cuda:0", theirs, &run, &held));
    QVERIFY(held && run && run->id == first && run->status == RunState::Running);
    // claimNextQueued works as before, with no lease.
    QVERIFY(store.claimNextQueued("cuda:0", &run));
    QVERIFY(run && run->id == second);
    QVERIFY(store.claimNextQueuedUnderLease("cuda:0", theirs, &run, &held));
    QVERIFY(held && !run); // nothing left
}

// Several runs per device (issue 19): the window's placement picks a run, not the first of the device,
// and claims it under its lease; a run no longer queued is not claimed, and neither is one without the
// lease. The lease holder may claim several runs of one device.
void TestStoreLeases::claimChosenRunUnderLease()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    QVERIFY(store.open(path));
    std::int64_t first = 0, second = 0, third = 0;
    QVERIFY(store.createRun(sampleRun("q1", RunState::Queued, "cpu"), &first));
    QVERIFY(store.createRun(sampleRun("q2", RunState::Queued, "cpu"), &second));
    QVERIFY(store.createRun(sampleRun("q3", RunState::Queued, "cpu"), &third));
    const std::string mine = ResultsStore::newLeaseOwner();
    const std::string theirs = ResultsStore::newLeaseOwner();
    std::optional<RunRecord> run;
    bool held = true;
    std::string error;
    QVERIFY2(store.claimQueuedUnderLease(second, "cpu", mine, &run, &held, &error), error.c_str());
    QVERIFY(!held && !run);
    bool ok = false;
    QVERIFY(store.acquireDeviceLease("cpu", mine, 60, &ok) && ok);
    QVERIFY(store.claimQueuedUnderLease(second, "cpu", theirs, &run, &held));
    QVERIFY(!held && !run); // another window's name: not its lease
    QVERIFY(store.claimQueuedUnderLease(second, "cpu", mine, &run, &held));
    QVERIFY(held && run && run->id == second && run->status == RunState::Running);
    QVERIFY(store.claimQueuedUnderLease(first, "cpu", mine, &run, &held)); // a second run on the device
    QVERIFY(held && run && run->id == first);
    QVERIFY(store.claimQueuedUnderLease(second, "cpu", mine, &run, &held));
    QVERIFY(held && !run); // running already
    QVERIFY(store.setStatus(third, RunState::Cancelled, "cancelled before it started"));
    QVERIFY(store.claimQueuedUnderLease(third, "cpu", mine, &run, &held));
    QVERIFY(held && !run);
    QVERIFY(store.claimQueuedUnderLease(999, "cpu", mine, &run, &held)); // no such run: nothing to claim
    QVERIFY(!run);
}

void TestStoreLeases::createRunsIsAllOrNothing()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    QVERIFY(store.open(path));
    std::int64_t before = 0;
    QVERIFY(store.createRun(sampleRun("already queued"), &before));
    std::vector<NewRun> batch = { sampleRun("s1", RunState::Queued, "cpu", 1),
        sampleRun("s2", RunState::Queued, "cpu", 2), sampleRun("s3", RunState::Queued, "cuda:0", 3) };
    std::vector<std::int64_t> ids;
    std::string error;
    QVERIFY2(store.createRuns(batch, &ids, &error), error.c_str());
    QCOMPARE(ids.size(), std::size_t(3));
    QVERIFY(ids[0] > before && ids[1] == ids[0] + 1 && ids[2] == ids[1] + 1);
    std::vector<RunRecord> queue;
    RunFilter filter;
    filter.statuses = { RunState::Queued };
    filter.order = RunFilter::Order::QueuePosition;
    QVERIFY(store.listRuns(filter, &queue));
    QCOMPARE(queue.size(), std::size_t(4));
    QCOMPARE(queue[0].id, before);
    for (std::size_t i = 0; i < 3; ++i)
        QCOMPARE(queue[i + 1].id, ids[i]);

    // One bad run in the middle: nothing of the batch is stored.
    batch[1].specJson = "{not json";
    ids = { 99 };
    QVERIFY(!store.createRuns(batch, &ids, &error));
    QVERIFY2(contains(error, "run 2 of 3 (\"s2\")"), error.c_str());
    QVERIFY2(contains(error, "not valid JSON"), error.c_str());
    QCOMPARE(ids, std::vector<std::int64_t> { 99 }); // untouched on failure
    QCOMPARE(test::rawQuery(path, "SELECT count(*) FROM runs"), std::string("4"));
    // While another writer holds the store, the batch waits for it and then goes in whole (or not at all).
    batch[1] = sampleRun("s2 again");
    QVERIFY(store.setBusyTimeout(50));
    {
        WriteLock lock(path);
        QVERIFY(!store.createRuns(batch, &ids, &error));
        QVERIFY(store.lastErrorWasBusy());
    }
    QCOMPARE(test::rawQuery(path, "SELECT count(*) FROM runs"), std::string("4"));
    QVERIFY(store.createRuns(batch, &ids));
    QCOMPARE(test::rawQuery(path, "SELECT count(*) FROM runs"), std::string("7"));
    QVERIFY(store.createRuns({}, &ids));
    QVERIFY(ids.empty());
}

void TestStoreLeases::findFinishedRunsForABatch()
{
    const std::string path = freshDir() + "/results.sqlite";
    ResultsStore store;
    QVERIFY(store.open(path));
    std::vector<NewRun> runs = { sampleRun("a", RunState::Running, "cpu", 1),
        sampleRun("b", RunState::Running, "cpu", 2), sampleRun("a again", RunState::Running, "cpu", 1) };
    runs[0].specHash = runs[2].specHash = "aaaaaaaaaaaaaaaa";
    runs[1].specHash = "bbbbbbbbbbbbbbbb";
    std::vector<std::int64_t> ids;
    QVERIFY(store.createRuns(runs, &ids));
    QVERIFY(store.finishRun(ids[0], RunState::Finished, {}));
    QVERIFY(store.finishRun(ids[1], RunState::Failed, {}, "diverged"));
    QVERIFY(store.finishRun(ids[2], RunState::Finished, {}));
    std::vector<std::optional<RunRecord>> found;
    std::string error;
    QVERIFY2(store.findFinishedRuns(
                 { "bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa", "cccccccccccccccc" }, &found, &error),
        error.c_str());
    QCOMPARE(found.size(), std::size_t(3));
    QVERIFY(!found[0]); // failed runs do not count
    QVERIFY(found[1] && found[1]->id == ids[2]); // the most recent finished one
    QVERIFY(!found[2]);
    // The same answer as findFinishedRun(), one hash at a time.
    std::optional<RunRecord> one;
    QVERIFY(store.findFinishedRun("aaaaaaaaaaaaaaaa", &one));
    QCOMPARE(one->id, found[1]->id);
    QVERIFY(store.findFinishedRuns({}, &found));
    QVERIFY(found.empty());
}

QTEST_GUILESS_MAIN(TestStoreLeases)
#include "test_store_leases.moc"
