// Learning-rate schedules (docs/design.md section 14).
#pragma once

#include <cstdint>

namespace dtensor::optim {

// Linear warm-up then cosine decay, as transformers' get_cosine_with_min_lr_schedule_with_warmup
// (get_cosine_schedule_with_warmup when min_lr is 0), `step` counting the optimizer steps already
// taken (0 for the first):
//   step < warmup_steps:  base_lr * step / warmup_steps          (0 at step 0)
//   otherwise:            min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * progress)),
//                         progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
// Past total_steps the rate stays at min_lr (transformers' would rise again along the cosine).
// ValueError naming the argument: step or warmup_steps negative, total_steps not positive,
// warmup_steps above total_steps, base_lr negative, min_lr negative or above base_lr.
double warmup_cosine_lr(int64_t step, int64_t warmup_steps, int64_t total_steps, double base_lr, double min_lr = 0.0);

}  // namespace dtensor::optim
