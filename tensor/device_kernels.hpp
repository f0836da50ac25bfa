// What a device backend provides for tensors on its devices, and how the core finds it.
//
// libdtensor holds the CPU kernels only and links no device library. A device backend is a
// shared library beside it (libdtensor_cuda.so for DeviceType::CUDA) that the core dlopens the
// first time a tensor, storage or communicator needs such a device; its one C entry point,
// dtensor_register_backend(), registers a DeviceKernels for its device type (and its
// collectives backends, collectives/comm_backends.hpp). A process that only touches CPU
// tensors never maps it. Every public op starts with one line that hands device tensors over:
//
//   if (on_device(a)) return device_kernels(a, "add").binary(BinaryOp::Add, a, b, "add");
//
// Where the backend cannot be loaded (not built, not found, not a shared library, no entry
// point), device_kernels() raises DeviceError naming the op, the device, each library path tried
// and dlerror()'s reason; device_backend_available() and device_count() answer false / 0 instead.
// The library is looked for next to libdtensor, or at the path in the environment variable
// DTENSOR_CUDA_BACKEND when that is set.
#pragma once

#include "tensor/op_kinds.hpp"
#include "tensor/tensor.hpp"

#include <memory>
#include <utility>
#include <vector>

namespace dtensor {

class QuantizedMatrix;
struct QuantOptions;

// The ops of tensor/ops.hpp and tensor/attention.hpp for tensors on the backend's devices, plus
// device memory. Arguments arrive after the public op's device-independent checks; the backend
// checks that every argument is on the same existing device (DeviceError otherwise). Dtype and
// shape rules are those of the CPU ops.
class DeviceKernels {
 public:
  virtual ~DeviceKernels() = default;

  // Devices visible to this process (0 where there is no driver or no device; never throws).
  virtual int device_count() = 0;
  // Storage of nbytes on `device` (DeviceError when the device does not exist or is full).
  virtual std::shared_ptr<Storage> allocate(size_t nbytes, Device device) = 0;
  // Page-locked host memory for staging device tensors through host transports, and its release.
  virtual void* allocate_pinned_host(size_t nbytes) = 0;
  virtual void free_pinned_host(void* data) = 0;
  // nbytes between host and device memory (either way, or device to device); returns once they
  // have arrived.
  virtual void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) = 0;
  // dst = src element-wise with dtype conversion, at least one of them on a device; src has dst's shape.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;

  virtual Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) = 0;
  virtual Tensor scalar(UnaryOp op, const Tensor& a, double s, const char* name) = 0;
  virtual Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) = 0;
  virtual Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) = 0;
  virtual Tensor unary(UnaryOp op, const Tensor& a, const char* name) = 0;

  virtual Tensor reduce(RowReduce op, const Tensor& a, const std::vector<int64_t>& dims, bool keepdim,
                        const char* name) = 0;
  virtual Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) = 0;
  virtual Tensor softmax(const Tensor& a, int64_t dim, bool log, const char* name) = 0;
  virtual std::pair<Tensor, Tensor> topk(const Tensor& a, int64_t k, int64_t dim) = 0;

  virtual Tensor matmul(const Tensor& a, const Tensor& b) = 0;
  virtual Tensor bmm(const Tensor& a, const Tensor& b) = 0;
  virtual Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) = 0;

  virtual Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) = 0;
  virtual Tensor embedding(const Tensor& weight, const Tensor& ids) = 0;
  virtual Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) = 0;
  virtual Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) = 0;
  // cos and sin are the [tokens, head_dim] tables of rotary_tables; kv_head_of is given in full.
  virtual Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin) = 0;
  virtual Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const std::vector<int64_t>& kv_head_of) = 0;

  // quantized_linear and QuantizedMatrix::dequantize_rows (tensor/quant/quantized.hpp) for a matrix
  // held on the backend's device. A backend without them raises DeviceError (the default).
  virtual Tensor quantized_linear(const Tensor& x, const QuantizedMatrix& w, const QuantOptions& options,
                                  const Tensor& bias);
  virtual Tensor quantized_rows(const QuantizedMatrix& w, const Tensor& ids, DType dtype);
};

// Called by a backend's entry point; replaces an earlier registration for the same type.
void register_device_kernels(DeviceType type, std::unique_ptr<DeviceKernels> kernels);

// Loads the backend of `type` once per process (thread-safe); DeviceError naming `op`, the
// library path(s) tried and the reason when it cannot be loaded.
void load_device_backend(DeviceType type, const char* op);
// The kernels of a device that is not the CPU (loads its backend on first use); `op` names the
// operation in the error raised where the backend cannot be loaded.
DeviceKernels& device_kernels(Device device, const char* op);
inline DeviceKernels& device_kernels(const Tensor& t, const char* op) { return device_kernels(t.device(), op); }
// Whether `t` is defined and lives on a device other than the CPU: the op hands it to device_kernels(t).
inline bool on_device(const Tensor& t) { return t.defined() && !t.device().is_cpu(); }

// Whether the backend of `type` can be loaded (true for the CPU); never throws.
bool device_backend_available(DeviceType type);
// Devices of `type` visible to this process: 0 where its backend is absent; never throws.
int device_count(DeviceType type);

}  // namespace dtensor
