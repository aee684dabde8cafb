// libladder_spm.so: SentencePiece behind the function table of model/SentencePieceApi.h, loaded by
// model/SentencePiece.cpp with RTLD_DEEPBIND (why: that header). Nothing else of the project links
// libsentencepiece.
#include <memory>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "model/SentencePieceApi.h"

namespace {

using sentencepiece::SentencePieceProcessor;

const SentencePieceProcessor& processor(const void* p)
{
    return *static_cast<const SentencePieceProcessor*>(p);
}

void* load(const std::string& path, std::string* error)
{
    auto sp = std::make_unique<SentencePieceProcessor>();
    const auto status = sp->Load(path);
    if (!status.ok()) {
        *error = status.ToString();
        return nullptr;
    }
    return sp.release();
}

void* loadSerialized(const std::string& bytes, std::string* error)
{
    auto sp = std::make_unique<SentencePieceProcessor>();
    const auto status = sp->LoadFromSerializedProto(bytes);
    if (!status.ok()) {
        *error = status.ToString();
        return nullptr;
    }
    return sp.release();
}

void release(void* p)
{
    delete static_cast<SentencePieceProcessor*>(p);
}

int pieceSize(const void* p)
{
    return processor(p).GetPieceSize();
}

int pieceToId(const void* p, const std::string& piece)
{
    return processor(p).PieceToId(piece);
}

std::string idToPiece(const void* p, int id)
{
    return processor(p).IdToPiece(id);
}

int pieceType(const void* p, int id)
{
    using ladder::spm::PieceType;
    const auto& sp = processor(p);
    if (id < 0 || id >= sp.GetPieceSize())
        return static_cast<int>(PieceType::Normal);
    if (sp.IsUnknown(id))
        return static_cast<int>(PieceType::Unknown);
    if (sp.IsControl(id))
        return static_cast<int>(PieceType::Control);
    if (sp.IsUnused(id))
        return static_cast<int>(PieceType::Unused);
    if (sp.IsByte(id))
        return static_cast<int>(PieceType::Byte);
    return static_cast<int>(PieceType::Normal);
}

int specialId(const void* p, int which)
{
    using ladder::spm::SpecialPiece;
    const auto& sp = processor(p);
    switch (static_cast<SpecialPiece>(which)) {
    case SpecialPiece::Unk:
        return sp.unk_id();
    case SpecialPiece::Bos:
        return sp.bos_id();
    case SpecialPiece::Eos:
        return sp.eos_id();
    case SpecialPiece::Pad:
        return sp.pad_id();
    }
    return -1;
}

bool encode(const void* p, const std::string& text, std::vector<int>* ids, std::string* error)
{
    const auto status = processor(p).Encode(text, ids);
    if (!status.ok())
        *error = status.ToString();
    return status.ok();
}

bool decode(const void* p, const std::vector<int>& ids, std::string* text, std::string* error)
{
    const auto status = processor(p).Decode(ids, text);
    if (!status.ok())
        *error = status.ToString();
    return status.ok();
}

class SentenceVector : public sentencepiece::SentenceIterator {
public:
    explicit SentenceVector(const std::vector<std::string>& sentences)
        : m_sentences(sentences)
    {
    }
    bool done() const override { return m_next >= m_sentences.size(); }
    void Next() override { ++m_next; }
    const std::string& value() const override { return m_sentences[m_next]; }
    sentencepiece::util::Status status() const override { return {}; }

private:
    const std::vector<std::string>& m_sentences;
    std::size_t m_next = 0;
};

bool train(const std::unordered_map<std::string, std::string>& args,
    const std::vector<std::string>& sentences, unsigned seed, std::string* model, std::string* error)
{
    sentencepiece::SetRandomGeneratorSeed(seed);
    SentenceVector iterator(sentences);
    const auto status = sentencepiece::SentencePieceTrainer::Train(args, &iterator, model);
    if (!status.ok())
        *error = status.ToString();
    return status.ok();
}

const ladder::spm::Api kApi { ladder::spm::kApiVersion, load, loadSerialized, release, pieceSize, pieceToId,
    idToPiece, pieceType, specialId, encode, decode, train };

} // namespace

extern "C" __attribute__((visibility("default"))) const ladder::spm::Api* ladder_spm_api()
{
    return &kApi;
}
