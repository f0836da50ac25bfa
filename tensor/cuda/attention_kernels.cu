// The pointer arrays of attention's batched GEMMs (tensor/cuda/attention.cpp), written on the
// device so that no host-to-device copy (and no wait for one) sits between the layer's kernels.
#include "tensor/cuda/kernel_common.cuh"

namespace dtensor::cuda::kernels {

namespace {

__global__ void head_pointers_kernel(HeadBatch batch, const char** out) {
  const int h = int(threadIdx.x);
  if (h >= batch.count) return;
  out[h] = batch.a + batch.kv_head[h] * batch.a_stride;
  out[batch.count + h] = batch.b + h * batch.b_stride;
  out[2 * batch.count + h] = batch.c + h * batch.c_stride;
}

}  // namespace

void head_pointers(const HeadBatch& batch, void* out, cudaStream_t stream) {
  if (batch.count <= 0) return;
  head_pointers_kernel<<<1, kMaxBatchedHeads, 0, stream>>>(batch, static_cast<const char**>(out));
}

}  // namespace dtensor::cuda::kernels
