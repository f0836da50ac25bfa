#include "collectives/byte_block.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

namespace dtensor::detail {

std::optional<ByteBlock> byte_block_of(const Tensor& view) {
  if (view.numel() == 0) return ByteBlock{};
  const auto element = int64_t(view.element_size());
  // Dims that matter (size > 1), innermost first.
  std::vector<std::pair<int64_t, int64_t>> dims;  // (size, stride in elements)
  for (int64_t i = view.dim(); i-- > 0;)
    if (view.size(i) > 1) dims.emplace_back(view.size(i), view.stride(i));
  if (dims.empty()) return ByteBlock{static_cast<std::byte*>(view.data_ptr()), 1, element, element};
  if (dims.front().second != 1) return std::nullopt;  // the innermost elements must be adjacent
  size_t i = 0;
  int64_t row_elements = 1;
  for (; i < dims.size() && dims[i].second == row_elements; ++i) row_elements *= dims[i].first;
  int64_t rows = 1;
  int64_t row_stride = row_elements;
  if (i < dims.size()) {
    // The remaining dims must step evenly over rows: rows that overlap (stride below the row,
    // e.g. an expanded view) are not a block that can be written.
    if (dims[i].second < row_elements) return std::nullopt;
    row_stride = dims[i].second;
    for (; i < dims.size(); ++i) {
      if (dims[i].second != rows * row_stride) return std::nullopt;
      rows *= dims[i].first;
    }
  }
  return ByteBlock{static_cast<std::byte*>(view.data_ptr()), rows, row_elements * element, row_stride * element};
}

int64_t BlockCursor::reach(int64_t pieces, int64_t limit) const {
  if (pieces <= 0 || remaining() == 0) return 0;
  const int64_t first = block_.row_bytes - in_row_;
  // (pieces - 1) * row_bytes cannot overflow for the iovec counts used here; clamp anyway.
  const int64_t more = std::min(pieces - 1, std::numeric_limits<int64_t>::max() / block_.row_bytes - 1);
  return std::min({first + more * block_.row_bytes, remaining(), limit});
}

std::pair<std::byte*, int64_t> BlockCursor::next(int64_t limit) {
  std::byte* p = block_.row(row_) + in_row_;
  const int64_t n = std::min(block_.row_bytes - in_row_, limit);
  in_row_ += n;
  consumed_ += n;
  if (in_row_ == block_.row_bytes) {
    ++row_;
    in_row_ = 0;
  }
  return {p, n};
}

void copy_bytes(const ByteBlock& dst, const ByteBlock& src) {
  BlockCursor to(dst);
  BlockCursor from(src);
  constexpr int64_t kAll = std::numeric_limits<int64_t>::max();
  while (from.remaining() > 0 && to.remaining() > 0) {
    const int64_t n = std::min(from.reach(1, kAll), to.reach(1, kAll));
    std::memcpy(to.next(n).first, from.next(n).first, size_t(n));
  }
}

}  // namespace dtensor::detail
