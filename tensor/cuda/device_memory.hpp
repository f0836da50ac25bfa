// Device memory, streams and copies for CUDA tensors (internal to the CUDA build).
//
// Memory comes from a caching allocator: freed blocks go to per-device free lists keyed by a
// rounded size, so the allocations that repeat every op and every layer are served without
// cudaMalloc (which synchronises the device and costs tens of microseconds). Every kernel,
// copy and collective of a device runs on that device's current stream; since allocation and
// use share the stream, a block freed on the host can be reused at once: later work on the
// stream runs after the work that used it.
#pragma once

#include "tensor/storage.hpp"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace dtensor::cuda {

// Number of visible GPUs; 0 where there is no driver or no device (never throws).
int device_count();

// DeviceError naming `op` unless `device` is one of the visible GPUs (the ops check this first,
// so that a CUDA tensor on a machine without that GPU fails with the op's name, not the allocator's).
void check_device_exists(Device device, const char* op);

// Storage of nbytes on a CUDA device from the caching allocator (DeviceError when the device
// does not exist or is out of memory even after the cache was emptied).
std::shared_ptr<Storage> allocate_storage(size_t nbytes, Device device);

struct AllocatorStats {
  uint64_t device_mallocs = 0;  // cudaMalloc calls made
  uint64_t cache_hits = 0;      // allocations served from a free list
  uint64_t bytes_in_use = 0;    // rounded bytes handed out and not yet freed
  uint64_t bytes_cached = 0;    // rounded bytes held in free lists
};
AllocatorStats allocator_stats(int device);
// Returns every cached block of the device to the driver.
void empty_cache(int device);

// The stream every operation on the device is queued on (created on first use, non-blocking).
cudaStream_t current_stream(int device);
// Replaces it (e.g. with a stream of another library); nullptr restores the library's own.
void set_current_stream(int device, cudaStream_t stream);
// Waits until everything queued on the device's current stream has finished.
void synchronize(int device);

// Makes `device` current for the calling thread while alive, restoring the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Copies nbytes between any two of host and device memory on the current stream of the device
// involved (the destination's for device to device). Returns once the bytes have arrived, so
// the host may read or free either side afterwards.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace dtensor::cuda
