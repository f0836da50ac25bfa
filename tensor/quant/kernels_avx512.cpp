#include "tensor/quant/kernels.hpp"

namespace dtensor::quant {

RowsKernel avx512_rows_kernel(QuantFormat format) { return scalar_rows_kernel(format); }

void avx512_int8_dot(const int8_t* xq, int64_t m, const int8_t* wq, int64_t w_stride, int64_t cols, int64_t row_begin,
                     int64_t row_end, int32_t* acc, int64_t acc_stride) {
  scalar_int8_dot(xq, m, wq, w_stride, cols, row_begin, row_end, acc, acc_stride);
}

}  // namespace dtensor::quant
