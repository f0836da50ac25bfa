// What the host CPU is and which instructions the kernels run with, for benchmarks to print beside
// every figure (figures move with the host: AVX2, AVX-512, AVX512-BF16 and AMX differ severalfold).
#pragma once

#include <string>

namespace dtensor::cpu {

// /proc/cpuinfo's "model name" ("AMD EPYC 9R14", ...), or "unknown".
std::string host_cpu_model();

// The vector extensions the host has among those our kernels care about, as /proc/cpuinfo names
// them, e.g. "avx2 fma f16c avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_bf16".
std::string host_isa();

// The instruction set oneDNN dispatches to on this host, e.g. "avx512_core_bf16".
std::string onednn_isa();

}  // namespace dtensor::cpu
