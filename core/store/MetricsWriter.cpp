#include "store/MetricsWriter.h"

#include "store/ResultsStore.h"

namespace ladder {

MetricsWriter::MetricsWriter(ResultsStore& store, std::int64_t runId, MetricsWriterOptions options)
    : m_store(store)
    , m_runId(runId)
    , m_options(options)
{
    m_pending.reserve(m_options.maxPendingPoints);
}

MetricsWriter::~MetricsWriter()
{
    flush(nullptr);
}

bool MetricsWriter::add(MetricPoint point, std::string* error)
{
    if (point.time.empty())
        point.time = utcNowIso8601();
    const auto now = std::chrono::steady_clock::now();
    if (m_pending.empty())
        m_oldestPending = now;
    m_pending.push_back(std::move(point));
    const bool full = m_pending.size() >= m_options.maxPendingPoints;
    const bool old = m_options.maxPendingSeconds > 0
        && std::chrono::duration<double>(now - m_oldestPending).count() >= m_options.maxPendingSeconds;
    return (full || old) ? flush(error) : true;
}

bool MetricsWriter::flush(std::string* error)
{
    if (m_pending.empty())
        return true;
    if (!m_store.appendMetrics(m_runId, m_pending, error))
        return false;
    m_written += static_cast<std::int64_t>(m_pending.size());
    m_pending.clear();
    return true;
}

std::size_t MetricsWriter::discardPending()
{
    const std::size_t count = m_pending.size();
    m_pending.clear();
    return count;
}

} // namespace ladder
