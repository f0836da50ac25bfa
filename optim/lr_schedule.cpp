#include "optim/lr_schedule.hpp"

#include "tensor/error.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dtensor::optim {

double warmup_cosine_lr(int64_t step, int64_t warmup_steps, int64_t total_steps, double base_lr, double min_lr) {
  constexpr const char* op = "warmup_cosine_lr";
  check(step >= 0, op, "step must be >= 0, got {}", step);
  check(warmup_steps >= 0, op, "warmup_steps must be >= 0, got {}", warmup_steps);
  check(total_steps > 0, op, "total_steps must be > 0, got {}", total_steps);
  check(warmup_steps <= total_steps, op, "warmup_steps ({}) must not exceed total_steps ({})", warmup_steps,
        total_steps);
  check(std::isfinite(base_lr) && base_lr >= 0, op, "base_lr must be a finite value >= 0, got {}", base_lr);
  check(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= base_lr, op, "min_lr must be in [0, base_lr ({})], got {}",
        base_lr, min_lr);
  if (step < warmup_steps) return base_lr * double(step) / double(warmup_steps);
  const double progress =
      std::min(1.0, double(step - warmup_steps) / double(std::max<int64_t>(1, total_steps - warmup_steps)));
  return min_lr + (base_lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
}

}  // namespace dtensor::optim
