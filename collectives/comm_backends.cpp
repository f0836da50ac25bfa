#include "collectives/comm_backends.hpp"

#include "tensor/device_kernels.hpp"

#include <map>
#include <mutex>

namespace dtensor::detail {

namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, CommBackendFactory> factories;
};

Registry& registry() {
  static Registry instance;
  return instance;
}

CommBackendFactory factory_named(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.factories.find(name);
  check<CommError>(it != r.factories.end(), "create_comm_backend", "no collectives backend named '{}' is registered",
                   name);
  return it->second;
}

}  // namespace

void register_comm_backend(const std::string& name, CommBackendFactory factory) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.factories[name] = std::move(factory);
}

std::shared_ptr<CommBackend> create_comm_backend(const std::string& name, std::shared_ptr<CommBackend> host,
                                                 Device device) {
  load_device_backend(device.type, "create_comm_backend");
  return factory_named(name)(std::move(host), device);
}

}  // namespace dtensor::detail
