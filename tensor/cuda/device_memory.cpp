#include "tensor/cuda/device_memory.hpp"

#include "tensor/cuda/cuda_check.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace dtensor::cuda {

namespace {

// Size classes: multiples of 512 bytes below 1 MiB; above, four classes per power of two
// (1, 1.25, 1.5, 1.75 x 2^k), so a block wastes at most a fifth of itself and the tensors of
// one shape always meet the same class.
size_t size_class(size_t nbytes) {
  constexpr size_t kSmallStep = 512;
  constexpr size_t kSmallLimit = size_t(1) << 20;
  if (nbytes <= kSmallLimit) return (std::max<size_t>(nbytes, 1) + kSmallStep - 1) / kSmallStep * kSmallStep;
  size_t power = size_t(1) << (63 - __builtin_clzll(nbytes - 1));  // largest 2^k below nbytes
  size_t step = power / 4;
  return (nbytes + step - 1) / step * step;
}

struct DeviceState {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // size class -> blocks
  AllocatorStats stats;
  cudaStream_t own_stream = nullptr;           // made on first use, under the mutex
  std::atomic<cudaStream_t> current{nullptr};  // read without the mutex: every op asks for it
};

class CachingAllocator {
 public:
  CachingAllocator() {
    const int n = device_count();
    devices_.reserve(size_t(n));
    for (int i = 0; i < n; ++i) devices_.push_back(std::make_unique<DeviceState>());
  }

  DeviceState& state(int device, const char* op) {
    check<DeviceError>(device >= 0 && size_t(device) < devices_.size(), op,
                       "device cuda:{} does not exist ({} CUDA devices visible)", device, devices_.size());
    return *devices_[size_t(device)];
  }

  void* allocate(int device, size_t bytes) {
    DeviceState& s = state(device, "Storage::allocate");
    {
      std::lock_guard lock(s.mutex);
      auto it = s.free_blocks.find(bytes);
      if (it != s.free_blocks.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        s.stats.cache_hits += 1;
        s.stats.bytes_cached -= bytes;
        s.stats.bytes_in_use += bytes;
        return p;
      }
    }
    DeviceGuard guard(device);
    void* p = nullptr;
    cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
      // Cached blocks of other sizes may be what is missing: give them back and try once more.
      (void)cudaGetLastError();
      release_cached(s);
      status = cudaMalloc(&p, bytes);
    }
    cuda_check(status, "cudaMalloc", "{} bytes on cuda:{}", bytes, device);
    std::lock_guard lock(s.mutex);
    s.stats.device_mallocs += 1;
    s.stats.bytes_in_use += bytes;
    return p;
  }

  void release(int device, void* p, size_t bytes) {
    DeviceState& s = *devices_[size_t(device)];
    std::lock_guard lock(s.mutex);
    s.free_blocks[bytes].push_back(p);
    s.stats.bytes_in_use -= bytes;
    s.stats.bytes_cached += bytes;
  }

  void release_cached(DeviceState& s) {
    std::lock_guard lock(s.mutex);
    for (auto& [bytes, blocks] : s.free_blocks) {
      for (void* p : blocks) (void)cudaFree(p);  // errors here cannot be acted on
      s.stats.bytes_cached -= bytes * blocks.size();
      blocks.clear();
    }
  }

 private:
  std::vector<std::unique_ptr<DeviceState>> devices_;
};

CachingAllocator& allocator() {
  // Never destroyed: storages released during static destruction still return their blocks.
  static auto* instance = new CachingAllocator();
  return *instance;
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: clear the sticky error, report none
    return 0;
  }
  return n;
}

void check_device_exists(Device device, const char* op) {
  static const int visible = device_count();  // GPUs do not appear while a process runs
  check<DeviceError>(device.type == DeviceType::CUDA && device.index >= 0 && device.index < visible, op,
                     "{} does not exist ({} CUDA devices visible)", device, visible);
}

std::shared_ptr<Storage> allocate_storage(size_t nbytes, Device device) {
  const int index = device.index;
  if (nbytes == 0) return Storage::wrap(nullptr, 0, device, {});
  const size_t bytes = size_class(nbytes);
  void* p = allocator().allocate(index, bytes);
  return Storage::wrap(p, nbytes, device, [index, bytes](void* block) { allocator().release(index, block, bytes); });
}

AllocatorStats allocator_stats(int device) {
  DeviceState& s = allocator().state(device, "allocator_stats");
  std::lock_guard lock(s.mutex);
  return s.stats;
}

void empty_cache(int device) { allocator().release_cached(allocator().state(device, "empty_cache")); }

cudaStream_t current_stream(int device) {
  DeviceState& s = allocator().state(device, "current_stream");
  // Every kernel, copy and collective asks for the stream: after the first call this is one
  // atomic load (an uncontended mutex costs as much again, on the path of 4 KiB collectives).
  if (cudaStream_t current = s.current.load(std::memory_order_acquire)) return current;
  std::lock_guard lock(s.mutex);
  if (s.own_stream == nullptr) {
    DeviceGuard guard(device);
    cuda_check(cudaStreamCreateWithFlags(&s.own_stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    s.current.store(s.own_stream, std::memory_order_release);
  }
  return s.current.load(std::memory_order_acquire);
}

void set_current_stream(int device, cudaStream_t stream) {
  cudaStream_t own = current_stream(device);  // makes the library's stream if needed
  DeviceState& s = allocator().state(device, "set_current_stream");
  std::lock_guard lock(s.mutex);
  s.current.store(stream != nullptr ? stream : own, std::memory_order_release);
}

void synchronize(int device) {
  DeviceGuard guard(device);
  cuda_check(cudaStreamSynchronize(current_stream(device)), "cudaStreamSynchronize");
}

DeviceGuard::DeviceGuard(int device) {
  cuda_check(cudaGetDevice(&previous_), "cudaGetDevice");
  if (previous_ != device) cuda_check(cudaSetDevice(device), "cudaSetDevice", "cuda:{}", device);
}

DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  const bool dst_gpu = !dst_device.is_cpu();
  const bool src_gpu = !src_device.is_cpu();
  const int device = dst_gpu ? dst_device.index : src_device.index;
  DeviceGuard guard(device);
  cudaStream_t stream = current_stream(device);
  if (dst_gpu && src_gpu && dst_device != src_device) {
    // Peer copy, ordered after the source device's work too.
    synchronize(src_device.index);
    cuda_check(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes, stream), "cudaMemcpyPeerAsync",
               "{} bytes {} -> {}", nbytes, src_device, dst_device);
  } else {
    cuda_check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, stream), "cudaMemcpyAsync", "{} bytes {} -> {}",
               nbytes, src_device, dst_device);
  }
  // Host memory may be read or freed by the caller right after: wait when it is involved.
  if (!dst_gpu || !src_gpu) cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

}  // namespace dtensor::cuda
