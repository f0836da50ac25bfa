// ByteBlock: a 2-D region of host memory, the form in which a (possibly strided) tensor view
// reaches a transport: `rows` rows of `row_bytes` bytes each, `row_stride` bytes apart. The
// column block of a row-major matrix is one (rows = matrix rows, row_bytes = block width); a
// contiguous view is a single row.
#pragma once

#include "tensor/tensor.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace dtensor::detail {

struct ByteBlock {
  std::byte* data = nullptr;
  int64_t rows = 0;  // 0 for an empty block
  int64_t row_bytes = 0;
  int64_t row_stride = 0;  // bytes from the start of one row to the start of the next

  int64_t bytes() const { return rows * row_bytes; }
  std::byte* row(int64_t r) const { return data + r * row_stride; }
  // Pieces a byte-by-byte walk over the block meets (an empty block has none).
  int64_t fragments() const { return rows; }
};

// The view as a ByteBlock, or nothing where its elements do not form one (e.g. a transposed or
// 3-D strided view). Contiguous views and empty views always do (one row / no rows).
std::optional<ByteBlock> byte_block_of(const Tensor& view);

// Walks a block front to back, handing out pieces that never cross a row end. Used to pair two
// blocks whose rows differ (a copy, or the two iovec lists of one process_vm_readv call).
class BlockCursor {
 public:
  explicit BlockCursor(const ByteBlock& block) : block_(block) {}

  int64_t remaining() const { return block_.bytes() - consumed_; }
  // Bytes the next `pieces` pieces hold, at most `limit`.
  int64_t reach(int64_t pieces, int64_t limit) const;
  // The next piece, at most `limit` bytes long; advances past it. Requires remaining() > 0.
  std::pair<std::byte*, int64_t> next(int64_t limit);

 private:
  ByteBlock block_;
  int64_t row_ = 0;
  int64_t in_row_ = 0;  // bytes of row_ already handed out
  int64_t consumed_ = 0;
};

// Copies src into dst (both of src.bytes() bytes, any row layouts) with one memcpy per piece.
void copy_bytes(const ByteBlock& dst, const ByteBlock& src);

}  // namespace dtensor::detail
