// The kernel table of the CUDA backend: each entry forwards to the function of cuda_ops.hpp,
// cuda_copy.hpp or device_memory.hpp that implements it.
#include "tensor/cuda/cuda_kernels.hpp"

#include "tensor/cuda/cuda_check.hpp"
#include "tensor/cuda/cuda_copy.hpp"
#include "tensor/cuda/cuda_ops.hpp"
#include "tensor/cuda/device_memory.hpp"
#include "tensor/cuda/quant.hpp"

namespace dtensor::cuda {

namespace {

class CudaKernels final : public DeviceKernels {
 public:
  int device_count() override { return cuda::device_count(); }
  std::shared_ptr<Storage> allocate(size_t nbytes, Device device) override { return allocate_storage(nbytes, device); }
  // Portable: usable with every GPU of the process, whichever is current.
  void* allocate_pinned_host(size_t nbytes) override {
    void* data = nullptr;
    cuda_check(cudaHostAlloc(&data, nbytes, cudaHostAllocPortable), "cudaHostAlloc", "{} bytes", nbytes);
    return data;
  }
  void free_pinned_host(void* data) override { cuda_check(cudaFreeHost(data), "cudaFreeHost"); }
  void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) override {
    cuda::copy_bytes(dst, dst_device, src, src_device, nbytes);
  }
  void copy(const Tensor& dst, const Tensor& src) override { copy_tensor(dst, src); }
  void fill(const Tensor& dst, double value) override { fill_tensor(dst, value); }

  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) override {
    return cuda::binary(op, a, b, name);
  }
  Tensor scalar(UnaryOp op, const Tensor& a, double s, const char* name) override {
    return cuda::scalar(op, a, s, name);
  }
  Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) override { return cuda::where(cond, a, b); }
  Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) override {
    return cuda::masked_fill(a, mask, value);
  }
  Tensor unary(UnaryOp op, const Tensor& a, const char* name) override { return cuda::unary(op, a, name); }

  Tensor reduce(RowReduce op, const Tensor& a, const std::vector<int64_t>& dims, bool keepdim,
                const char* name) override {
    return cuda::reduce(op, a, dims, keepdim, name);
  }
  Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) override { return cuda::argmax(a, dim, keepdim); }
  Tensor softmax(const Tensor& a, int64_t dim, bool log, const char* name) override {
    return cuda::softmax(a, dim, log, name);
  }
  std::pair<Tensor, Tensor> topk(const Tensor& a, int64_t k, int64_t dim) override { return cuda::topk(a, k, dim); }

  Tensor matmul(const Tensor& a, const Tensor& b) override { return cuda::matmul(a, b); }
  Tensor bmm(const Tensor& a, const Tensor& b) override { return cuda::bmm(a, b); }
  Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) override {
    return cuda::linear(x, weight, bias);
  }

  Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) override {
    return cuda::index_select(a, dim, index);
  }
  Tensor embedding(const Tensor& weight, const Tensor& ids) override { return cuda::embedding(weight, ids); }
  Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) override { return cuda::rms_norm(x, weight, eps); }
  Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) override {
    return cuda::layer_norm(x, weight, bias, eps);
  }
  Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin) override {
    return cuda::apply_rotary(x, cos, sin);
  }
  Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                          const std::vector<int64_t>& kv_head_of) override {
    return cuda::causal_attention(q, k, v, kv_head_of);
  }

  Tensor quantized_linear(const Tensor& x, const QuantizedMatrix& w, const QuantOptions& options,
                          const Tensor& bias) override {
    return cuda::quantized_linear(x, w, options, bias);
  }
  Tensor quantized_rows(const QuantizedMatrix& w, const Tensor& ids, DType dtype) override {
    return cuda::quantized_rows(w, ids, dtype);
  }
};

}  // namespace

std::unique_ptr<DeviceKernels> make_kernels() { return std::make_unique<CudaKernels>(); }

}  // namespace dtensor::cuda
