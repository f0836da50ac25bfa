#include "tensor/cpu/host_cpu.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <fstream>
#include <utility>

namespace dtensor::cpu {

std::string host_cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (!line.starts_with("model name")) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
  }
  return "unknown";
}

std::string host_isa() {
  std::string isa;
#if defined(__x86_64__)
  __builtin_cpu_init();
  const std::pair<bool, const char*> features[] = {
      {__builtin_cpu_supports("avx2") != 0, "avx2"},
      {__builtin_cpu_supports("fma") != 0, "fma"},
      {__builtin_cpu_supports("avx512f") != 0, "avx512f"},
      {__builtin_cpu_supports("avx512bw") != 0, "avx512bw"},
      {__builtin_cpu_supports("avx512vnni") != 0, "avx512_vnni"},
      {__builtin_cpu_supports("avx512bf16") != 0, "avx512_bf16"},
      {__builtin_cpu_supports("avx512fp16") != 0, "avx512_fp16"},
      {__builtin_cpu_supports("amx-bf16") != 0, "amx_bf16"},
  };
  for (const auto& [present, name] : features) {
    if (!present) continue;
    if (!isa.empty()) isa += ' ';
    isa += name;
  }
#endif
  return isa.empty() ? "baseline" : isa;
}

std::string onednn_isa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

}  // namespace dtensor::cpu
