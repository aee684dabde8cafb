#include "data/VisualFeatures.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "model/Safetensors.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "VisualFeatures.cpp assumes a little-endian host (safetensors stores little-endian data)"
#endif

namespace ladder {
namespace {

constexpr std::size_t kHeaderLengthBytes = 8;
constexpr std::size_t kMaxIdInMessage = 200;
// VL-T5's data loaders assert boxes within [0, 1] to this tolerance.
constexpr double kBoxTolerance = 1e-5;

// The header limit: readSafetensorsHeader's default, 100 MiB, the reference implementation's own limit (a
// larger header is one Python's safetensors would not load either). A COCO-sized file, ~200,000 images with
// a #boxes tensor each, has a header of about 45 MB.
SafetensorsLimits featureFileLimits()
{
    return SafetensorsLimits {};
}

[[noreturn]] void fail(const std::string& path, const std::string& reason)
{
    throw Error(path + ": " + reason);
}

std::string quoted(const std::string& id)
{
    return "'" + printable(id, true, kMaxIdInMessage) + "'";
}

// 5000 -> "5,000".
std::string grouped(std::int64_t n)
{
    std::string digits = std::to_string(n);
    std::string out;
    const std::size_t first = digits.size() % 3 == 0 ? 3 : digits.size() % 3;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i >= first && (i - first) % 3 == 0 && i != 0)
            out += ',';
        out += digits[i];
    }
    return out;
}

std::string shapeString(const std::vector<std::int64_t>& shape)
{
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

bool endsWith(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct FloatDtype {
    const char* name;
    at::ScalarType type;
    std::uint64_t size;
};

constexpr FloatDtype kFloatDtypes[] = {
    { "F32", at::kFloat, 4 },
    { "F16", at::kHalf, 2 },
    { "BF16", at::kBFloat16, 2 },
};

const FloatDtype* floatDtype(const std::string& name)
{
    for (const auto& d : kFloatDtypes)
        if (name == d.name)
            return &d;
    return nullptr;
}

const FloatDtype* floatDtype(at::ScalarType type)
{
    for (const auto& d : kFloatDtypes)
        if (type == d.type)
            return &d;
    return nullptr;
}

// One tensor's place in the data section.
struct Span {
    const FloatDtype* dtype = nullptr;
    std::uint64_t begin = 0; // offset in the data section
    std::uint64_t end = 0;
};

// Closes a descriptor unless released.
class FdGuard {
public:
    explicit FdGuard(int fd)
        : m_fd(fd)
    {
    }
    ~FdGuard()
    {
        if (m_fd >= 0)
            ::close(m_fd);
    }
    FdGuard(const FdGuard&) = delete;
    FdGuard& operator=(const FdGuard&) = delete;
    int get() const { return m_fd; }
    int release()
    {
        const int fd = m_fd;
        m_fd = -1;
        return fd;
    }

private:
    int m_fd;
};

// Reads exactly n bytes at offset, or throws naming what was being read.
void preadExactly(int fd, const std::string& path, std::uint64_t offset, char* dst, std::uint64_t n,
    const std::string& what)
{
    while (n > 0) {
        const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, 1u << 30));
        const ssize_t got = ::pread(fd, dst, chunk, static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR)
                continue;
            fail(path, "cannot read " + what + ": " + std::strerror(errno));
        }
        if (got == 0)
            fail(path, "file ended early while reading " + what + " (was it truncated after it was opened?)");
        dst += got;
        offset += static_cast<std::uint64_t>(got);
        n -= static_cast<std::uint64_t>(got);
    }
}

// Where the first non-finite value of t [rows, cols] (float32) is, as "row R, column C".
std::string firstNonFinite(const at::Tensor& t)
{
    const at::Tensor bad = at::nonzero(at::logical_not(at::isfinite(t)));
    if (bad.size(0) == 0)
        return {};
    const auto rc = bad[0];
    return "row " + std::to_string(rc[0].item<std::int64_t>()) + ", column "
        + std::to_string(rc[1].item<std::int64_t>());
}

} // namespace

struct VisualFeatureFile::Impl {
    struct Image {
        Span features;
        bool hasBoxes = false;
        Span boxes;
    };

    ~Impl()
    {
        if (fd >= 0)
            ::close(fd);
    }

    VisualFeatureInfo info;
    int fd = -1;
    std::uint64_t dataStart = 0; // absolute offset of the data section
    std::map<std::string, Image> images;

    at::Tensor readSpan(const std::string& imageId, const Span& span, std::int64_t rows, std::int64_t cols,
        const char* what) const
    {
        at::Tensor t = at::empty({ rows, cols }, at::TensorOptions().dtype(span.dtype->type));
        const std::uint64_t n = span.end - span.begin;
        if (n != static_cast<std::uint64_t>(t.nbytes()))
            fail(info.path, "image " + quoted(imageId) + ": " + what + " span the wrong number of bytes");
        preadExactly(fd, info.path, dataStart + span.begin, static_cast<char*>(t.data_ptr()), n,
            std::string(what) + " of image " + quoted(imageId));
        return span.dtype->type == at::kFloat ? t : t.to(at::kFloat);
    }
};

VisualFeatureFile::VisualFeatureFile(const std::string& path)
{
    const SafetensorsLimits limits = featureFileLimits();
    // Every check of a stranger's safetensors file (header length, JSON, dtypes, offsets inside the data
    // section, no overlaps, shape x element size = span) happens here; the offsets are then read below from
    // the same bytes, through the descriptor read() will use.
    const auto entries = readSafetensorsHeader(path, limits);

    auto impl = std::make_shared<Impl>();
    impl->info.path = path;

    // Which tensors are images, which are boxes, their dtypes and shapes.
    const std::string suffix = kVisualBoxesSuffix;
    const std::string* firstImage = nullptr;
    std::vector<std::int64_t> firstShape;
    std::set<std::string> dtypes;
    for (const auto& [name, entry] : entries) {
        const FloatDtype* dtype = floatDtype(entry.dtype);
        if (!dtype)
            fail(path,
                "tensor " + quoted(name) + ": dtype " + entry.dtype
                    + " is not a float type (visual features and boxes are F32, F16 or BF16)");
        if (entry.shape.size() != 2)
            fail(path,
                "tensor " + quoted(name) + ": shape " + shapeString(entry.shape)
                    + " is not 2-D (an image's features are [boxes, dim], its boxes [boxes, 4])");
        if (endsWith(name, suffix))
            continue;
        if (entry.shape[0] == 0 || entry.shape[1] == 0)
            fail(path,
                "tensor " + quoted(name) + ": shape " + shapeString(entry.shape)
                    + " is empty (an image needs at least one box and a width of at least 1)");
        if (!firstImage) {
            firstImage = &name;
            firstShape = entry.shape;
        } else if (entry.shape != firstShape) {
            fail(path,
                "image " + quoted(name) + " has features " + shapeString(entry.shape) + " but image "
                    + quoted(*firstImage) + " has " + shapeString(firstShape)
                    + " (every image of a file must have the same [boxes, dim])");
        }
        dtypes.insert(dtype->name);
        impl->images[name] = Impl::Image {};
    }
    if (impl->images.empty())
        fail(path,
            "holds no image features (expected one tensor [boxes, dim] per image id"
                + std::string(entries.empty() ? ", and the file holds no tensors)" : ")"));
    impl->info.images = static_cast<std::int64_t>(impl->images.size());
    impl->info.boxes = firstShape[0];
    impl->info.dim = firstShape[1];
    for (const auto& d : dtypes)
        impl->info.dtype += (impl->info.dtype.empty() ? "" : "+") + d;
    for (const auto& [name, entry] : entries) {
        if (!endsWith(name, suffix))
            continue;
        const std::string image = name.substr(0, name.size() - suffix.size());
        if (!impl->images.count(image))
            fail(path,
                "tensor " + quoted(name) + " holds boxes but the file has no image " + quoted(image)
                    + " (a #boxes tensor goes with the image tensor of its name before the '#boxes')");
        if (entry.shape[0] != impl->info.boxes || entry.shape[1] != 4)
            fail(path,
                "tensor " + quoted(name) + ": shape " + shapeString(entry.shape) + " but image "
                    + quoted(image) + " has " + std::to_string(impl->info.boxes) + " boxes: expected ["
                    + std::to_string(impl->info.boxes) + ", 4]");
        impl->images[image].hasBoxes = true;
    }

    // The offsets (and the metadata), from the descriptor read() will use.
    FdGuard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0)
        fail(path, "cannot open file: " + std::string(std::strerror(errno)));
    struct stat st { };
    if (::fstat(fd.get(), &st) != 0)
        fail(path, "cannot read the file size: " + std::string(std::strerror(errno)));
    const auto fileSize = static_cast<std::uint64_t>(st.st_size);
    const std::string changed = " (was the file replaced while it was opened?)";
    if (fileSize < kHeaderLengthBytes)
        fail(path, "file is too short for the header length" + changed);
    unsigned char lengthBytes[kHeaderLengthBytes];
    preadExactly(
        fd.get(), path, 0, reinterpret_cast<char*>(lengthBytes), kHeaderLengthBytes, "the header length");
    std::uint64_t headerSize = 0;
    for (std::size_t i = 0; i < kHeaderLengthBytes; ++i)
        headerSize |= static_cast<std::uint64_t>(lengthBytes[i]) << (8 * i);
    if (headerSize > limits.maxHeaderBytes || headerSize > fileSize - kHeaderLengthBytes)
        fail(path, "header length " + std::to_string(headerSize) + " is out of bounds" + changed);
    std::string text(headerSize, '\0');
    preadExactly(fd.get(), path, kHeaderLengthBytes, text.data(), headerSize, "the header");
    impl->dataStart = kHeaderLengthBytes + headerSize;
    const std::uint64_t dataSize = fileSize - impl->dataStart;
    {
        const nlohmann::json root = parseJson(text, path);
        text.clear();
        text.shrink_to_fit();
        if (!root.is_object())
            fail(path, "header is not a JSON object" + changed);
        std::size_t seen = 0;
        for (auto it = root.begin(); it != root.end(); ++it) {
            if (it.key() == "__metadata__") {
                if (!it->is_object())
                    fail(path, "\"__metadata__\" is not a JSON object" + changed);
                const auto encoder = it->find("encoder");
                if (encoder != it->end() && encoder->is_string())
                    impl->info.encoder = encoder->get<std::string>();
                const auto format = it->find("format");
                if (format != it->end() && format->is_string())
                    impl->info.format = format->get<std::string>();
                continue;
            }
            const auto entry = entries.find(it.key());
            if (entry == entries.end())
                fail(path, "tensor " + quoted(it.key()) + " appeared" + changed);
            ++seen;
            const auto& v = *it;
            const auto dtype = v.find("dtype");
            const auto shape = v.find("shape");
            const auto offsets = v.find("data_offsets");
            if (!v.is_object() || dtype == v.end() || shape == v.end() || offsets == v.end()
                || *dtype != entry->second.dtype || *shape != nlohmann::json(entry->second.shape)
                || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned()
                || !(*offsets)[1].is_number_unsigned())
                fail(path, "tensor " + quoted(it.key()) + " changed" + changed);
            Span span;
            span.dtype = floatDtype(entry->second.dtype);
            span.begin = (*offsets)[0].get<std::uint64_t>();
            span.end = (*offsets)[1].get<std::uint64_t>();
            const std::uint64_t numel = static_cast<std::uint64_t>(entry->second.shape[0])
                * static_cast<std::uint64_t>(entry->second.shape[1]);
            if (span.begin > span.end || span.end > dataSize
                || span.end - span.begin != numel * span.dtype->size)
                fail(path, "tensor " + quoted(it.key()) + ": data_offsets out of bounds" + changed);
            if (endsWith(it.key(), suffix)) {
                auto& image = impl->images.at(it.key().substr(0, it.key().size() - suffix.size()));
                image.boxes = span;
            } else {
                impl->images.at(it.key()).features = span;
            }
        }
        if (seen != entries.size())
            fail(path, "tensors disappeared" + changed);
    }
    impl->fd = fd.release();
    m_impl = std::move(impl);
}

const VisualFeatureInfo& VisualFeatureFile::info() const
{
    return m_impl->info;
}

bool VisualFeatureFile::contains(const std::string& imageId) const
{
    return m_impl->images.count(imageId) != 0;
}

std::vector<std::string> VisualFeatureFile::imageIds() const
{
    std::vector<std::string> ids;
    ids.reserve(m_impl->images.size());
    for (const auto& kv : m_impl->images)
        ids.push_back(kv.first);
    return ids;
}

VisualFeatures VisualFeatureFile::read(const std::string& imageId) const
{
    const Impl& impl = *m_impl;
    const std::string& path = impl.info.path;
    const auto it = impl.images.find(imageId);
    if (it == impl.images.end()) {
        std::string examples;
        int shown = 0;
        for (auto e = impl.images.begin(); e != impl.images.end() && shown < 3; ++e, ++shown)
            examples += (shown ? ", " : "") + quoted(e->first);
        const std::int64_t n = impl.info.images;
        fail(path,
            "no features for image " + quoted(imageId) + " (the file holds " + grouped(n)
                + (n == 1 ? " image, " : " images, e.g. ") + examples + ")");
    }
    const auto& image = it->second;
    VisualFeatures out;
    out.features = impl.readSpan(imageId, image.features, impl.info.boxes, impl.info.dim, "the features");
    const std::string where = firstNonFinite(out.features);
    if (!where.empty())
        fail(path,
            "image " + quoted(imageId) + ": the features hold NaN or infinite values (first at " + where
                + ")");
    if (image.hasBoxes) {
        out.boxes = impl.readSpan(imageId, image.boxes, impl.info.boxes, 4, "the boxes");
        const std::string bad = firstNonFinite(out.boxes);
        if (!bad.empty())
            fail(path,
                "image " + quoted(imageId) + ": the boxes hold NaN or infinite values (first at " + bad
                    + ")");
        const double lo = out.boxes.min().item<double>();
        const double hi = out.boxes.max().item<double>();
        if (lo < -kBoxTolerance || hi > 1 + kBoxTolerance)
            fail(path,
                "image " + quoted(imageId) + ": boxes range over [" + std::to_string(lo) + ", "
                    + std::to_string(hi) + "]; boxes are (x1, x2, y1, y2) normalised to [0, 1]");
    } else {
        out.boxes = at::zeros({ impl.info.boxes, 4 }, at::kFloat);
    }
    return out;
}

void VisualFeatureFile::expectDim(std::int64_t dim) const
{
    if (dim != m_impl->info.dim)
        fail(m_impl->info.path,
            "features are " + std::to_string(m_impl->info.dim) + " wide but the run's visual_dim is "
                + std::to_string(dim));
}

namespace {

// The side of a square count (49 -> 7), or 0 when n is not a square.
std::int64_t squareSide(std::int64_t n)
{
    if (n <= 0)
        return 0;
    auto s = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
    while (s * s > n)
        --s;
    while ((s + 1) * (s + 1) <= n)
        ++s;
    return s * s == n ? s : 0;
}

} // namespace

at::Tensor VisualFeatureFile::reduceTokens(const at::Tensor& features, std::int64_t tokens)
{
    if (!features.defined() || (features.dim() != 2 && features.dim() != 3))
        throw Error("visual features: reduceTokens expects features [boxes, dim] or [batch, boxes, dim], got "
            + (features.defined() ? shapeString(features.sizes().vec())
                                  : std::string("an undefined tensor")));
    const std::int64_t boxes = features.size(-2);
    if (boxes == tokens)
        return features;
    const std::int64_t from = squareSide(boxes);
    const std::int64_t to = squareSide(tokens);
    if (from == 0 || to == 0 || tokens > boxes)
        throw Error("visual features: cannot reduce " + std::to_string(boxes) + " boxes to "
            + std::to_string(tokens)
            + " visual tokens (only a square grid of boxes, e.g. 49 = 7x7, to a smaller square number of "
              "tokens, e.g. 36 = 6x6, or equal counts)");
    const bool batched = features.dim() == 3;
    const at::Tensor x = batched ? features : features.unsqueeze(0);
    const std::int64_t batch = x.size(0);
    const std::int64_t dim = x.size(2);
    // VL-T5's Downsample.downsample_inputs: [B, L, dim] -> [B, dim, s, s] -> AdaptiveMaxPool2d -> [B, t*t,
    // dim].
    const at::Tensor grid = x.permute({ 0, 2, 1 }).reshape({ batch, dim, from, from });
    const at::Tensor pooled = std::get<0>(at::adaptive_max_pool2d(grid, { to, to }));
    at::Tensor out = pooled.reshape({ batch, dim, tokens }).permute({ 0, 2, 1 }).contiguous();
    return batched ? out : out.squeeze(0);
}

at::Tensor VisualFeatureFile::reduceBoxes(const at::Tensor& boxes, std::int64_t tokens)
{
    if (!boxes.defined() || (boxes.dim() != 2 && boxes.dim() != 3) || boxes.size(-1) != 4)
        throw Error("visual features: reduceBoxes expects boxes [boxes, 4] or [batch, boxes, 4], got "
            + (boxes.defined() ? shapeString(boxes.sizes().vec()) : std::string("an undefined tensor")));
    if (tokens < 0 || tokens > boxes.size(-2))
        throw Error("visual features: cannot reduce " + std::to_string(boxes.size(-2)) + " boxes to "
            + std::to_string(tokens));
    return boxes.narrow(-2, 0, tokens);
}

void writeVisualFeatureFile(const std::string& path,
    const std::vector<std::pair<std::string, VisualFeatures>>& images, const std::string& encoder)
{
    if (images.empty())
        fail(path, "no images to write");
    const std::string suffix = kVisualBoxesSuffix;
    TensorMap tensors;
    std::vector<std::int64_t> shape;
    const std::string* first = nullptr;
    for (const auto& [id, image] : images) {
        if (id.empty() || id == "__metadata__" || endsWith(id, suffix))
            fail(path,
                "image id " + quoted(id)
                    + " cannot be written (empty, \"__metadata__\" or ending in \"#boxes\")");
        if (tensors.count(id))
            fail(path, "image " + quoted(id) + " appears twice");
        const at::Tensor& f = image.features;
        if (!f.defined() || f.dim() != 2 || f.size(0) == 0 || f.size(1) == 0)
            fail(path,
                "image " + quoted(id) + ": features must be a non-empty [boxes, dim] tensor, got "
                    + (f.defined() ? shapeString(f.sizes().vec()) : std::string("an undefined tensor")));
        if (!floatDtype(f.scalar_type()))
            fail(path,
                "image " + quoted(id) + ": dtype " + c10::toString(f.scalar_type())
                    + " cannot be written (F32, F16 or BF16)");
        if (!first) {
            first = &id;
            shape = f.sizes().vec();
        } else if (f.sizes().vec() != shape) {
            fail(path,
                "image " + quoted(id) + " has features " + shapeString(f.sizes().vec()) + " but image "
                    + quoted(*first) + " has " + shapeString(shape)
                    + " (every image of a file must have the same [boxes, dim])");
        }
        const at::Tensor cpu = f.detach().to(at::kCPU);
        if (!at::isfinite(cpu.to(at::kFloat)).all().item<bool>())
            fail(path, "image " + quoted(id) + ": the features hold NaN or infinite values");
        tensors.emplace(id, cpu.contiguous());
        if (image.boxes.defined()) {
            const at::Tensor& b = image.boxes;
            if (b.dim() != 2 || b.size(0) != shape[0] || b.size(1) != 4
                || !at::isFloatingType(b.scalar_type()))
                fail(path,
                    "image " + quoted(id) + ": boxes " + shapeString(b.sizes().vec()) + " of "
                        + c10::toString(b.scalar_type()) + ", expected float [" + std::to_string(shape[0])
                        + ", 4]");
            const at::Tensor bf = b.detach().to(at::kCPU, at::kFloat).contiguous();
            if (!at::isfinite(bf).all().item<bool>() || bf.min().item<double>() < -kBoxTolerance
                || bf.max().item<double>() > 1 + kBoxTolerance)
                fail(path, "image " + quoted(id) + ": boxes must be finite and within [0, 1]");
            tensors.emplace(id + suffix, bf);
        }
    }
    writeSafetensors(path, tensors, { { "encoder", encoder }, { "format", kVisualFeaturesFormat } });
}

} // namespace ladder
