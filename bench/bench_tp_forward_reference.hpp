// The yardsticks bench_tp_forward measures in its single-rank, single-thread run: raw oneDNN
// matmuls on one prefill's Linear shapes, and a raw single-core read of a decode step's weight
// bytes.
#pragma once

#include "models/hf_config.hpp"
#include "tensor/dtype.hpp"

#include <cstdint>

namespace tp_forward_bench {

// The weight bytes one decoded token reads: every Linear of every layer and the lm_head (the
// embedding reads one row), in `dtype`.
double decode_weight_bytes(const dtensor::models::HFConfig& config, dtensor::DType dtype);

// GFLOP/s of oneDNN's matmul primitive called directly (created once per shape, outside the
// timing) on x [m, in] @ W[out, in]^T for one prefill's Linear shapes, in `dtype` (f32 or bf16).
double onednn_linear_gflops(const dtensor::models::HFConfig& config, int64_t m, dtensor::DType dtype);

// GB/s of one thread summing a buffer of `bytes` (median of 5 passes): the speed at which a core
// can read weights from memory.
double single_core_read_gbps(double bytes);

}  // namespace tp_forward_bench
