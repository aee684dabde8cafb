#pragma once

#include <string>
#include <unordered_map>
#include <vector>

namespace ladder {

// A SentencePiece model, through the module libladder_spm.so (model/SentencePieceApi.h says why a module).
// The module is looked for, in order: $LADDER_SPM_MODULE; next to the running program; in
// <program>/../lib/ladderbench/; where the build put it. Errors throw ladder::Error; const methods are
// thread-safe (SentencePieceProcessor's are).
class SentencePieceModel {
public:
    // Throws ladder::Error "PATH: WHY" with SentencePiece's reason.
    explicit SentencePieceModel(const std::string& path);
    // A model from its serialized bytes (a model file's content, perhaps edited); `source` names it in
    // errors: ladder::Error "SOURCE: WHY".
    static SentencePieceModel fromBytes(const std::string& bytes, const std::string& source);
    ~SentencePieceModel();
    SentencePieceModel(SentencePieceModel&& other) noexcept;
    SentencePieceModel& operator=(SentencePieceModel&& other) noexcept;
    SentencePieceModel(const SentencePieceModel&) = delete;
    SentencePieceModel& operator=(const SentencePieceModel&) = delete;

    int pieceSize() const;
    int pieceToId(const std::string& piece) const;
    std::string idToPiece(int id) const;
    // What kind of piece `id` is; Normal for an id outside [0, pieceSize()).
    enum class PieceType { Normal, Unknown, Control, Unused, Byte };
    PieceType pieceType(int id) const;
    // The model's own special ids (its trainer spec's unk_id, bos_id, eos_id, pad_id), -1 where it has none.
    int unkId() const;
    int bosId() const;
    int eosId() const;
    int padId() const;
    // false with *error set when SentencePiece reports a failure.
    bool encode(const std::string& text, std::vector<int>* ids, std::string* error) const;
    bool decode(const std::vector<int>& ids, std::string* text, std::string* error) const;

private:
    SentencePieceModel() = default;
    int specialId(int which) const;

    void* m_processor = nullptr;
};

// SentencePieceTrainer::Train over `sentences` in the given order, after SetRandomGeneratorSeed(seed);
// returns the serialized model. Throws ladder::Error "SentencePiece training: WHY".
std::string trainSentencePiece(const std::unordered_map<std::string, std::string>& args,
    const std::vector<std::string>& sentences, unsigned seed);

// The module's file once loaded (it is loaded on first use; this loads it).
std::string sentencePieceModulePath();

} // namespace ladder
