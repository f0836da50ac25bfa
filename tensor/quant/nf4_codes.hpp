// bitsandbytes' NF4 code values (the 16 quantiles of N(0, 1) scaled to [-1, 1]), listed once for
// the CPU table (blocks.cpp, kNF4Codes) and the CUDA constant table (cuda/quant_kernels.cu): a
// __constant__ array cannot be initialised from another array, only from a list.
#pragma once

#define DTENSOR_NF4_CODES                                                                             \
  -1.0f, -0.6961928009986877f, -0.5250730514526337f, -0.39491748809814453f, -0.28444138169288635f,    \
      -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, \
      0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f
