#pragma once

// The table of functions that the SentencePiece module (core/model/spm/SentencePieceModule.cpp, built as
// libladder_spm.so) hands to model/SentencePiece.cpp. Only standard C++ types cross it: the module and the
// core share one libstdc++ and one malloc.
//
// Why a module: Debian's libsentencepiece exports FLAGS_minloglevel, a 24-byte absl::Flag<int>, and
// LibTorch's libc10 exports a 4-byte int of the same name. Linked into one program, libsentencepiece's
// constructor wrote its flag over libc10's: FLAGS_caffe2_use_fatal_for_enforce, next to it, became true, and
// every failed CAFFE_ENFORCE (an allocation too large, a corrupt pytorch_model.bin) aborted the process
// instead of throwing (docs/RELIABILITY.md). Loaded with RTLD_DEEPBIND, the module and libsentencepiece bind
// their own symbols first and libc10's memory is left alone.

#include <string>
#include <unordered_map>
#include <vector>

namespace ladder::spm {

inline constexpr int kApiVersion = 2;

// What pieceType answers (SentencePiece's ModelProto::SentencePiece::Type, as its Is* queries report it).
enum class PieceType { Normal = 0, Unknown = 1, Control = 2, Unused = 3, Byte = 4 };
// What specialId answers for.
enum class SpecialPiece { Unk = 0, Bos = 1, Eos = 2, Pad = 3 };

struct Api {
    int version = kApiVersion;
    // A processor for the model file at `path`, or nullptr with *error set.
    void* (*load)(const std::string& path, std::string* error);
    // A processor for a serialized model held in memory (model/LlamaTokenizer.cpp edits the file's normalizer
    // spec this way), or nullptr with *error set.
    void* (*loadSerialized)(const std::string& bytes, std::string* error);
    void (*release)(void* processor);
    int (*pieceSize)(const void* processor);
    int (*pieceToId)(const void* processor, const std::string& piece);
    std::string (*idToPiece)(const void* processor, int id);
    // A PieceType as an int; ids outside [0, pieceSize) answer Normal.
    int (*pieceType)(const void* processor, int id);
    // The id of a SpecialPiece (an int), -1 when the model has none.
    int (*specialId)(const void* processor, int which);
    // false with *error set when SentencePiece reports a failure.
    bool (*encode)(const void* processor, const std::string& text, std::vector<int>* ids, std::string* error);
    bool (*decode)(const void* processor, const std::vector<int>& ids, std::string* text, std::string* error);
    // SentencePieceTrainer::Train over `sentences` in order (the random seed set first); the serialized model
    // in *model.
    bool (*train)(const std::unordered_map<std::string, std::string>& args,
        const std::vector<std::string>& sentences, unsigned seed, std::string* model, std::string* error);
};

} // namespace ladder::spm

// The module's one exported symbol.
extern "C" const ladder::spm::Api* ladder_spm_api();
