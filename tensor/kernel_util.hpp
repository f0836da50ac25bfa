// Shared machinery of the CPU kernels in ops.hpp (internal; not installed).
//
// The one idea everything builds on: an elementwise kernel over N operands is a walk over a
// common shape where each operand has its own element strides (0 on broadcast dims). The walk
// is split into an outer N-D odometer and an inner "run" along the innermost dim, so kernels
// write one tight loop per run and can specialise it (all strides 1 -> Eigen vector code,
// stride 0 -> a constant).
#pragma once

// GCC 12 reports (maybe-)uninitialized values inside its own AVX-512 intrinsics
// (_mm512_undefined_*, GCC bug 105593) wherever Eigen's vector code is inlined: hundreds of
// false positives per kernel file. The state must be set before <immintrin.h> is first read,
// hence before any include; every kernel file includes this header first.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "tensor/tensor.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

namespace dtensor::detail {

// Argument checks ---------------------------------------------------------------------------------

inline void check_defined(const Tensor& t, const char* op, const char* arg) {
  check<ValueError>(t.defined(), op, "argument '{}' is an undefined tensor", arg);
}

// Every kernel here reads host memory; a CUDA tensor must go to the CUDA kernels instead.
inline void check_cpu(const Tensor& t, const char* op, const char* arg) {
  check_defined(t, op, arg);
  check<DeviceError>(t.device().is_cpu(), op, "argument '{}' must be on the cpu, got {}", arg, t.device());
}

inline void check_same_dtype(const Tensor& a, const Tensor& b, const char* op, const char* arg_a, const char* arg_b) {
  check<DTypeError>(a.dtype() == b.dtype(), op, "'{}' and '{}' must have the same dtype, got {} and {}", arg_a, arg_b,
                    a.dtype(), b.dtype());
}

inline void check_floating(const Tensor& t, const char* op, const char* arg) {
  check<DTypeError>(is_floating(t.dtype()), op,
                    "argument '{}' must have a floating dtype (f32, f64, bf16, f16), got {}", arg, t.dtype());
}

inline void check_dtype_is(const Tensor& t, DType expected, const char* op, const char* arg) {
  check<DTypeError>(t.dtype() == expected, op, "argument '{}' must have dtype {}, got {}", arg, expected, t.dtype());
}

// A double argument converted to T; integer targets must hold it (truncated toward zero).
template <typename T>
compute_t<T> scalar_as(double value, const char* op, const char* arg) {
  using C = compute_t<T>;
  if constexpr (std::is_integral_v<C>) {
    // Anything below max + 1 truncates into range. For i64, max is 2^63 - 1, which double
    // rounds to 2^63 (and 2^63 + 1 to 2^63 again), so the same bound still excludes 2^63.
    const double lo = double(std::numeric_limits<C>::lowest());
    const double hi = double(std::numeric_limits<C>::max());
    check<ValueError>(std::isfinite(value) && value >= lo && value < hi + 1.0, op,
                      "scalar '{}' = {} does not fit dtype {} (range [{}, {}])", arg, value, dtype_of<T>,
                      std::numeric_limits<C>::lowest(), std::numeric_limits<C>::max());
  }
  return C(value);
}

// normalize_dim that also accepts dim 0 or -1 of a 0-d tensor (as torch does), giving 0.
int64_t normalize_dim_or_scalar(int64_t dim, int64_t ndim, const char* op);

// Which dims a reduction folds: dims normalised and checked for repeats; an empty list means
// every dim.
std::vector<bool> reduced_dim_mask(const std::vector<int64_t>& dims, int64_t ndim, const char* op);
// The shape after folding the `reduced` dims: kept as size 1 with keepdim, dropped without.
Shape reduced_shape(const Shape& shape, const std::vector<bool>& reduced, bool keepdim);

// Broadcasting ------------------------------------------------------------------------------------

// The NumPy/PyTorch broadcast of two shapes; ShapeError naming both otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// t's strides seen through the broadcast to out_shape: 0 on new leading dims and on size-1 dims.
Shape broadcast_strides(const Tensor& t, const Shape& out_shape);

// Strided N-D iteration ---------------------------------------------------------------------------

// A common iteration shape with N operands' strides. Size-1 dims are dropped, and before the
// walk neighbouring dims that are contiguous for every operand are merged, so [m,n] contiguous
// becomes one run of m*n and [m,n] + [n] keeps a contiguous inner run of n.
template <size_t N>
class StridedLoop {
 public:
  using Offsets = std::array<int64_t, N>;

  StridedLoop(const Shape& shape, const std::array<Shape, N>& strides) {
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] == 1) continue;
      shape_.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) strides_[k].push_back(strides[k][d]);
    }
    numel_ = shape_numel(shape);
  }

  // Reorders dims so operand k's strides decrease outward (stable), making its memory walk
  // as sequential as possible: reductions use it to follow the input's layout rather than
  // the accumulator's.
  StridedLoop& order_by(size_t k) {
    std::vector<size_t> perm(shape_.size());
    std::iota(perm.begin(), perm.end(), size_t(0));
    std::stable_sort(perm.begin(), perm.end(),
                     [&](size_t x, size_t y) { return std::abs(strides_[k][x]) > std::abs(strides_[k][y]); });
    Shape shape;
    std::array<Shape, N> strides;
    for (size_t d : perm) {
      shape.push_back(shape_[d]);
      for (size_t j = 0; j < N; ++j) strides[j].push_back(strides_[j][d]);
    }
    shape_ = std::move(shape);
    strides_ = std::move(strides);
    return *this;
  }

  // Opt-in for kernels whose result does not depend on the visiting order (elementwise ones):
  // when an operand is transposed against the others (stride 1 on the second-to-last dim, a
  // large stride on the last), the last two dims are visited in square tiles, so the cache
  // lines of both layouts are reused instead of one operand missing on every element.
  StridedLoop& tile_transposed() {
    tile_ = true;
    return *this;
  }

  // Calls run(offsets, n, inner_strides) for every innermost run; offsets are in elements from
  // each operand's element 0. Runs come in row-major order unless tile_transposed() was asked
  // for. Nothing is called for an empty shape; a 0-d shape is one run of 1.
  template <typename RunFn>
  void for_each_run(RunFn&& run) {
    if (numel_ == 0) return;
    coalesce();
    if (shape_.empty()) {
      run(Offsets{}, int64_t(1), Offsets{});
      return;
    }
    if (tile_ && has_transposed_operand()) {
      for_each_tiled_run(run);
      return;
    }
    const size_t inner = shape_.size() - 1;
    Offsets inner_strides;
    for (size_t k = 0; k < N; ++k) inner_strides[k] = strides_[k][inner];
    Offsets offsets{};
    std::vector<int64_t> index(inner, 0);
    while (true) {
      run(offsets, shape_[inner], inner_strides);
      if (!advance_outer(index, offsets)) return;
    }
  }

 private:
  // Merges dim d into d+1 wherever stepping d equals stepping over the whole of d+1.
  void coalesce() {
    for (size_t d = shape_.size(); d-- > 1;) {
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k) {
        mergeable = mergeable && strides_[k][d - 1] == strides_[k][d] * shape_[d];
      }
      if (!mergeable) continue;
      shape_[d] *= shape_[d - 1];
      shape_.erase(shape_.begin() + int64_t(d - 1));
      for (size_t k = 0; k < N; ++k) strides_[k].erase(strides_[k].begin() + int64_t(d - 1));
    }
  }

  bool has_transposed_operand() const {
    const size_t last = shape_.size() - 1;
    if (shape_.size() < 2) return false;
    for (size_t k = 0; k < N; ++k) {
      if (strides_[k][last - 1] == 1 && std::abs(strides_[k][last]) > 1) return true;
    }
    return false;
  }

  // Runs of at most kTile elements covering the last two dims tile by tile.
  template <typename RunFn>
  void for_each_tiled_run(RunFn& run) const {
    constexpr int64_t kTile = 32;
    const size_t last = shape_.size() - 1;
    const int64_t rows = shape_[last - 1], cols = shape_[last];
    Offsets inner_strides;
    for (size_t k = 0; k < N; ++k) inner_strides[k] = strides_[k][last];
    Offsets offsets{};
    std::vector<int64_t> index(last - 1, 0);  // over the dims before the tiled two
    do {
      for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
        for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
          for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r) {
            Offsets at = offsets;
            for (size_t k = 0; k < N; ++k) {
              at[k] += r * strides_[k][last - 1] + c0 * inner_strides[k];
            }
            run(at, std::min(kTile, cols - c0), inner_strides);
          }
        }
      }
    } while (advance_outer(index, offsets));
  }

  // Odometer step over the first index.size() dims; false after the last position.
  bool advance_outer(std::vector<int64_t>& index, Offsets& offsets) const {
    for (size_t d = index.size(); d-- > 0;) {
      if (++index[d] < shape_[d]) {
        for (size_t k = 0; k < N; ++k) offsets[k] += strides_[k][d];
        return true;
      }
      for (size_t k = 0; k < N; ++k) offsets[k] -= strides_[k][d] * (shape_[d] - 1);
      index[d] = 0;
    }
    return false;
  }

  Shape shape_;
  std::array<Shape, N> strides_;
  int64_t numel_ = 0;
  bool tile_ = false;
};

// Typed element access ----------------------------------------------------------------------------

template <typename T>
const T* cdata(const Tensor& t) {
  return static_cast<const T*>(t.data_ptr());
}
template <typename T>
T* mdata(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

template <typename C>
using ArrayMap = Eigen::Map<Eigen::Array<C, Eigen::Dynamic, 1>>;
template <typename C>
using ConstArrayMap = Eigen::Map<const Eigen::Array<C, Eigen::Dynamic, 1>>;
template <typename C>
using Vector = Eigen::Array<C, Eigen::Dynamic, 1>;

// True where T is stored as its own compute type, so Eigen can work on the memory directly
// (not the 16-bit floats, which are widened to float first).
template <typename T>
inline constexpr bool is_native_v = std::is_same_v<T, compute_t<T>>;

// Integer add/sub/mul wrap on overflow like PyTorch's; doing them in the unsigned type avoids
// C++'s undefined signed overflow.
template <typename C>
C wrapping_add(C a, C b) {
  if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<C>;
    return C(U(U(a) + U(b)));
  } else {
    return a + b;
  }
}
template <typename C>
C wrapping_sub(C a, C b) {
  if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<C>;
    return C(U(U(a) - U(b)));
  } else {
    return a - b;
  }
}
template <typename C>
C wrapping_mul(C a, C b) {
  if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<C>;
    return C(U(U(a) * U(b)));
  } else {
    return a * b;
  }
}

}  // namespace dtensor::detail
