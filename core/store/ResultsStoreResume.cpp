// ResultsStore: resuming a run (docs/STORE.md, "Resume"): the one way back from a final state, and the
// rewind of what a resumed run records again.
#include <unistd.h>

#include "store/ResultsStoreImpl.h"
#include "store/Sqlite.h"
#include "util/Error.h"

namespace ladder {

using sqlite::Statement;
using sqlite::Transaction;
using store_detail::runLabel;

bool ResultsStore::resumeRun(std::int64_t runId, RunState to, std::string* error)
{
    return m_impl->guard("resuming " + runLabel(runId), error, [&] {
        if (to != RunState::Running && to != RunState::Queued)
            throw Error(std::string("a resumed run becomes running or queued, not ") + toString(to));
        Transaction tx(m_impl->db);
        const RunState current = m_impl->requireRun(runId);
        if (current != RunState::Interrupted && current != RunState::Failed && current != RunState::Cancelled)
            throw Error(runLabel(runId) + " is " + toString(current)
                + "; only an interrupted, failed or cancelled run can be resumed");
        if (to == RunState::Running) {
            Statement s(m_impl->db,
                "UPDATE runs SET status = 'running', queue_position = NULL, finished_at = NULL, "
                "error_message = NULL, owner_pid = :pid, owner_start_ticks = :ticks WHERE id = :id");
            s.bind(":pid", static_cast<std::int64_t>(getpid()))
                .bind(":ticks", store_detail::ownStartTicks())
                .bind(":id", runId)
                .run();
        } else {
            Statement s(m_impl->db,
                "UPDATE runs SET status = 'queued', finished_at = NULL, error_message = NULL, "
                "owner_pid = NULL, owner_start_ticks = NULL, queue_position = "
                "(SELECT COALESCE(MAX(queue_position), 0) + 1 FROM runs WHERE status = 'queued') "
                "WHERE id = :id");
            s.bind(":id", runId).run();
        }
        tx.commit();
    });
}

bool ResultsStore::rewindRun(std::int64_t runId, std::int64_t step, std::string* error)
{
    return m_impl->guard("rewinding " + runLabel(runId) + " to step " + std::to_string(step), error, [&] {
        Transaction tx(m_impl->db);
        m_impl->requireRun(runId);
        Statement metrics(m_impl->db, "DELETE FROM metrics WHERE run_id = :id AND step > :step");
        metrics.bind(":id", runId).bind(":step", step).run();
        Statement evaluations(
            m_impl->db, "DELETE FROM evaluations WHERE run_id = :id AND (step > :step OR split = 'test')");
        evaluations.bind(":id", runId).bind(":step", step).run();
        Statement progress(m_impl->db, "UPDATE runs SET step = :step WHERE id = :id");
        progress.bind(":step", step).bind(":id", runId).run();
        tx.commit();
    });
}

} // namespace ladder
