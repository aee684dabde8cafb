#include "train/LadderActivationCache.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "util/Error.h"

namespace ladder {
namespace {

constexpr char kMagic[8] = { 'L', 'B', 'L', 'A', 'D', 'C', 'H', '1' };
constexpr std::uint32_t kFormatVersion = 2;
constexpr std::uint64_t kHeaderBytes = 4096;
constexpr std::uint64_t kIndexEntryBytes = 32;
constexpr std::uint64_t kPage = 4096;

std::uint16_t packLength(std::int64_t v)
{
    return v >= 0 && v < 0xFFFF ? static_cast<std::uint16_t>(v) : 0xFFFF;
}

// The file header (the first kHeaderBytes of a disk cache; the key description fills the rest).
struct FileHeader {
    char magic[8];
    std::uint32_t version;
    std::uint32_t storageDtype; // 0 fp32, 1 bf16
    std::uint32_t valueDtype; // 0 fp32, 1 bf16, 2 fp16: what gather returns
    std::uint32_t reserved;
    std::uint64_t keyHash;
    std::uint64_t examples;
    std::uint64_t indexOffset;
    std::uint64_t dataOffset;
    std::uint64_t totalBytes;
    std::uint64_t headerChecksum; // over the fields above with this one zero
    std::uint32_t descriptionBytes;
};

// One index entry in the file.
struct FileEntry {
    std::uint64_t offset;
    std::uint32_t sourceLength;
    std::uint32_t targetLength;
    std::uint64_t checksum;
    std::uint32_t stored;
    std::uint16_t paddedSource; // 0xFFFF: longer than 65534
    std::uint16_t paddedTarget;
};
static_assert(sizeof(FileEntry) == kIndexEntryBytes, "index entry layout");

std::uint64_t roundUp(std::uint64_t v, std::uint64_t to)
{
    return (v + to - 1) / to * to;
}

// A fast 64-bit hash over bytes (8-byte words with multiply-xorshift mixing); detects corruption and keys
// caches, not meant against adversaries.
std::uint64_t hashBytes(const void* data, std::size_t size, std::uint64_t seed = 0x9E3779B97F4A7C15ull)
{
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = seed ^ (size * 0xFF51AFD7ED558CCDull);
    auto mix = [](std::uint64_t x) {
        x ^= x >> 33;
        x *= 0xC4CEB9FE1A85EC53ull;
        x ^= x >> 29;
        return x;
    };
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ mix(w * 0x87C37B91114253D5ull)) * 0x4CF5AD432745937Full + 0x52DCE729;
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, p + i, size - i);
    h = (h ^ mix(tail + size)) * 0x4CF5AD432745937Full;
    return mix(h);
}

std::uint32_t dtypeCode(c10::ScalarType t)
{
    switch (t) {
    case at::kFloat:
        return 0;
    case at::kBFloat16:
        return 1;
    case at::kHalf:
        return 2;
    default:
        throw Error("ladder cache: values of dtype " + std::string(c10::toString(t)) + " cannot be cached");
    }
}

c10::ScalarType dtypeFromCode(std::uint32_t code)
{
    return code == 0 ? at::kFloat : code == 1 ? at::kBFloat16 : at::kHalf;
}

std::string megabytes(std::uint64_t bytes)
{
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / 1e6 << " MB";
    return s.str();
}

// MemAvailable from /proc/meminfo in bytes; 0 when unknown.
std::uint64_t availableMemory()
{
    std::ifstream in("/proc/meminfo");
    std::string name;
    std::uint64_t kb = 0;
    std::string unit;
    while (in >> name >> kb >> unit)
        if (name == "MemAvailable:")
            return kb * 1024;
    return 0;
}

std::string errnoText()
{
    return std::strerror(errno);
}

} // namespace

// ---------------------------------------------------------------------------------------------------
LadderCacheLayout LadderCacheLayout::forSide(const LadderSideOptions& side)
{
    LadderCacheLayout l;
    const auto shape = side.backbone.shape();
    l.dModel = shape.hiddenSize;
    l.encoderLayers = shape.encoderBlocks;
    l.decoderLayers = shape.decoderBlocks;
    if (side.needsBackbone()) {
        if (side.usesLadders() && side.hasSideEncoder())
            l.encoderStored = side.encoderKeep;
        if (side.usesLadders())
            l.decoderStored = side.decoderKeep;
        l.decoderFinal = side.usesMerge();
    }
    return l;
}

std::int64_t LadderCacheLayout::elementsFor(std::int64_t sourceLength, std::int64_t targetLength) const
{
    if (joined) // the last label is no input, and no column before the source's last one feeds a loss term
        return dModel * std::max<std::int64_t>(sourceLength + targetLength - 1, 0)
            * static_cast<std::int64_t>(decoderStored.size());
    const auto decoderTensors = static_cast<std::int64_t>(decoderStored.size()) + (decoderFinal ? 1 : 0);
    return dModel
        * (sourceLength * static_cast<std::int64_t>(encoderStored.size()) + targetLength * decoderTensors);
}

std::string ladderCacheComputeLabel(const c10::Device& device, bool bf16Autocast)
{
    return std::string(device.is_cuda() ? "cuda" : "cpu") + (bf16Autocast ? "-bf16-autocast" : "-fp32");
}

LadderCacheKey LadderCacheKey::make(const Backbone& backbone, const LadderCacheLayout& layout,
    const std::string& compute, const std::string& storageDtype,
    const std::vector<std::vector<std::int64_t>>& sources,
    const std::vector<std::vector<std::int64_t>>& targets)
{
    // Weights: every named parameter and buffer, name and bytes, in registration order.
    std::uint64_t weights = 0x2545F4914F6CDD1Dull;
    {
        at::NoGradGuard noGrad;
        for (const auto& [name, value] : backbone.namedWeights()) {
            const auto t = value.detach().to(at::kCPU).contiguous();
            weights = hashBytes(name.data(), name.size(), weights);
            weights = hashBytes(t.data_ptr(), t.nbytes(), weights);
        }
    }
    std::uint64_t data = 0x85EBCA77C2B2AE63ull;
    for (const auto* set : { &sources, &targets }) {
        for (const auto& ids : *set) {
            const std::uint64_t n = ids.size();
            data = hashBytes(&n, sizeof n, data);
            data = hashBytes(ids.data(), ids.size() * sizeof(std::int64_t), data);
        }
    }
    auto hex = [](std::uint64_t v) {
        std::ostringstream s;
        s << std::hex << std::setw(16) << std::setfill('0') << v;
        return s.str();
    };
    nlohmann::json j { { "format", kFormatVersion },
        { "backbone_config", nlohmann::json::parse(backbone.configJson()) },
        { "backbone_weights", hex(weights) }, { "encoder_layers", layout.encoderStored },
        { "decoder_layers", layout.decoderStored }, { "decoder_final", layout.decoderFinal },
        { "compute", compute }, { "storage_dtype", storageDtype }, { "examples", sources.size() },
        { "token_ids", hex(data) } };
    // A quantised backbone (issue 18) computes other ladders: its storage is part of the key (and its
    // weights' fingerprint covers the stored parts, Backbone::namedWeights). Absent for fp32, so the keys of
    // fp32 runs, and the cache files named after them, stay byte-identical.
    if (const auto storage = backbone.weightStorage(); storage != "fp32")
        j["backbone_storage"] = storage;
    // A decoder's entries are spans of one joined sequence, not a source and a target: never read as T5's
    // (its config differs too, but the layout says so even where a config would not). Absent for T5.
    if (layout.joined)
        j["sequence"] = "causal join";
    LadderCacheKey key;
    key.description = j.dump();
    key.hash = hashBytes(key.description.data(), key.description.size());
    return key;
}

// ---------------------------------------------------------------------------------------------------
std::uint64_t LadderActivationCache::bytesFor(const LadderCacheLayout& layout,
    const std::vector<std::int64_t>& sourceLengths, const std::vector<std::int64_t>& targetLengths,
    const std::string& dtype)
{
    const std::uint64_t element = dtype == "bf16" ? 2 : 4;
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < sourceLengths.size(); ++i)
        total += static_cast<std::uint64_t>(layout.elementsFor(sourceLengths[i], targetLengths.at(i)))
            * element;
    return total;
}

LadderActivationCache::LadderActivationCache(LadderCacheLayout layout,
    std::vector<std::int64_t> sourceLengths, std::vector<std::int64_t> targetLengths, LadderCacheKey key,
    LadderCacheOptions options, Log log)
    : m_layout(std::move(layout))
    , m_key(std::move(key))
    , m_options(std::move(options))
    , m_log(std::move(log))
{
    if (m_options.mode != "ram" && m_options.mode != "disk")
        throw Error("ladder cache: field cache: expected none, ram or disk, got '" + m_options.mode + "'");
    if (m_options.padding != "same" && m_options.padding != "any")
        throw Error(
            "ladder cache: field cache_padding: expected same or any, got '" + m_options.padding + "'");
    if (m_options.dtype != "fp32" && m_options.dtype != "bf16")
        throw Error("ladder cache: field cache_dtype: expected fp32 or bf16, got '" + m_options.dtype + "'");
    if (m_layout.empty())
        throw Error("ladder cache: field cache: this LST configuration reads nothing from the backbone, so "
                    "there is nothing to cache (set cache to none)");
    if (sourceLengths.size() != targetLengths.size())
        throw Error("ladder cache: source and target length lists differ in size");
    m_storageDtype = m_options.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
    m_elementSize = m_options.dtype == "bf16" ? 2 : 4;
    m_entries.resize(sourceLengths.size());
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < m_entries.size(); ++i) {
        if (sourceLengths[i] < 0 || targetLengths[i] < 0)
            throw Error("ladder cache: example " + std::to_string(i) + " has a negative length");
        auto& e = m_entries[i];
        e.offset = offset;
        e.sourceLength = sourceLengths[i];
        e.targetLength = targetLengths[i];
        // Entries start on 64-byte boundaries (aligned vector loads when they are copied).
        offset = roundUp(offset
                + static_cast<std::uint64_t>(m_layout.elementsFor(e.sourceLength, e.targetLength))
                    * static_cast<std::uint64_t>(m_elementSize),
            64);
    }
    m_dataBytes = offset;

    if (m_options.mode == "ram") {
        const auto available = availableMemory();
        if (available > 0 && m_dataBytes > available)
            throw Error("ladder cache: needs " + megabytes(m_dataBytes) + " of RAM but only "
                + megabytes(available) + " is available (use cache disk, cache_dtype bf16, or cache none)");
        m_ram = at::empty({ static_cast<std::int64_t>(std::max<std::uint64_t>(m_dataBytes, 1)) }, at::kByte);
        m_data = static_cast<char*>(m_ram.data_ptr());
    } else {
        openDisk();
    }
}

LadderActivationCache::~LadderActivationCache()
{
    if (m_map) {
        msync(m_map, m_mapBytes, MS_SYNC);
        munmap(m_map, m_mapBytes);
    }
    if (m_fd >= 0)
        ::close(m_fd);
}

std::string LadderActivationCache::describe() const
{
    std::ostringstream s;
    s << (m_options.mode == "ram" ? "RAM" : "disk") << ", " << m_options.dtype << ": "
      << megabytes(m_dataBytes) << " for " << m_entries.size() << " examples (";
    if (m_layout.joined)
        s << m_layout.decoderStored.size() << " decoder layer outputs over the joined sequence";
    else
        s << m_layout.encoderStored.size() << " encoder + " << m_layout.decoderStored.size()
          << " decoder layer outputs" << (m_layout.decoderFinal ? " + decoder final" : "");
    s << " of d " << m_layout.dModel << ")";
    if (!m_path.empty())
        s << " in " << m_path;
    return s.str();
}

std::size_t LadderActivationCache::storedCount() const
{
    return static_cast<std::size_t>(
        std::count_if(m_entries.begin(), m_entries.end(), [](const Entry& e) { return e.stored; }));
}

bool LadderActivationCache::contains(
    const std::vector<std::size_t>& examples, std::int64_t sourceLength, std::int64_t targetLength) const
{
    for (auto i : examples) {
        if (i >= m_entries.size() || !m_entries[i].stored)
            return false;
        const auto& e = m_entries[i];
        if (sourceLength >= 0 && (e.paddedSource != sourceLength || e.paddedTarget != targetLength))
            return false;
    }
    return true;
}

bool LadderActivationCache::usable(
    const std::vector<std::size_t>& examples, std::int64_t sourceLength, std::int64_t targetLength) const
{
    return m_options.padding == "same" ? contains(examples, sourceLength, targetLength) : contains(examples);
}

// ---------------------------------------------------------------------------------------------------
void LadderActivationCache::store(const std::vector<std::size_t>& examples,
    const LadderBackboneOutputs& outputs, const at::Tensor& attentionMask, const at::Tensor& labels)
{
    if (m_layout.joined)
        throw Error("ladder cache: store() of a decoder-only backbone's cache (storeJoined() is its own)");
    const auto rows = static_cast<std::int64_t>(examples.size());
    // Each row's real lengths: sources are left-aligned with mask ones, targets with labels != -100.
    const auto sourceLengths = attentionMask.sum(1).to(at::kCPU).to(at::kLong).contiguous();
    const auto targetLengths = (labels != -100).sum(1).to(at::kCPU).to(at::kLong).contiguous();
    if (sourceLengths.size(0) != rows || targetLengths.size(0) != rows)
        throw Error("ladder cache: a batch of " + std::to_string(rows) + " examples has "
            + std::to_string(sourceLengths.size(0)) + " rows");

    // The tensors of one example, in storage order, and their lengths.
    std::vector<std::pair<at::Tensor, bool>> parts; // (tensor, is a decoder tensor)
    for (auto l : m_layout.encoderStored)
        parts.emplace_back(outputs.encoder.at(static_cast<std::size_t>(l)), false);
    for (auto l : m_layout.decoderStored)
        parts.emplace_back(outputs.decoder.at(static_cast<std::size_t>(l)), true);
    if (m_layout.decoderFinal)
        parts.emplace_back(outputs.decoderFinal, true);
    for (const auto& [t, _] : parts)
        if (!t.defined() || t.dim() != 3 || t.size(0) != rows || t.size(2) != m_layout.dModel)
            throw Error("ladder cache: a backbone output to store is missing or has the wrong shape");
    noteValueDtype(parts.front().first.scalar_type());

    // One device-to-host copy per part, in the storage dtype.
    std::vector<at::Tensor> host;
    {
        at::NoGradGuard noGrad;
        for (const auto& [t, _] : parts)
            host.push_back(t.detach().to(at::kCPU, m_storageDtype).contiguous());
    }
    const auto* src = sourceLengths.data_ptr<std::int64_t>();
    const auto* tgt = targetLengths.data_ptr<std::int64_t>();
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto index = examples[static_cast<std::size_t>(r)];
        if (!claimEntry(index, attentionMask.size(1), labels.size(1), src[r], tgt[r]))
            continue;
        const auto& e = m_entries[index];
        char* out = entryData(e);
        for (std::size_t p = 0; p < parts.size(); ++p) {
            const auto length = parts[p].second ? e.targetLength : e.sourceLength;
            const auto bytes = static_cast<std::size_t>(length * m_layout.dModel * m_elementSize);
            const auto row = host[p][r];
            std::memcpy(out, row.data_ptr(), bytes); // the first `length` positions of the row
            out += bytes;
        }
        markStored(index);
    }
}

void LadderActivationCache::noteValueDtype(c10::ScalarType dtype)
{
    m_valueDtype = dtype;
    if (m_map) {
        // The dtype the values were computed in becomes known with the first stored batch.
        FileHeader h {};
        std::memcpy(&h, m_map, sizeof h);
        if (h.valueDtype != dtypeCode(m_valueDtype))
            writeHeader();
    } else {
        dtypeCode(m_valueDtype);
    }
}

bool LadderActivationCache::claimEntry(std::size_t index, std::int64_t paddedSource,
    std::int64_t paddedTarget, std::int64_t sourceLength, std::int64_t targetLength)
{
    if (index >= m_entries.size())
        throw Error("ladder cache: example " + std::to_string(index) + " is out of range ("
            + std::to_string(m_entries.size()) + " examples)");
    auto& e = m_entries[index];
    if (e.stored
        && (m_options.padding == "any"
            || (e.paddedSource == packLength(paddedSource) && e.paddedTarget == packLength(paddedTarget))))
        return false;
    e.paddedSource = packLength(paddedSource);
    e.paddedTarget = packLength(paddedTarget);
    if (m_map) // an entry being (re)written is not valid until markStored()
        reinterpret_cast<FileEntry*>(static_cast<char*>(m_map) + m_indexOffset)[index].stored = 0;
    if (sourceLength != e.sourceLength || targetLength != e.targetLength)
        throw Error("ladder cache: example " + std::to_string(index) + " has lengths "
            + std::to_string(sourceLength) + "/" + std::to_string(targetLength) + " in this batch but "
            + std::to_string(e.sourceLength) + "/" + std::to_string(e.targetLength)
            + " in the data the cache was made for");
    return true;
}

LadderBackboneOutputs LadderActivationCache::gather(const std::vector<std::size_t>& examples,
    std::int64_t sourceLength, std::int64_t targetLength, c10::Device device) const
{
    if (!contains(examples))
        throw Error("ladder cache: gather of an example that is not stored");
    if (m_layout.joined)
        throw Error("ladder cache: gather() of a decoder-only backbone's cache (gatherJoined() is its own)");
    const auto rows = static_cast<std::int64_t>(examples.size());
    const auto d = m_layout.dModel;
    const auto opts = at::TensorOptions().dtype(m_storageDtype);
    LadderBackboneOutputs out;
    out.encoder.resize(static_cast<std::size_t>(m_layout.encoderLayers));
    out.decoder.resize(static_cast<std::size_t>(m_layout.decoderLayers));
    std::vector<at::Tensor*> targets;
    std::vector<bool> isDecoder;
    std::vector<at::Tensor> padded;
    for (auto l : m_layout.encoderStored) {
        padded.push_back(at::zeros({ rows, sourceLength, d }, opts));
        targets.push_back(&out.encoder[static_cast<std::size_t>(l)]);
        isDecoder.push_back(false);
    }
    for (auto l : m_layout.decoderStored) {
        padded.push_back(at::zeros({ rows, targetLength, d }, opts));
        targets.push_back(&out.decoder[static_cast<std::size_t>(l)]);
        isDecoder.push_back(true);
    }
    if (m_layout.decoderFinal) {
        padded.push_back(at::zeros({ rows, targetLength, d }, opts));
        targets.push_back(&out.decoderFinal);
        isDecoder.push_back(true);
    }
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto& e = m_entries[examples[static_cast<std::size_t>(r)]];
        if (e.sourceLength > sourceLength || e.targetLength > targetLength)
            throw Error("ladder cache: an example is longer than the batch it is gathered into");
        const char* in = entryData(e);
        for (std::size_t p = 0; p < padded.size(); ++p) {
            const auto length = isDecoder[p] ? e.targetLength : e.sourceLength;
            const auto bytes = static_cast<std::size_t>(length * d * m_elementSize);
            std::memcpy(static_cast<char*>(padded[p][r].data_ptr()), in, bytes);
            in += bytes;
        }
    }
    for (std::size_t p = 0; p < padded.size(); ++p)
        *targets[p] = padded[p].to(device, m_valueDtype);
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Disk mode. The file: a 4 KiB header, the index (32 bytes per example), then the data from a page
// boundary. An entry is written data first, then its checksum and stored flag.
void LadderActivationCache::openDisk()
{
    if (m_options.dir.empty())
        throw Error("ladder cache: field cache_dir: a folder is needed for cache disk");
    if (::mkdir(m_options.dir.c_str(), 0755) != 0 && errno != EEXIST)
        throw Error("ladder cache: cannot create the folder " + m_options.dir + ": " + errnoText());
    std::ostringstream name;
    name << std::hex << std::setw(16) << std::setfill('0') << m_key.hash;
    m_path = m_options.dir + "/ladder-" + name.str() + ".lcache";
    m_indexOffset = kHeaderBytes;
    m_dataOffset = roundUp(m_indexOffset + kIndexEntryBytes * m_entries.size(), kPage);
    m_mapBytes = m_dataOffset + m_dataBytes;

    int fd = ::open(m_path.c_str(), O_RDWR);
    if (fd >= 0) {
        struct stat st { };
        std::string reason;
        if (::fstat(fd, &st) != 0)
            reason = "cannot stat: " + errnoText();
        else if (tryReuse(fd, static_cast<std::uint64_t>(st.st_size), reason)) {
            m_fd = fd;
            if (m_log)
                m_log("info",
                    "ladder cache: reusing " + m_path + " (" + std::to_string(m_reused) + " of "
                        + std::to_string(m_entries.size()) + " examples stored)");
            return;
        }
        ::close(fd);
        if (m_log)
            m_log("warning", "ladder cache: " + m_path + ": " + reason + "; rebuilding it");
        if (::unlink(m_path.c_str()) != 0)
            throw Error("ladder cache: " + m_path + ": cannot remove the invalid cache file: " + errnoText());
    }
    createFile();
}

bool LadderActivationCache::tryReuse(int fd, std::uint64_t fileSize, std::string& reason)
{
    if (fileSize != m_mapBytes) {
        reason = "its size is " + std::to_string(fileSize) + " bytes, expected " + std::to_string(m_mapBytes)
            + " (truncated or made for other data)";
        return false;
    }
    void* map = ::mmap(nullptr, m_mapBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        reason = "cannot map it: " + errnoText();
        return false;
    }
    FileHeader h {};
    std::memcpy(&h, map, sizeof h);
    const auto checksum = h.headerChecksum;
    h.headerChecksum = 0;
    auto fail = [&](const std::string& why) {
        ::munmap(map, m_mapBytes);
        reason = why;
        return false;
    };
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
        return fail("not a LadderBench ladder cache (bad magic)");
    if (hashBytes(&h, sizeof h) != checksum)
        return fail("the header checksum does not match (corrupt header)");
    if (h.version != kFormatVersion)
        return fail(
            "format version " + std::to_string(h.version) + ", expected " + std::to_string(kFormatVersion));
    if (h.keyHash != m_key.hash)
        return fail("it was made for another backbone, layer list, data or dtype");
    if (h.examples != m_entries.size() || h.indexOffset != m_indexOffset || h.dataOffset != m_dataOffset
        || h.totalBytes != m_mapBytes || h.storageDtype != dtypeCode(m_storageDtype) || h.valueDtype > 2)
        return fail("its header does not describe this data (examples, offsets or dtype)");

    auto* index = reinterpret_cast<FileEntry*>(static_cast<char*>(map) + m_indexOffset);
    for (std::size_t i = 0; i < m_entries.size(); ++i) {
        const auto& e = m_entries[i];
        const auto& f = index[i];
        if (f.offset != e.offset || f.sourceLength != e.sourceLength || f.targetLength != e.targetLength
            || f.stored > 1)
            return fail("index entry " + std::to_string(i) + " does not match the data (corrupt index)");
    }
    m_map = map;
    m_data = static_cast<char*>(map) + m_dataOffset;
    m_valueDtype = dtypeFromCode(h.valueDtype);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < m_entries.size(); ++i) {
        auto& e = m_entries[i];
        if (index[i].stored != 1)
            continue;
        e.paddedSource = index[i].paddedSource;
        e.paddedTarget = index[i].paddedTarget;
        if (entryChecksum(e) == index[i].checksum) {
            e.stored = true;
            ++m_reused;
        } else {
            ++bad;
            index[i].stored = 0;
        }
    }
    if (bad > 0 && m_log)
        m_log("warning",
            "ladder cache: " + m_path + ": " + std::to_string(bad)
                + " entries failed their checksum and will be computed again");
    return true;
}

void LadderActivationCache::createFile()
{
    struct statvfs fs { };
    if (::statvfs(m_options.dir.c_str(), &fs) == 0) {
        const auto free = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
        if (m_mapBytes > free)
            throw Error("ladder cache: needs " + megabytes(m_mapBytes) + " of disk in " + m_options.dir
                + " but only " + megabytes(free)
                + " is free (use cache_dtype bf16, another cache_dir, or cache none)");
    }
    const int fd = ::open(m_path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        throw Error("ladder cache: cannot create " + m_path + ": " + errnoText());
    // Preallocate: writing through a mapping into a sparse file on a full disk would raise SIGBUS.
    if (const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(m_mapBytes)); rc != 0) {
        ::close(fd);
        ::unlink(m_path.c_str());
        throw Error("ladder cache: cannot allocate " + megabytes(m_mapBytes) + " for " + m_path + ": "
            + std::strerror(rc));
    }
    void* map = ::mmap(nullptr, m_mapBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        const auto why = errnoText();
        ::close(fd);
        ::unlink(m_path.c_str());
        throw Error("ladder cache: cannot map " + m_path + ": " + why);
    }
    m_fd = fd;
    m_map = map;
    m_data = static_cast<char*>(map) + m_dataOffset;
    auto* index = reinterpret_cast<FileEntry*>(static_cast<char*>(map) + m_indexOffset);
    for (std::size_t i = 0; i < m_entries.size(); ++i) {
        const auto& e = m_entries[i];
        index[i] = FileEntry { e.offset, static_cast<std::uint32_t>(e.sourceLength),
            static_cast<std::uint32_t>(e.targetLength), 0, 0, 0, 0 };
    }
    writeHeader();
    if (m_log)
        m_log("info", "ladder cache: created " + m_path);
}

void LadderActivationCache::writeHeader()
{
    FileHeader h {};
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.version = kFormatVersion;
    h.storageDtype = dtypeCode(m_storageDtype);
    h.valueDtype = dtypeCode(m_valueDtype);
    h.keyHash = m_key.hash;
    h.examples = m_entries.size();
    h.indexOffset = m_indexOffset;
    h.dataOffset = m_dataOffset;
    h.totalBytes = m_mapBytes;
    h.headerChecksum = 0;
    const auto room = kHeaderBytes - sizeof h;
    h.descriptionBytes = static_cast<std::uint32_t>(std::min<std::size_t>(m_key.description.size(), room));
    h.headerChecksum = hashBytes(&h, sizeof h);
    // The checksum covers the struct with headerChecksum zero; store it after computing.
    auto* base = static_cast<char*>(m_map);
    std::memcpy(base, &h, sizeof h);
    std::memcpy(base + sizeof h, m_key.description.data(), h.descriptionBytes);
}

std::uint64_t LadderActivationCache::entryChecksum(const Entry& e) const
{
    const auto bytes
        = static_cast<std::size_t>(m_layout.elementsFor(e.sourceLength, e.targetLength) * m_elementSize);
    const auto seed = e.offset ^ (static_cast<std::uint64_t>(e.paddedSource) << 32)
        ^ (static_cast<std::uint64_t>(e.paddedTarget) << 48);
    return hashBytes(entryData(e), bytes, seed);
}

void LadderActivationCache::markStored(std::size_t example)
{
    auto& e = m_entries[example];
    e.stored = true;
    if (!m_map)
        return;
    auto* index = reinterpret_cast<FileEntry*>(static_cast<char*>(m_map) + m_indexOffset);
    index[example].paddedSource = static_cast<std::uint16_t>(e.paddedSource);
    index[example].paddedTarget = static_cast<std::uint16_t>(e.paddedTarget);
    index[example].checksum = entryChecksum(e);
    index[example].stored = 1;
}

void LadderActivationCache::flush()
{
    if (m_map)
        ::msync(m_map, m_mapBytes, MS_SYNC);
}

MethodOutput forwardWithCache(LadderMethod& method, const Seq2SeqBatch& batch,
    const std::vector<std::size_t>& examples, LadderActivationCache& cache)
{
    if (!batch.labels.defined())
        throw Error("ladder forward: labels are required");
    if (method.options().backboneTrainMode)
        throw Error("ladder: field cache: the activation cache needs the backbone in eval mode "
                    "(backbone_train_mode draws new dropout masks in the backbone every epoch)");
    auto& model = method.model();
    const auto decoderInputIds = model.backbone().shiftRight(batch.labels);
    MethodOutput out;
    if (cache.usable(examples, batch.inputIds.size(1), batch.labels.size(1))) {
        ++cache.hits;
        // Only the side network runs: the same operations as forward() on the stored backbone outputs.
        const auto cached
            = cache.gather(examples, batch.inputIds.size(1), batch.labels.size(1), batch.inputIds.device());
        const auto encoded = model.encode(batch.inputIds, batch.attentionMask, &cached);
        out.logits = model.logits(model.decode(decoderInputIds, encoded, nullptr, nullptr, &cached));
    } else {
        ++cache.misses;
        LadderBackboneOutputs computed;
        const auto encoded = model.encode(batch.inputIds, batch.attentionMask, nullptr, &computed);
        out.logits
            = model.logits(model.decode(decoderInputIds, encoded, nullptr, nullptr, nullptr, &computed));
        cache.store(examples, computed, batch.attentionMask, batch.labels);
    }
    out.loss = Backbone::crossEntropy(out.logits, batch.labels);
    return out;
}

} // namespace ladder
