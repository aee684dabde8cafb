#include "store/FileHash.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include <openssl/evp.h>

#include "util/Error.h"

namespace ladder {
namespace {
std::string hexOf(const unsigned char* hash, unsigned int length)
{
    static const char* hex = "0123456789abcdef";
    std::string out;
    out.reserve(2 * length);
    for (unsigned int i = 0; i < length; ++i) {
        out += hex[hash[i] >> 4];
        out += hex[hash[i] & 0xf];
    }
    return out;
}
} // namespace

FileDigest hashFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error("cannot read " + path + ": " + std::strerror(errno));
    const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1)
        throw Error("hashing " + path + ": OpenSSL could not start SHA-256");
    std::vector<char> buffer(std::size_t(1) << 20);
    FileDigest digest;
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        const std::streamsize got = in.gcount();
        if (got > 0) {
            if (EVP_DigestUpdate(context.get(), buffer.data(), static_cast<std::size_t>(got)) != 1)
                throw Error("hashing " + path + ": OpenSSL's SHA-256 failed");
            digest.bytes += got;
        }
    }
    if (in.bad())
        throw Error("reading " + path + ": " + std::strerror(errno));
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(context.get(), hash, &length) != 1)
        throw Error("hashing " + path + ": OpenSSL's SHA-256 failed");
    digest.sha256 = hexOf(hash, length);
    return digest;
}

std::string sha256Hex(const std::string& bytes)
{
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(bytes.data(), bytes.size(), hash, &length, EVP_sha256(), nullptr) != 1)
        throw Error("OpenSSL's SHA-256 failed");
    return hexOf(hash, length);
}

} // namespace ladder
