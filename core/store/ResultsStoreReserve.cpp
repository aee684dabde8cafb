// ResultsStore: the space a run keeps back for its last writes when the disk fills (docs/STORE.md,
// "A full disk").
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <unistd.h>

#include "store/ResultsStoreImpl.h"
#include "store/Sqlite.h"
#include "util/Error.h"

namespace ladder {

namespace fs = std::filesystem;
using sqlite::Statement;
using store_detail::runLabel;
using store_detail::str;

namespace {

constexpr const char* kReserveFolder = "reserve";

std::string reserveName(std::int64_t runId)
{
    return "run-" + str(runId) + ".reserve";
}

} // namespace

std::string ResultsStore::reservePath(std::int64_t runId) const
{
    return m_impl->filesDir.empty()
        ? std::string()
        : (fs::path(m_impl->filesDir) / kReserveFolder / reserveName(runId)).string();
}

bool ResultsStore::reserveSpace(std::int64_t runId, std::int64_t bytes, std::string* error)
{
    return m_impl->guard("keeping " + str(bytes) + " bytes back for " + runLabel(runId), error, [&] {
        const std::string path = reservePath(runId);
        std::error_code ec;
        fs::create_directories(fs::path(path).parent_path(), ec);
        if (ec)
            throw Error("cannot create the folder of " + path + ": " + ec.message());
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            throw Error("cannot create " + path + ": " + std::strerror(errno));
        // Allocated, not sparse: the blocks are the room the run's last writes get back.
        const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
        ::close(fd);
        if (rc != 0) {
            fs::remove(path, ec);
            throw Error("cannot allocate " + path + ": " + std::strerror(rc));
        }
    });
}

bool ResultsStore::releaseReserve(std::int64_t runId)
{
    const std::string path = reservePath(runId);
    std::error_code ec;
    return !path.empty() && fs::remove(path, ec);
}

void ResultsStore::Impl::removeStaleReserves()
{
    const fs::path folder = fs::path(filesDir) / kReserveFolder;
    std::error_code ec;
    if (filesDir.empty() || !fs::is_directory(folder, ec))
        return;
    Statement s(db, "SELECT status FROM runs WHERE id = :id");
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind("run-", 0) != 0 || name.size() <= 12 || name.substr(name.size() - 8) != ".reserve")
            continue;
        std::int64_t id = 0;
        try {
            id = std::stoll(name.substr(4, name.size() - 12));
        } catch (const std::exception&) {
            continue;
        }
        s.bind(":id", id);
        const bool running = s.step() && s.text("status") == "running";
        s.reset();
        if (!running)
            fs::remove(entry.path(), ec); // best effort: a file left here only costs its space
    }
}

} // namespace ladder
