// The registry of device backends and the loader of their shared libraries (see device_kernels.hpp).
#include "tensor/device_kernels.hpp"

#include <dlfcn.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace dtensor {

namespace {

// Every backend library exports this function (extern "C", no arguments); it registers the
// backend's kernels and collectives.
constexpr const char* kEntryPoint = "dtensor_register_backend";

struct BackendLibrary {
  const char* name;           // for messages
  const char* file_name;      // looked for in the directory of libdtensor
  const char* path_variable;  // an environment variable that, when set, names the library instead
};

BackendLibrary library_of(DeviceType type) {
  check<DeviceError>(type == DeviceType::CUDA, "device backend", "the CPU has no backend library");
  return {"CUDA", "libdtensor_cuda.so", "DTENSOR_CUDA_BACKEND"};
}

struct Backend {
  std::once_flag load_once;
  std::unique_ptr<DeviceKernels> kernels;  // set by the library's entry point
  std::vector<std::string> failures;       // "path: reason" per library tried, when none loaded
};

Backend& backend_of(DeviceType type) {
  // Never destroyed: objects released at exit after it (the world communicator's pinned staging
  // area) still call its kernels.
  static Backend& cuda = *new Backend;
  check<DeviceError>(type == DeviceType::CUDA, "device backend", "the CPU has no device backend");
  return cuda;
}

// The directory holding libdtensor itself (found through one of its own symbols), so that a
// program finds the backend beside the core library wherever both were built or installed.
std::string core_library_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&core_library_dir), &info) == 0 || info.dli_fname == nullptr) return ".";
  const std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::vector<std::string> candidate_paths(const BackendLibrary& library) {
  const char* chosen = std::getenv(library.path_variable);
  if (chosen != nullptr && *chosen != '\0') return {chosen};
  return {core_library_dir() + "/" + library.file_name};
}

std::string last_dl_error() {
  const char* reason = dlerror();
  return reason != nullptr ? reason : "unknown reason";
}

// "path: reason", unless dlerror() already named the path.
std::string naming(const std::string& path, const std::string& reason) {
  return reason.find(path) != std::string::npos ? reason : path + ": " + reason;
}

// Opens `path` and runs its entry point; returns the reason it failed, or "" when it registered.
// The library stays loaded for the life of the process (its kernels and allocations live in it).
std::string open_backend(const std::string& path, Backend& backend) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return last_dl_error();
  auto* entry = reinterpret_cast<void (*)()>(dlsym(handle, kEntryPoint));
  if (entry == nullptr) return fmt::format("no entry point {}: {}", kEntryPoint, last_dl_error());
  try {
    entry();
  } catch (const std::exception& e) {
    return fmt::format("{} failed: {}", kEntryPoint, e.what());
  }
  return backend.kernels ? "" : fmt::format("{} registered no device kernels", kEntryPoint);
}

void load_once(DeviceType type, Backend& backend) {
  const BackendLibrary library = library_of(type);
  for (const std::string& path : candidate_paths(library)) {
    const std::string reason = open_backend(path, backend);
    if (reason.empty()) return;
    backend.failures.push_back(naming(path, reason));
  }
}

Backend& loaded_backend(DeviceType type) {
  Backend& backend = backend_of(type);
  std::call_once(backend.load_once, [&] { load_once(type, backend); });
  return backend;
}

// Why the backend of `type` is absent: the paths tried, and what to do about it.
std::string absence_reason(DeviceType type, const Backend& backend) {
  const BackendLibrary library = library_of(type);
  return fmt::format(
      "{} cannot be loaded (tried {}); a build with CUDA (meson -Dcuda=enabled) makes it beside "
      "libdtensor, or set {} to its path",
      library.file_name, fmt::join(backend.failures, "; "), library.path_variable);
}

}  // namespace

void register_device_kernels(DeviceType type, std::unique_ptr<DeviceKernels> kernels) {
  backend_of(type).kernels = std::move(kernels);
}

void load_device_backend(DeviceType type, const char* op) {
  const Backend& backend = loaded_backend(type);
  check<DeviceError>(backend.kernels != nullptr, op, "no {} backend: {}", library_of(type).name,
                     absence_reason(type, backend));
}

Tensor DeviceKernels::quantized_linear(const Tensor& x, const QuantizedMatrix& /*w*/, const QuantOptions& /*options*/,
                                       const Tensor& /*bias*/) {
  fail<DeviceError>("quantized_linear", "the backend of {} has no quantized kernels", x.device());
}

Tensor DeviceKernels::quantized_rows(const QuantizedMatrix& /*w*/, const Tensor& ids, DType /*dtype*/) {
  fail<DeviceError>("dequantize_rows", "the backend of {} has no quantized kernels", ids.device());
}

DeviceKernels& device_kernels(Device device, const char* op) {
  check<DeviceError>(!device.is_cpu(), op, "the CPU kernels are not a device backend");
  const Backend& backend = loaded_backend(device.type);
  check<DeviceError>(backend.kernels != nullptr, op, "{} needs the {} backend: {}", device,
                     library_of(device.type).name, absence_reason(device.type, backend));
  return *backend.kernels;
}

bool device_backend_available(DeviceType type) {
  return type == DeviceType::CPU || loaded_backend(type).kernels != nullptr;
}

int device_count(DeviceType type) {
  if (type == DeviceType::CPU) return 1;
  return device_backend_available(type) ? backend_of(type).kernels->device_count() : 0;
}

}  // namespace dtensor
