// Helpers for tests/test_collectives.cpp: known per-rank inputs and expected results computed
// by plain loops in the test, never by the code under test.
#pragma once

#include "collectives/communicator.hpp"

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

namespace dtensor::testing {

inline constexpr ReduceOp kAllOps[] = {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod};

using Values = std::function<double(int64_t)>;

// What rank r contributes at element i for op: small integers (products stay tiny), so every
// reduction over four ranks is exact in every dtype, i8 included.
inline double contribution(ReduceOp op, int rank, int64_t i) {
  if (op == ReduceOp::Prod) return double(1 + (rank + i) % 2);
  return double(1 + (rank * 5 + i * 3) % 11);
}

// A 1-D tensor of dtype whose element i is value(i) (converted as the dtype's constructor does).
inline Tensor make_tensor(DType dtype, int64_t n, const Values& value) {
  Tensor t = Tensor::empty({n}, dtype);
  visit_dtype(dtype, [&]<typename T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = T(compute_t<T>(value(i)));
  });
  return t;
}

// x / n rounded as the dtype rounds (the last step of Avg).
inline double divide_in(DType dtype, double x, int n) {
  return visit_dtype(dtype, [&]<typename T>() {
    using C = compute_t<T>;
    return double(compute_t<T>(T(C(x) / C(n))));
  });
}

// op over ranks 0..size-1 of contribution(op, r, i), in double (exact for these inputs).
inline double expected_reduction(DType dtype, ReduceOp op, int size, int64_t i) {
  double acc = contribution(op, 0, i);
  for (int r = 1; r < size; ++r) {
    const double v = contribution(op, r, i);
    switch (op) {
      case ReduceOp::Sum:
      case ReduceOp::Avg:
        acc += v;
        break;
      case ReduceOp::Prod:
        acc *= v;
        break;
      case ReduceOp::Max:
        acc = std::max(acc, v);
        break;
      case ReduceOp::Min:
        acc = std::min(acc, v);
        break;
    }
  }
  return op == ReduceOp::Avg ? divide_in(dtype, acc, size) : acc;
}

// "" when every element i of got equals expected(i); otherwise the first difference.
inline std::string mismatch(const Tensor& got, const Values& expected) {
  const std::vector<double> values = got.to_vector<double>();
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] != expected(int64_t(i))) {
      return fmt::format("{} of {}: element {} is {}, expected {}", got.dtype(), values.size(), i, values[i],
                         expected(int64_t(i)));
    }
  }
  return "";
}

inline int64_t sum_of(const std::vector<int64_t>& counts) {
  return std::accumulate(counts.begin(), counts.end(), int64_t(0));
}

inline int64_t offset_of(const std::vector<int64_t>& counts, int rank) {
  return std::accumulate(counts.begin(), counts.begin() + rank, int64_t(0));
}

// Uneven counts around base: rank 1 (of 3 or more) gets none, the others base + 7r.
inline std::vector<int64_t> uneven_counts(int size, int64_t base) {
  std::vector<int64_t> counts(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) counts[size_t(r)] = (size > 2 && r == 1) ? 0 : base + 7 * r;
  return counts;
}

// Elements of `dtype` in `bytes` (plus `extra`, to make blocks uneven).
inline int64_t elements_in(size_t bytes, DType dtype, int64_t extra = 0) {
  return int64_t(bytes / dtype_size(dtype)) + extra;
}

inline bool valid(DType dtype, ReduceOp op) { return op != ReduceOp::Avg || is_floating(dtype); }

// Small exact integers that say which rank (and block) an element came from.
inline double tagged(int rank, int64_t i) { return double((rank * 7 + i) % 100); }
inline double pair_tagged(int src, int dst, int64_t i) { return double((src * 31 + dst * 7 + i) % 100); }

// Rank `me`'s send and receive counts for all_to_all_v (its row and column of the count matrix),
// the values it sends, and the values it must receive.
struct Exchange {
  std::vector<int64_t> send, recv;
  std::vector<double> in_values, expected;
};

inline Exchange exchange_for(int me, int size, const std::function<int64_t(int, int)>& count) {
  Exchange e;
  for (int r = 0; r < size; ++r) {
    e.send.push_back(count(me, r));
    e.recv.push_back(count(r, me));
    for (int64_t i = 0; i < count(me, r); ++i) e.in_values.push_back(pair_tagged(me, r, i));
    for (int64_t i = 0; i < count(r, me); ++i) e.expected.push_back(pair_tagged(r, me, i));
  }
  return e;
}

// Elements per rank that make `dtype` buffers of about `bytes` in total over `size` ranks.
inline int64_t elements_for(int64_t bytes, DType dtype, int size) {
  return std::max<int64_t>(1, bytes / int64_t(dtype_size(dtype)) / size);
}

}  // namespace dtensor::testing
