#include "tensor/cpu/host_cpu.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <fstream>
#include <set>
#include <sstream>

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
  // The kernel's names for the extensions that decide our kernels' speed, in this order.
  static const char* const kInteresting[] = {"avx2",     "fma",         "f16c",        "avx512f",
                                             "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                             "amx_tile", "amx_bf16",    "amx_int8"};
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::set<std::string> flags;
  for (std::string line; std::getline(cpuinfo, line);) {
    if (!line.starts_with("flags")) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string word; words >> word;) flags.insert(word);
    break;
  }
  std::string isa;
  for (const char* name : kInteresting) {
    if (flags.count(name) == 0) continue;
    if (!isa.empty()) isa += ' ';
    isa += name;
  }
  return isa.empty() ? "baseline" : isa;
}

std::string onednn_isa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

}  // namespace dtensor::cpu
