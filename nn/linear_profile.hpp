// Counting the work of the Linear layers, for benchmarks that report GFLOP/s.
//
// While a ScopedLinearProfile is alive on this thread, every nn::Linear forward adds its local
// flops (2 * M * N * K of this rank's own matmul: M input rows, the local weight [N, K]) and its
// wall seconds (the local product, not the strategy's communication before or after it) to the
// profile, and to every enclosing one.
//
//   nn::ScopedLinearProfile profile;
//   model.forward_tokens(ids);
//   double gflops = profile.stats().flops / profile.stats().seconds / 1e9;
#pragma once

#include <cstdint>

namespace dtensor::nn {

struct LinearStats {
  double flops = 0;
  double seconds = 0;
  int64_t calls = 0;
};

class ScopedLinearProfile {
 public:
  ScopedLinearProfile();
  ~ScopedLinearProfile();
  ScopedLinearProfile(const ScopedLinearProfile&) = delete;
  ScopedLinearProfile& operator=(const ScopedLinearProfile&) = delete;

  const LinearStats& stats() const { return stats_; }

  // Whether a profile is alive on this thread (the one branch nn::Linear takes).
  static bool active();
  // Adds one Linear call to every profile alive on this thread.
  static void record(double flops, double seconds);

 private:
  LinearStats stats_;
  ScopedLinearProfile* enclosing_;
};

}  // namespace dtensor::nn
