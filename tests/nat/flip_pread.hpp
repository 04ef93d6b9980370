// flip_holder's pread interposer (flip_pread.cpp).
#pragma once

#include <cstdint>

namespace flip {
// From now on, every `every`-th chunk read of the file at `path` (same device and inode) is served
// with one bit flipped. Call it after the file's tree is built.
void arm(const char* path, std::uint64_t every);
std::uint64_t chunks_read();     // chunk reads of that file since arm()
std::uint64_t chunks_flipped();  // of those, the ones flipped
}  // namespace flip
