#pragma once

#include <array>
#include <string>
#include <vector>

// The metrics of the vision-and-language tasks (issue 22): VQA v2 soft accuracy as the official evaluation
// computes it, GQA exact match, and COCO captioning's BLEU-4 and CIDEr-D as pycocoevalcap 1.2 computes them.
// Plain C++ on UTF-8 strings. Each is checked against the reference implementations on
// tests/data/vl-metrics (tools/reference/vl_metrics.py, docs/VL.md).
namespace ladder::vlmetrics {

// --- VQA (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py) ---

// An answer as VQAEval.evaluate prepares it before comparing: '\n' and '\t' become spaces, the text is
// stripped (Python's str.strip whitespace), then processPunctuation and processDigitArticle:
// - each of ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? ! is removed when the text contains it next to a space
//   (or contains a digit,digit comma anywhere), else replaced by a space;
// - a '.' not followed by a digit is removed (periodStrip; at most 32 of them: the official code passes
//   re.UNICODE, 32, as sub's count);
// - lowercased, split at whitespace, number words none/zero..ten become digits, the articles a/an/the are
//   dropped, the official contractions table applied to each word ("dont" -> "don't"), joined by spaces.
// Differences: lowercasing covers ASCII and Latin-1 (Python lowers every script), and \d is an ASCII digit
// (Python's also matches other scripts' digits).
std::string normalizeVqaAnswer(const std::string& answer);

// The official per-question accuracy in [0, 1]: for each human answer i, min(1, #{j != i : answer_j ==
// prediction} / 3), averaged over i. As the official code does, the prediction and the answers are
// normalised (normalizeVqaAnswer) only when the answers (after the \n/\t/strip step) are not all the same;
// else they are compared after that step only. Works for any number of answers; 0 when there are none.
double vqaSoftAccuracy(const std::string& prediction, const std::vector<std::string>& humanAnswers);

// --- GQA ---

// 1 when prediction and answer are equal after stripping whitespace (Python's str.strip) and lowercasing
// ASCII letters, else 0. VL-T5's GQA evaluator compares the stripped generated text with the answer; GQA's
// answers are lowercase already.
double gqaExactMatch(const std::string& prediction, const std::string& answer);

// --- COCO captioning (pycocoevalcap 1.2) ---

using Tokens = std::vector<std::string>;

// What pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1 PTBTokenizer -preserveLines -lowerCase, then
// tokenizer.py's PUNCTUATIONS filter) makes of one caption, without Java. Lowercased; split at whitespace;
// punctuation split off words; "n't", "'s", "'re", "'ve", "'ll", "'d", "'m" split off ("can't" -> "ca n't");
// cannot, gonna, gotta, wanna, lemme, gimme, 'tis, 'twas split as PTB does; hyphens, slashes, '&' and '.'
// inside a word kept ("black-and-white", "and/or", "at&t", "3.5", "u.s."), as are digit,digit and
// digit:digit ("1,000", "12:30"); a final '.' kept after single letters, dotted acronyms and PTB's common
// abbreviations ("mr.", "st.", "etc."), but not after a single letter before a capitalised sentence-start
// word ("a. The" -> "a"); brackets become -lrb- -rrb- -lsb- -rsb- -lcb- -rcb-. Then the tokens
// tokenizer.py drops are dropped: '' ' `` ` . ? ! , : - -- ... ; and the uppercase -LRB- -RRB- -LCB- -RCB-
// (which never match: -lowerCase lowercases them, so pycocoevalcap keeps "-lrb-" and "-rrb-").
// Known differences from CoreNLP (docs/VL.md): a caption ending in a single letter and '.'
// keeps "x." here, while pycocoevalcap (all captions in one file, one per line) splits it when the NEXT
// caption starts with a sentence-start word; URLs, e-mail addresses, emoticons; letter runs joined by '!'
// or '?' ("dog!cat"); "?!"; a number with '.' or ':' followed by letters ("5:30pm", "2.5m": CoreNLP splits
// the letters off); "rock'n'roll"; and case folding beyond ASCII and Latin-1.
Tokens tokenizeCaption(const std::string& caption);

// Corpus BLEU-1..4 as pycocoevalcap's Bleu(4).compute_score: one candidate and >= 1 references per image
// (same order), clipped n-gram counts summed over the corpus, the "closest" reference length per image
// (ties to the shorter), brevity penalty exp(1 - r/c) when c < r, and bleu_scorer's epsilons:
// prod_k (correct_k + 1e-15) / (guess_k + 1e-9), then ** (1/n). Tokens containing whitespace are split
// there (pycocoevalcap splits the joined string); empty tokens vanish.
std::array<double, 4> bleu(
    const std::vector<Tokens>& candidateTokens, const std::vector<std::vector<Tokens>>& referenceTokens);
// bleu(...)[3], pycocoevalcap's "Bleu_4".
double bleu4(
    const std::vector<Tokens>& candidateTokens, const std::vector<std::vector<Tokens>>& referenceTokens);

// CIDEr-D as pycocoevalcap's Cider().compute_score (n = 4, sigma = 6): document frequencies from the
// references of this set, tf-idf weights tf * (log(#images) - log(max(1, df))), per n the clipped
// similarity sum min(h, r) * r / (|h| |r|) times exp(-delta^2 / (2 sigma^2)) where delta is the difference
// of the candidate's and the reference's bigram counts (the reference code counts bigrams as "length"),
// averaged over n and the references, times 10. `perImage` (optional) receives each image's score.
double ciderD(const std::vector<Tokens>& candidateTokens,
    const std::vector<std::vector<Tokens>>& referenceTokens, std::vector<double>* perImage = nullptr);

struct CaptionScores {
    double bleu4 = 0.0;
    double ciderD = 0.0;
    std::array<double, 4> bleu {}; // Bleu_1..Bleu_4
    std::vector<double> ciderPerImage;
};

// Tokenizes (tokenizeCaption) every prediction and reference, then scores BLEU and CIDEr-D.
// predictions[i] is image i's caption, references[i] its human captions (at least one). Throws ladder::Error
// when the counts differ or an image has no reference.
CaptionScores scoreCaptions(
    const std::vector<std::string>& predictions, const std::vector<std::vector<std::string>>& references);

} // namespace ladder::vlmetrics
