// Everything of optim/ (docs/design.md section 14): SGD, AdamW, clip_grad_norm, warmup_cosine_lr.
#pragma once

#include "optim/adamw.hpp"
#include "optim/clip_grad.hpp"
#include "optim/lr_schedule.hpp"
#include "optim/sgd.hpp"
