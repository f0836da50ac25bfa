#include "tensor/storage.hpp"

#include "tensor/device_kernels.hpp"
#include "tensor/host_block_cache.hpp"

#include <malloc.h>
#include <sanitizer/asan_interface.h>  // ASAN_(UN)POISON_MEMORY_REGION: no-ops unless built with ASan
#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dtensor {

namespace {

constexpr size_t kAlign = 64;

// Freed host blocks of 128 KiB and more are kept for reuse. glibc hands such allocations to mmap
// (its default threshold) or trims them off the heap top, so every new one arrives as fresh pages
// the kernel must fault in and zero: adding two 64 MiB f32 tensors took 64 ms with new outputs
// against 2 ms with a reused one, and a training step's activations and gradients, mostly below
// 1 MiB in make bench-train, are allocated again every step. Tensors of one shape are allocated
// again and again (every redistribute, every layer, every step), so blocks are matched by exact
// rounded size. The cache holds at most kMaxCachedBytes; beyond that blocks are freed.
class HostBlockCache {
 public:
  static constexpr size_t kMinCachedBytes = size_t(128) << 10;
  static constexpr size_t kMaxCachedBytes = size_t(1) << 30;

  void* take(size_t bytes) {
    std::lock_guard lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= bytes;
    ASAN_UNPOISON_MEMORY_REGION(p, bytes);
    return p;
  }

  // Keeps the block unless the cache is full; returns false when the caller must free it. Under
  // AddressSanitizer a kept block is poisoned until taken again, so that a use of a released
  // storage fails as a use after free would, instead of reading another tensor's data.
  bool give(void* p, size_t bytes) {
    std::lock_guard lock(mutex_);
    if (cached_bytes_ + bytes > kMaxCachedBytes) return false;
    ASAN_POISON_MEMORY_REGION(p, bytes);
    free_[bytes].push_back(p);
    cached_bytes_ += bytes;
    return true;
  }

  size_t release_all() {
    std::lock_guard lock(mutex_);
    for (auto& [bytes, blocks] : free_) {
      for (void* p : blocks) {
        ASAN_UNPOISON_MEMORY_REGION(p, bytes);
        std::free(p);
      }
    }
    free_.clear();
    return std::exchange(cached_bytes_, 0);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

HostBlockCache& host_cache() {
  // Never destroyed: storages released during static destruction may still return blocks.
  static auto* cache = new HostBlockCache();
  return *cache;
}

// Blocks of 2 MiB and more are 2 MiB aligned and asked to be backed by transparent huge pages:
// fewer TLB misses for the streaming loops of collectives and kernels (the chunked all_reduce
// measured ~1.5x faster at 64 MiB with them). Advice only; where THP is off nothing changes.
constexpr size_t kHugePage = size_t(2) << 20;

void* host_allocate(size_t rounded) {
  if (rounded >= HostBlockCache::kMinCachedBytes) {
    if (void* p = host_cache().take(rounded)) return p;
  }
  if (rounded < kHugePage) return std::aligned_alloc(kAlign, rounded);
  void* p = std::aligned_alloc(kHugePage, (rounded + kHugePage - 1) / kHugePage * kHugePage);
  if (p != nullptr) madvise(p, rounded, MADV_HUGEPAGE);
  return p;
}

void host_release(void* p, size_t rounded) {
  if (rounded >= HostBlockCache::kMinCachedBytes && host_cache().give(p, rounded)) return;
  std::free(p);
}

}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  if (!device.is_cpu()) return device_kernels(device, "Storage::allocate").allocate(nbytes, device);
  size_t rounded = (nbytes + kAlign - 1) / kAlign * kAlign;
  void* data = rounded == 0 ? nullptr : host_allocate(rounded);
  check<Error>(rounded == 0 || data != nullptr, "Storage::allocate", "out of memory allocating {} bytes", nbytes);
  // The rounding's padding belongs to no tensor: under AddressSanitizer an access there fails.
  if (data != nullptr) ASAN_POISON_MEMORY_REGION(static_cast<char*>(data) + nbytes, rounded - nbytes);
  return std::make_shared<Storage>(data, nbytes, device, [rounded](void* p) { host_release(p, rounded); });
}

size_t release_cached_host_blocks() {
  const size_t bytes = host_cache().release_all();
  // Blocks glibc placed on its heap (below its dynamic mmap threshold) return to the system only
  // when the heap gives back its free pages.
  malloc_trim(0);
  return bytes;
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t nbytes, Device device, Deleter deleter) {
  return std::make_shared<Storage>(data, nbytes, device, std::move(deleter));
}

Storage::Storage(void* data, size_t nbytes, Device device, Deleter deleter)
    : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}

Storage::~Storage() {
  if (deleter_ && data_ != nullptr) deleter_(data_);
}

}  // namespace dtensor
