#pragma once

#include <cstdint>
#include <string>

namespace ladder {

// The central directory of a zip archive (pytorch_model.bin), checked before LibTorch's reader opens it:
// LibTorch allocates each record at the size the directory claims, so a 2 KB file that claims a 4 GB
// record made it allocate 4 GB (found by fuzz_torchbin; docs/RELIABILITY.md). Every record must lie inside
// the file: a stored record's size equals its stored bytes, a deflated one expands at most as deflate can
// (1,032 to 1), and no other compression is accepted. ZIP64 records are read. Throws ladder::Error
// "PATH: not a PyTorch checkpoint: ..." naming the record.
void checkZipDirectory(const std::string& path, std::uint64_t fileSize);

} // namespace ladder
