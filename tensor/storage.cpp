#include "tensor/storage.hpp"

#include <cstdlib>

namespace dtensor {

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  check<DeviceError>(device.is_cpu(), "Storage::allocate", "device {} is not available in this build",
                     device);
  constexpr size_t kAlign = 64;
  size_t rounded = (nbytes + kAlign - 1) / kAlign * kAlign;
  void* data = rounded == 0 ? nullptr : std::aligned_alloc(kAlign, rounded);
  check<Error>(rounded == 0 || data != nullptr, "Storage::allocate", "out of memory allocating {} bytes",
               nbytes);
  return std::make_shared<Storage>(data, nbytes, device, [](void* p) { std::free(p); });
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
