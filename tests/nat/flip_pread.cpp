// The bit flipper of flip_holder (tests only): this executable's own pread/pread64, which every
// pread in the process (worker::ModelShare's disk pool among them) resolves to. They read with the
// pread64 system call; once armed, a read of the shared file that starts a chunk (offset a multiple
// of 1 MiB) counts as one chunk served, and every Nth such chunk gets one bit flipped in its middle
// byte. The Merkle tree was built before arming (or came from the root cache), so the proofs sent
// with the chunks stay the honest ones and only the data lies.
// No <unistd.h> here: it declares pread/pread64 itself (a redirect under _FILE_OFFSET_BITS=64).
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "flip_pread.hpp"

extern "C" long syscall(long number, ...) noexcept;

namespace {

std::atomic<bool> g_armed{false};
std::atomic<std::uint64_t> g_dev{0}, g_ino{0}, g_every{1}, g_reads{0}, g_flipped{0};
constexpr std::uint64_t kChunk = 1 << 20;  // core::model::kChunkBytes

ssize_t flip_pread(int fd, void* buf, std::size_t n, std::int64_t off) {
  const long got = syscall(SYS_pread64, fd, buf, n, off);
  if (got <= 0 || !g_armed.load(std::memory_order_acquire) || off % static_cast<std::int64_t>(kChunk) != 0) return got;
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_dev != g_dev.load() || st.st_ino != g_ino.load()) return got;
  const std::uint64_t k = g_reads.fetch_add(1) + 1;  // this read is the k-th chunk served
  if (k % g_every.load() == 0) {
    static_cast<std::uint8_t*>(buf)[got / 2] ^= 0x10;
    g_flipped.fetch_add(1);
  }
  return got;
}

}  // namespace

extern "C" ssize_t pread(int fd, void* buf, std::size_t n, off_t off) { return flip_pread(fd, buf, n, off); }
extern "C" ssize_t pread64(int fd, void* buf, std::size_t n, off_t off) { return flip_pread(fd, buf, n, off); }

namespace flip {

void arm(const char* path, std::uint64_t every) {
  struct stat st {};
  if (stat(path, &st) != 0) return;
  g_dev = st.st_dev;
  g_ino = st.st_ino;
  g_every = every == 0 ? 1 : every;
  g_armed.store(true, std::memory_order_release);
}

std::uint64_t chunks_read() { return g_reads.load(); }
std::uint64_t chunks_flipped() { return g_flipped.load(); }

}  // namespace flip
