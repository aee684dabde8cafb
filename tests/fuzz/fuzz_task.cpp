// A generic task file: the first byte picks JSONL, CSV or TSV, the rest is the file. Read as records, then
// loaded as a classification task over the columns text and label (splits carved out of it).
#include "FuzzSupport.h"
#include "data/GenericTask.h"
#include "util/Error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0)
        return 0;
    static const char* formats[] = { "jsonl", "csv", "tsv" };
    const std::string format = formats[data[0] % 3];
    const std::string path = ladder::fuzz::scratchPath("task." + format);
    ladder::fuzz::writeBytes(path, data + 1, size - 1);
    try {
        ladder::readGenericRecords(path, format);
        ladder::GenericTaskOptions options;
        options.path = path;
        options.format = format;
        options.textColumns = { "text" };
        options.labelColumn = "label";
        ladder::loadGenericTask(options);
    } catch (const ladder::Error&) {
    }
    return 0;
}
