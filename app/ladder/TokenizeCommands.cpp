// `ladder tokenize (--spm FILE | --model DIR) [--decode] [--skip-special] [--no-special] TEXT...`
//   --spm: T5's spiece.model (HF's slow T5Tokenizer); --model: any backbone folder, through loadTokenizer
//   (spiece.model, tokenizer.json or tokenizer.model: T5, Qwen2 / Llama 3, Llama 2 / Mistral)
//   encode: prints [[ids of TEXT 1], [ids of TEXT 2], ...]
//   decode: each TEXT is a JSON array of ids; prints ["text 1", "text 2", ...]
#include <cstdint>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "model/T5Tokenizer.h"
#include "model/Tokenizer.h"
#include "model/TokenizerLoad.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder::cli {
namespace {

struct TokenizeOptions {
    std::string spmPath;
    std::string modelDir;
    bool decode = false;
    bool noSpecial = false;
    bool skipSpecial = false;
    bool json = false; // accepted for uniformity: the output is JSON either way
    std::vector<std::string> texts;
};

// Parses "[8774, 1]" into ids; throws ladder::Error naming the argument when it is anything else.
std::vector<std::int64_t> parseIds(const std::string& text, std::size_t index)
{
    const auto fail = [&]() -> Error {
        return Error("argument " + std::to_string(index + 1) + " is not a JSON array of token ids: '"
            + oneLine(text, 80) + "'");
    };
    const auto parsed = tryParseJson(text);
    if (!parsed || !parsed->is_array())
        throw fail();
    const auto& json = *parsed;
    std::vector<std::int64_t> ids;
    ids.reserve(json.size());
    for (const auto& value : json) {
        if (value.is_number_unsigned()) {
            if (value.get<std::uint64_t>()
                > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                throw fail();
            ids.push_back(static_cast<std::int64_t>(value.get<std::uint64_t>()));
        } else if (value.is_number_integer()) {
            ids.push_back(value.get<std::int64_t>());
        } else {
            throw fail();
        }
    }
    return ids;
}

int runTokenize(const TokenizeOptions& options)
{
    if (options.spmPath.empty() == options.modelDir.empty())
        throw UsageError("give one of --spm FILE and --model DIR");
    std::shared_ptr<const Tokenizer> tokenizer;
    if (options.modelDir.empty())
        tokenizer = std::make_shared<const T5Tokenizer>(options.spmPath);
    else
        tokenizer = loadTokenizer(options.modelDir);
    nlohmann::json result = nlohmann::json::array();
    for (std::size_t i = 0; i < options.texts.size(); ++i) {
        if (options.decode)
            result.push_back(tokenizer->decode(parseIds(options.texts[i], i), options.skipSpecial));
        else
            result.push_back(tokenizer->encode(options.texts[i], !options.noSpecial));
    }
    // Invalid UTF-8 in an argument must not abort the dump: replace it with U+FFFD.
    std::cout << result.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
}

// TEXT arguments. CLI11 2.1 splits an argument written "[a,b]" into several values when a positional
// takes many, so the positional takes one TEXT and the subcommand collects the others as extras.
// Extras also hold unknown options (reported here) and a "--" that came before every TEXT.
std::vector<std::string> collectTexts(const CLI::App& cmd, const std::vector<std::string>& first)
{
    std::vector<std::string> texts = first;
    bool literal = false;
    for (const auto& arg : cmd.remaining()) {
        if (!literal && arg == "--") {
            literal = true;
            continue;
        }
        std::string name, value;
        const bool isOption = CLI::detail::split_long(arg, name, value)
            || (CLI::detail::split_short(arg, name, value) && !(name[0] >= '0' && name[0] <= '9'));
        if (!literal && isOption)
            throw UsageError("unknown option " + arg + " (write -- before a TEXT that starts with -)");
        texts.push_back(arg);
    }
    return texts;
}

} // namespace

void registerTokenizeCommands(CLI::App& app)
{
    auto options = std::make_shared<TokenizeOptions>();
    auto* cmd = app.add_subcommand("tokenize",
        "Encode texts to token ids, or decode id arrays, with a spiece.model (HF slow T5Tokenizer semantics: "
        "100 sentinels, </s> appended) or a backbone folder's tokenizer (HF's semantics for it)");
    auto* spm = cmd->add_option("--spm", options->spmPath, "SentencePiece model file (spiece.model)");
    cmd->add_option("--model", options->modelDir,
           "Backbone folder: spiece.model (T5), tokenizer.json (byte-level BPE: Qwen2, Llama 3) or "
           "tokenizer.model (Llama 2, Mistral)")
        ->excludes(spm);
    cmd->add_flag(
        "--decode", options->decode, "Each TEXT is a JSON array of ids, e.g. \"[8774, 1]\"; print strings");
    cmd->add_flag(
        "--skip-special", options->skipSpecial, "With --decode: drop pad, eos, unk and sentinel tokens");
    cmd->add_flag(
        "--no-special", options->noSpecial, "Encode without the special tokens (T5's </s>, Llama's <s>)");
    cmd->add_flag(
        "--json", options->json, "the output is JSON with or without it (accepted like every command's)");
    cmd->add_option("text", options->texts, "TEXT... to encode (or id arrays to decode); more may follow")
        ->allow_extra_args(false);
    cmd->allow_extras();
    cmd->callback([options, cmd]() {
        runGuarded("tokenize", [&]() {
            TokenizeOptions run = *options;
            run.texts = collectTexts(*cmd, options->texts);
            return runTokenize(run);
        });
    });
}

} // namespace ladder::cli
