#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include "model/Backbone.h"
#include "model/T5Model.h"
#include "peft/DecoderLadder.h"
#include "peft/Ladder.h"
#include "peft/LadderSideNetwork.h"

namespace ladder {

// Which backbone tensors one example stores: derived from the side network's options.
struct LadderCacheLayout {
    std::int64_t dModel = 0;
    std::int64_t encoderLayers = 0; // backbone depth, the size of LadderBackboneOutputs::encoder
    std::int64_t decoderLayers = 0;
    std::vector<std::int64_t> encoderStored; // kept encoder layers whose outputs are stored
    std::vector<std::int64_t> decoderStored;
    bool decoderFinal = false;
    // A decoder-only backbone (DecoderLadderMethod): one causal sequence, the source joined to the labels
    // (model/CausalJoin.h). decoderStored are its kept layers (decoderLayers its depth); an example's entry
    // is each kept layer's output over its s + t - 1 real columns, the ones whose outputs reach a loss term.
    bool joined = false;

    static LadderCacheLayout forSide(const LadderSideOptions& side);
    static LadderCacheLayout forDecoderSide(const DecoderSideOptions& side);
    // The layout of an LST method, T5's or a decoder's; ladder::Error for any other method.
    static LadderCacheLayout forMethod(Method& method);
    // Values stored per example: d * (source length * encoder tensors + target length * decoder tensors);
    // joined: d * (source length + target length - 1) * kept layers.
    std::int64_t elementsFor(std::int64_t sourceLength, std::int64_t targetLength) const;
    bool empty() const { return encoderStored.empty() && decoderStored.empty() && !decoderFinal; }
};

// Where and how the cache keeps its values.
struct LadderCacheOptions {
    std::string mode = "ram"; // "ram" or "disk" (a memory-mapped file in `dir`)
    std::string dtype = "fp32"; // "fp32" or "bf16" (half the bytes; values rounded to bf16)
    std::string dir; // disk: the folder of cache files (created when missing)
    // "same": an entry is used only in a batch padded to the lengths it was computed at (otherwise the
    // backbone runs again and the entry is replaced), which makes fp32 losses bit-equal to an uncached run;
    // "any": used at any padded length (the backbone's results differ in the last bits between padded
    // lengths, so losses agree to fp32 rounding). See docs/PERFORMANCE.md.
    std::string padding = "same";
};

// The identity of a cache: everything the stored values are a function of. Two runs may share a disk cache
// exactly when their keys are equal (docs/PERFORMANCE.md lists what is in it and what is deliberately not).
struct LadderCacheKey {
    std::string description; // JSON text: what the hash covers, readable in the file header
    std::uint64_t hash = 0;

    // backbone: its config, a fingerprint of every weight (Backbone::configJson(), namedWeights()) and,
    // unless fp32, its weight storage (Backbone::weightStorage(): "int4 g64" computes other ladders);
    // layout: which layer outputs; compute: the device type and the compute dtype ("fp32" or
    // "bf16-autocast"); storage dtype; the token ids of every example (source and target, after
    // truncation: max lengths matter only through them).
    static LadderCacheKey make(const Backbone& backbone, const LadderCacheLayout& layout,
        const std::string& compute, const std::string& storageDtype,
        const std::vector<std::vector<std::int64_t>>& sources,
        const std::vector<std::vector<std::int64_t>>& targets);
};

// Per-example store of the backbone outputs LST feeds through its ladders, so that later epochs run only
// the side network. Keyed by example index, not by batch: each example's unpadded values (its real source
// and target lengths) are stored once and padded again with zeros for whatever batch it lands in. On a
// decoder-only backbone (LadderCacheLayout::joined) an entry is one span of the joined causal sequence:
// store/gather are T5's, storeJoined/gatherJoined the decoder's.
// RAM mode keeps one buffer from LibTorch's CPU allocator (so the memory meter counts it); disk mode a
// memory-mapped, preallocated file whose header, index and per-entry checksums are verified on opening:
// a file of another key, a truncated or malformed file is rebuilt, an entry with a bad checksum is
// recomputed. Not thread-safe.
class LadderActivationCache {
public:
    using Log = std::function<void(const std::string& level, const std::string& message)>;

    // sourceLengths/targetLengths: the token count of every example (the batcher's truncated ids).
    // Throws ladder::Error when the cache cannot be allocated (not enough memory or disk: the message
    // names the size and the place) or the file cannot be created.
    LadderActivationCache(LadderCacheLayout layout, std::vector<std::int64_t> sourceLengths,
        std::vector<std::int64_t> targetLengths, LadderCacheKey key, LadderCacheOptions options,
        Log log = {});
    ~LadderActivationCache();
    LadderActivationCache(const LadderActivationCache&) = delete;
    LadderActivationCache& operator=(const LadderActivationCache&) = delete;

    // Bytes of stored values for these lengths and dtype (what the cache costs, shown before a run).
    static std::uint64_t bytesFor(const LadderCacheLayout& layout,
        const std::vector<std::int64_t>& sourceLengths, const std::vector<std::int64_t>& targetLengths,
        const std::string& dtype);

    // Whether every example of `examples` is stored (padding "same": computed in a batch padded to
    // sourceLength x targetLength; negative lengths: stored at all).
    bool contains(const std::vector<std::size_t>& examples, std::int64_t sourceLength = -1,
        std::int64_t targetLength = -1) const;
    // Whether a batch padded to these lengths may use the stored entries (contains() with the policy).
    bool usable(
        const std::vector<std::size_t>& examples, std::int64_t sourceLength, std::int64_t targetLength) const;
    // Stores row r of `outputs` as example examples[r]: rows not stored yet, and (padding "same") rows stored
    // at other padded lengths. attentionMask and labels give each row's real lengths, which must match the
    // lengths given at construction.
    void store(const std::vector<std::size_t>& examples, const LadderBackboneOutputs& outputs,
        const at::Tensor& attentionMask, const at::Tensor& labels);
    // The stored values of `examples`, zero-padded to (batch, sourceLength | targetLength, d), converted to
    // the dtype they were computed in, on `device`. Throws if an example is not stored.
    LadderBackboneOutputs gather(const std::vector<std::size_t>& examples, std::int64_t sourceLength,
        std::int64_t targetLength, c10::Device device) const;

    // A joined layout's store and gather (train/DecoderActivationCache.cpp). kept: the backbone's layer
    // outputs indexed by layer (the kept ones defined), each (batch, S + T - 1, d) over the causal join of a
    // source (batch, S) with this attention mask and labels (batch, T). Row r's real columns start at S - s
    // (CausalJoin moves every source to end at column S - 1); gatherJoined zero-pads the rest.
    void storeJoined(const std::vector<std::size_t>& examples, const std::vector<at::Tensor>& kept,
        const at::Tensor& attentionMask, const at::Tensor& labels);
    std::vector<at::Tensor> gatherJoined(const std::vector<std::size_t>& examples, std::int64_t sourceLength,
        std::int64_t targetLength, c10::Device device) const;

    // Disk mode: writes dirty pages back (also done by the destructor).
    void flush();

    std::size_t exampleCount() const { return m_entries.size(); }
    std::size_t storedCount() const;
    std::uint64_t bytes() const { return m_dataBytes; }
    const std::string& path() const { return m_path; } // disk mode; empty in RAM mode
    const LadderCacheOptions& options() const { return m_options; }
    const LadderCacheKey& key() const { return m_key; }
    // Entries found valid in an existing file when it was opened (disk mode).
    std::size_t reusedCount() const { return m_reused; }
    // Batches served from the cache (hits) and batches that ran the backbone (misses), counted by the caller.
    std::int64_t hits = 0;
    std::int64_t misses = 0;
    // "RAM, fp32: 786.4 MB for 500 examples (6 encoder + 6 decoder layer outputs of d 512)".
    std::string describe() const;

private:
    struct Entry {
        std::uint64_t offset = 0; // bytes from the start of the data area
        std::int64_t sourceLength = 0;
        std::int64_t targetLength = 0;
        bool stored = false;
        std::int64_t paddedSource = 0; // the padded lengths of the batch the values were computed in
        std::int64_t paddedTarget = 0;
    };

    void openDisk();
    bool tryReuse(int fd, std::uint64_t fileSize, std::string& reason);
    void createFile();
    void writeHeader();
    std::uint64_t entryChecksum(const Entry& e) const;
    void markStored(std::size_t example);
    // The dtype the backbone computed in, known with the first stored batch (rewrites a file's header).
    void noteValueDtype(c10::ScalarType dtype);
    // Whether row values of `example` computed at these padded lengths are to be written (not stored yet,
    // or padding "same" and stored at other lengths): then the entry is invalid until markStored(). Throws
    // when the real lengths differ from the data the cache was made for.
    bool claimEntry(std::size_t example, std::int64_t paddedSource, std::int64_t paddedTarget,
        std::int64_t sourceLength, std::int64_t targetLength);
    char* entryData(const Entry& e) const { return m_data + e.offset; }

    LadderCacheLayout m_layout;
    LadderCacheKey m_key;
    LadderCacheOptions m_options;
    Log m_log;
    std::vector<Entry> m_entries;
    c10::ScalarType m_storageDtype;
    std::int64_t m_elementSize = 4;
    std::uint64_t m_dataBytes = 0;
    // The dtype the backbone computed the values in (what gather returns); undefined until known.
    c10::ScalarType m_valueDtype = c10::ScalarType::Float;

    at::Tensor m_ram; // RAM mode: the buffer
    std::string m_path; // disk mode
    int m_fd = -1;
    void* m_map = nullptr;
    std::uint64_t m_mapBytes = 0;
    std::uint64_t m_indexOffset = 0;
    std::uint64_t m_dataOffset = 0;
    char* m_data = nullptr;
    std::size_t m_reused = 0;
};

// The compute part of a key: "cpu-fp32", "cuda-fp32", "cuda-bf16-autocast".
std::string ladderCacheComputeLabel(const c10::Device& device, bool bf16Autocast);

// LadderMethod::forward with the activation cache: when the cache can serve every example of `examples`
// (the batch's rows, by example index) at this batch's padding, the backbone does not run and its outputs
// come from the cache; otherwise the backbone runs as in forward() and the rows are stored. Counts the
// cache's hits and misses. (Here, not in core/peft, which knows nothing of core/train.)
MethodOutput forwardWithCache(LadderMethod& method, const Seq2SeqBatch& batch,
    const std::vector<std::size_t>& examples, LadderActivationCache& cache);
// The same for LST on a decoder-only backbone (train/DecoderActivationCache.cpp): the kept layers' outputs
// over the joined causal sequence come from the cache, or the backbone runs and they are stored.
MethodOutput forwardWithCache(DecoderLadderMethod& method, const Seq2SeqBatch& batch,
    const std::vector<std::size_t>& examples, LadderActivationCache& cache);
// Either of the two, by the method's type; ladder::Error for a method that is not LST.
MethodOutput forwardWithCache(Method& method, const Seq2SeqBatch& batch,
    const std::vector<std::size_t>& examples, LadderActivationCache& cache);

} // namespace ladder
