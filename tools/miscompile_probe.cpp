// Exits 0 when the compiler keeps a constant vector intact under the flags it was built with.
// GCC 12.2 with AVX-512 enabled stores {1, 1, 0, 0} as a broadcast of 1 and this returns 1;
// meson.build runs it at configure time and refuses such flags.
#include <cstdint>
#include <vector>

__attribute__((noinline)) std::vector<int64_t> ones_then_zeros(int64_t one) {
  std::vector<int64_t> v;
  for (int64_t x : {one, one, one - 1, one - 1}) v.push_back(x);
  return v;
}

int main() { return ones_then_zeros(1) == std::vector<int64_t>{1, 1, 0, 0} ? 0 : 1; }
