// Two printing helpers the tutorial programs share (docs/tutorial.md).
//
// Every rank runs the same program, and ranks that print at once interleave their lines in an
// order that changes from run to run. So the programs print from rank 0 only, and what every rank
// has to say goes through print_each_rank, which gathers the texts to rank 0 and prints them in
// rank order: the output is the same on every run.
#pragma once

#include "collectives/communicator.hpp"
#include "tensor/tensor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

namespace tutorial {

// Rank 0 prints "rank r: TEXT" for every rank r of `comm`, in order. Collective over `comm`.
inline void print_each_rank(dtensor::Communicator comm, const std::string& text) {
  using dtensor::DType, dtensor::Tensor;
  Tensor length = Tensor::full({1}, double(text.size()), DType::I64);
  Tensor lengths = Tensor::zeros({comm.size()}, DType::I64);
  comm.all_gather(length, lengths);
  std::vector<int64_t> counts = lengths.to_vector<int64_t>();
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  std::vector<uint8_t> bytes(text.begin(), text.end());
  Tensor all = Tensor::zeros({total}, DType::U8);
  comm.gather_v(Tensor::from_vector(bytes, {int64_t(bytes.size())}), all, counts, 0);
  if (comm.rank() != 0) return;
  std::vector<uint8_t> chars = all.to_vector<uint8_t>();
  int64_t at = 0;
  for (int r = 0; r < comm.size(); ++r) {
    fmt::print("rank {}: {}\n", r, std::string(chars.begin() + at, chars.begin() + at + counts[size_t(r)]));
    at += counts[size_t(r)];
  }
}

// The values of a small 1-D or 2-D tensor, as torch prints them: [[0, 1], [2, 3]]. "[]" when empty.
inline std::string values(const dtensor::Tensor& t) {
  using dtensor::DType;
  std::vector<double> v = t.to(DType::F64).contiguous().to_vector<double>();
  auto row = [&](int64_t first, int64_t n) {
    std::vector<std::string> items;
    for (int64_t i = 0; i < n; ++i) items.push_back(fmt::format("{:g}", v[size_t(first + i)]));
    return fmt::format("[{}]", fmt::join(items, ", "));
  };
  if (t.dim() == 1) return row(0, t.size(0));
  std::vector<std::string> rows;
  for (int64_t r = 0; r < t.size(0); ++r) rows.push_back(row(r * t.size(1), t.size(1)));
  return fmt::format("[{}]", fmt::join(rows, ", "));
}

}  // namespace tutorial
