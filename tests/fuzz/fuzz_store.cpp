// Any file opened as a results store, read-only (the workbench's File > Open and `ladder runs`): SQLite's
// header and pages, the schema version, the rows a stranger's store holds.
#include <vector>

#include "FuzzSupport.h"
#include "store/ResultsStore.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const std::string path = ladder::fuzz::scratchPath("results.sqlite");
    ladder::fuzz::writeBytes(path, data, size);
    ladder::ResultsStore store;
    std::string error;
    if (!store.open(path, ladder::ResultsStore::OpenMode::ReadOnly, &error))
        return 0;
    std::vector<ladder::RunRecord> runs;
    if (store.listRuns({}, &runs, &error))
        for (const auto& run : runs) {
            std::vector<ladder::Evaluation> evaluations;
            store.getEvaluations(run.id, &evaluations, &error);
        }
    return 0;
}
