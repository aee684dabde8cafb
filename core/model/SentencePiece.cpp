#include "model/SentencePiece.h"

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <utility>

#include <dlfcn.h>

#include "model/SentencePieceApi.h"
#include "util/Error.h"

namespace ladder {
namespace {

namespace fs = std::filesystem;

struct Module {
    const spm::Api* api = nullptr;
    std::string path;
};

std::vector<std::string> candidates()
{
    std::vector<std::string> paths;
    if (const char* env = std::getenv("LADDER_SPM_MODULE"); env && *env)
        paths.emplace_back(env);
    std::error_code ec;
    const auto exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        paths.push_back((exe.parent_path() / "libladder_spm.so").string());
        paths.push_back(
            (exe.parent_path().parent_path() / "lib" / "ladderbench" / "libladder_spm.so").string());
    }
#ifdef LADDER_SPM_MODULE_PATH
    paths.emplace_back(LADDER_SPM_MODULE_PATH);
#endif
    return paths;
}

// RTLD_DEEPBIND: the module and libsentencepiece find their own symbols before the program's, so that
// libsentencepiece's FLAGS_minloglevel is its own and not libc10's. AddressSanitizer refuses DEEPBIND (its
// interceptors must see every call): in a sanitized process the module is loaded without it, and the clash
// that SentencePieceApi.h describes is back (sanitizer builds only; docs/RELIABILITY.md).
int loadFlags()
{
    int flags = RTLD_NOW | RTLD_LOCAL;
    if (!dlsym(RTLD_DEFAULT, "__asan_init"))
        flags |= RTLD_DEEPBIND;
    return flags;
}

Module loadModule()
{
    std::string tried;
    for (const auto& path : candidates()) {
        std::error_code ec;
        if (!fs::is_regular_file(path, ec)) {
            tried += (tried.empty() ? "" : ", ") + path;
            continue;
        }
        void* handle = dlopen(path.c_str(), loadFlags());
        if (!handle) {
            const char* why = dlerror();
            throw Error(path + ": cannot load the SentencePiece module: " + (why ? why : "unknown error"));
        }
        using Entry = const spm::Api* (*)();
        const auto entry = reinterpret_cast<Entry>(dlsym(handle, "ladder_spm_api"));
        const spm::Api* api = entry ? entry() : nullptr;
        if (!api || api->version != spm::kApiVersion)
            throw Error(path
                + ": not this build's SentencePiece module (ladder_spm_api missing or of another version)");
        return { api, path }; // never unloaded: processors may live until exit
    }
    throw Error("the SentencePiece module libladder_spm.so is missing (looked in " + tried
        + "; set LADDER_SPM_MODULE to its path)");
}

const Module& module()
{
    static std::once_flag once;
    static Module loaded;
    static std::string failure;
    std::call_once(once, [] {
        try {
            loaded = loadModule();
        } catch (const std::exception& e) {
            failure = e.what();
        }
    });
    if (!loaded.api)
        throw Error(failure);
    return loaded;
}

} // namespace

SentencePieceModel::SentencePieceModel(const std::string& path)
{
    std::string error;
    m_processor = module().api->load(path, &error);
    if (!m_processor)
        throw Error(path + ": " + error);
}

SentencePieceModel SentencePieceModel::fromBytes(const std::string& bytes, const std::string& source)
{
    std::string error;
    SentencePieceModel model;
    model.m_processor = module().api->loadSerialized(bytes, &error);
    if (!model.m_processor)
        throw Error(source + ": " + error);
    return model;
}

SentencePieceModel::~SentencePieceModel()
{
    if (m_processor)
        module().api->release(m_processor);
}

SentencePieceModel::SentencePieceModel(SentencePieceModel&& other) noexcept
    : m_processor(std::exchange(other.m_processor, nullptr))
{
}

SentencePieceModel& SentencePieceModel::operator=(SentencePieceModel&& other) noexcept
{
    if (this != &other) {
        if (m_processor)
            module().api->release(m_processor);
        m_processor = std::exchange(other.m_processor, nullptr);
    }
    return *this;
}

int SentencePieceModel::pieceSize() const
{
    return module().api->pieceSize(m_processor);
}

int SentencePieceModel::pieceToId(const std::string& piece) const
{
    return module().api->pieceToId(m_processor, piece);
}

std::string SentencePieceModel::idToPiece(int id) const
{
    return module().api->idToPiece(m_processor, id);
}

SentencePieceModel::PieceType SentencePieceModel::pieceType(int id) const
{
    switch (static_cast<spm::PieceType>(module().api->pieceType(m_processor, id))) {
    case spm::PieceType::Unknown:
        return PieceType::Unknown;
    case spm::PieceType::Control:
        return PieceType::Control;
    case spm::PieceType::Unused:
        return PieceType::Unused;
    case spm::PieceType::Byte:
        return PieceType::Byte;
    case spm::PieceType::Normal:
        break;
    }
    return PieceType::Normal;
}

int SentencePieceModel::specialId(int which) const
{
    return module().api->specialId(m_processor, which);
}

int SentencePieceModel::unkId() const
{
    return specialId(static_cast<int>(spm::SpecialPiece::Unk));
}

int SentencePieceModel::bosId() const
{
    return specialId(static_cast<int>(spm::SpecialPiece::Bos));
}

int SentencePieceModel::eosId() const
{
    return specialId(static_cast<int>(spm::SpecialPiece::Eos));
}

int SentencePieceModel::padId() const
{
    return specialId(static_cast<int>(spm::SpecialPiece::Pad));
}

bool SentencePieceModel::encode(const std::string& text, std::vector<int>* ids, std::string* error) const
{
    return module().api->encode(m_processor, text, ids, error);
}

bool SentencePieceModel::decode(const std::vector<int>& ids, std::string* text, std::string* error) const
{
    return module().api->decode(m_processor, ids, text, error);
}

std::string trainSentencePiece(const std::unordered_map<std::string, std::string>& args,
    const std::vector<std::string>& sentences, unsigned seed)
{
    std::string model, error;
    if (!module().api->train(args, sentences, seed, &model, &error))
        throw Error("SentencePiece training: " + error);
    return model;
}

std::string sentencePieceModulePath()
{
    return module().path;
}

} // namespace ladder
