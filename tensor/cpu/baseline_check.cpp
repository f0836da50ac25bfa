// Refuses to start on a CPU without the instruction set the library was compiled for (meson's
// cpu_baseline, DTENSOR_CPU_BASELINE here), with a message instead of SIGILL in the middle of a
// kernel. This file alone is compiled for plain x86-64 (tensor/meson.build) and runs as a
// constructor of high priority, before the library's other static initialisers.
#if defined(__x86_64__) && defined(DTENSOR_CPU_BASELINE)
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

bool host_has_baseline() {
  __builtin_cpu_init();
#if defined(__clang__)  // clang 14 knows the features, not the x86-64-vN level names
  const bool v2 = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
  const bool v3 =
      v2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  if (std::strcmp(DTENSOR_CPU_BASELINE, "x86-64-v2") == 0) return v2;
  if (std::strcmp(DTENSOR_CPU_BASELINE, "x86-64-v3") == 0) return v3;
  return std::strcmp(DTENSOR_CPU_BASELINE, "x86-64") == 0 || __builtin_cpu_supports("avx512f");
#else
  return __builtin_cpu_supports(DTENSOR_CPU_BASELINE);
#endif
}

__attribute__((constructor(101))) void refuse_hosts_below_baseline() {
  if (host_has_baseline()) return;
  std::fprintf(stderr,
               "dtensor: this CPU lacks the %s instruction set the library was built for; rebuild with "
               "`meson setup build -Dcpu_baseline=x86-64-v2` (or x86-64) to run here\n",
               DTENSOR_CPU_BASELINE);
  std::exit(1);
}

}  // namespace
#endif
