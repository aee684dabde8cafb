// ResultsStore: the store's own folder of files, and the checkpoints in it with their recorded SHA-256
// (docs/STORE.md, "Files").
#include <algorithm>
#include <filesystem>

#include "store/FileHash.h"
#include "store/ResultsStoreImpl.h"
#include "store/Sqlite.h"
#include "util/Error.h"

namespace ladder {

namespace fs = std::filesystem;
using sqlite::Statement;
using sqlite::Transaction;
using store_detail::runLabel;
using store_detail::str;

namespace {

// A run's checkpoint, relative to the files folder: what runs.checkpoint_file holds.
std::string checkpointName(std::int64_t runId)
{
    return "checkpoints/run-" + str(runId) + ".safetensors";
}

// A run's training state (train/TrainState.h), relative to the files folder.
std::string stateName(std::int64_t runId)
{
    return "state/run-" + str(runId) + ".state";
}

std::string sizeText(std::optional<std::int64_t> bytes)
{
    return bytes ? str(*bytes) + " bytes" : std::string("size not recorded");
}

} // namespace

std::string ResultsStore::filesDirFor(const std::string& storePath)
{
    std::error_code ec;
    fs::path path = fs::absolute(storePath, ec);
    if (ec)
        path = storePath;
    const fs::path resolved = fs::weakly_canonical(path, ec); // one store under two names: one folder
    return (ec ? path.lexically_normal() : resolved).string() + ".files";
}

std::string ResultsStore::checkpointPathFor(const std::string& storePath, std::int64_t runId)
{
    return (fs::path(filesDirFor(storePath)) / checkpointName(runId)).string();
}

std::string ResultsStore::statePathFor(const std::string& storePath, std::int64_t runId)
{
    return (fs::path(filesDirFor(storePath)) / stateName(runId)).string();
}

std::string ResultsStore::statePath(std::int64_t runId) const
{
    return m_impl->filesDir.empty() ? std::string()
                                    : (fs::path(m_impl->filesDir) / stateName(runId)).string();
}

std::string ResultsStore::filesDir() const
{
    return m_impl->filesDir;
}

std::string ResultsStore::checkpointPath(std::int64_t runId) const
{
    return m_impl->filesDir.empty() ? std::string()
                                    : (fs::path(m_impl->filesDir) / checkpointName(runId)).string();
}

bool ResultsStore::recordCheckpoint(std::int64_t runId, std::string* error)
{
    return m_impl->guard("recording the checkpoint of " + runLabel(runId), error, [&] {
        // Hashed before the write lock is taken: a large file takes a while to read.
        const FileDigest digest = hashFile(checkpointPath(runId));
        auto& db = m_impl->db;
        Transaction tx(db);
        m_impl->requireRun(runId);
        Statement s(db,
            "UPDATE runs SET checkpoint_file = :file, checkpoint_sha256 = :sha256, checkpoint_bytes = :bytes "
            "WHERE id = :id");
        s.bind(":file", checkpointName(runId))
            .bind(":sha256", digest.sha256)
            .bind(":bytes", digest.bytes)
            .bind(":id", runId)
            .run();
        tx.commit();
    });
}

bool ResultsStore::verifyCheckpoint(std::int64_t runId, std::string* path, std::string* error)
{
    return m_impl->guard("checking the checkpoint of " + runLabel(runId), error, [&] {
        const RunRecord run = m_impl->getRun(runId);
        if (run.checkpointFile.empty() || run.checkpointSha256.empty()) {
            std::string message = runLabel(runId)
                + " has no recorded checkpoint (it stopped before saving its "
                  "best weights, or was recorded before schema version 3)";
            // Before version 3 checkpoints went to a folder every store in the same folder shared.
            const fs::path legacy = fs::path(m_impl->path).parent_path() / checkpointName(runId);
            std::error_code ec;
            if (fs::exists(legacy, ec))
                message += "; " + legacy.string()
                    + " is from before then, unchecked: another store in the "
                      "same folder may have written it";
            throw Error(message);
        }
        const std::string file = (fs::path(m_impl->filesDir) / run.checkpointFile).string();
        std::error_code ec;
        if (!fs::exists(file, ec))
            throw Error("its checkpoint " + file + " is missing");
        const FileDigest found = hashFile(file);
        if (found.sha256 != run.checkpointSha256
            || (run.checkpointBytes && found.bytes != *run.checkpointBytes))
            throw Error("its checkpoint " + file + " is not the file the store recorded: its SHA-256 is "
                + found.sha256 + " (" + sizeText(found.bytes) + "), the store recorded "
                + run.checkpointSha256 + " (" + sizeText(run.checkpointBytes)
                + "); it was overwritten, damaged or replaced");
        if (path)
            *path = file;
    });
}

std::vector<std::string> store_detail::runFiles(
    sqlite::Connection& db, const std::string& filesDir, std::int64_t runId)
{
    std::vector<std::string> files;
    const auto add = [&files](const std::string& file) {
        if (std::find(files.begin(), files.end(), file) == files.end())
            files.push_back(file);
    };
    Statement s(db, "SELECT checkpoint_file FROM runs WHERE id = :id");
    s.bind(":id", runId);
    if (s.step() && !s.isNull("checkpoint_file"))
        add((fs::path(filesDir) / s.text("checkpoint_file")).string());
    // A checkpoint written but not (yet) recorded, and the temporary file of an interrupted write.
    const std::string conventional = (fs::path(filesDir) / checkpointName(runId)).string();
    add(conventional);
    add(conventional + ".tmp");
    const std::string state = (fs::path(filesDir) / stateName(runId)).string(); // a resumable run's
    add(state);
    add(state + ".tmp");
    return files;
}

void store_detail::removeFiles(const std::vector<std::string>& files)
{
    for (const auto& file : files) {
        std::error_code ec;
        fs::remove(file, ec);
        if (ec && ec != std::errc::no_such_file_or_directory)
            throw Error("its file " + file + " could not be removed: " + ec.message());
    }
}

} // namespace ladder
