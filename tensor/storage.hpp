// A block of memory on one device, shared by every tensor that views it.
#pragma once

#include "tensor/error.hpp"

#include <cstddef>
#include <functional>
#include <memory>

namespace dtensor {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int index) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool operator==(const Device&) const = default;
};

class Storage {
 public:
  using Deleter = std::function<void(void*)>;

  // Allocates nbytes (64-byte aligned) on the device.
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  // Wraps memory the caller owns; the deleter runs when the last view goes (may be empty).
  static std::shared_ptr<Storage> wrap(void* data, size_t nbytes, Device device, Deleter deleter);

  Storage(void* data, size_t nbytes, Device device, Deleter deleter);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Deleter deleter_;
};

}  // namespace dtensor

template <>
struct fmt::formatter<dtensor::Device> : fmt::formatter<std::string_view> {
  auto format(dtensor::Device d, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{}", d.is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", d.index));
  }
};
