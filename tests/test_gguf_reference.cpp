// io/gguf's dequantization against the gguf PyPI package: tools/gguf_reference.py writes a GGUF
// with a tensor of every readable type (random payloads) and gguf.quants.dequantize's values of
// each as .npy; whole reads and boxes (a row, whole-block columns, boxes starting and ending
// inside blocks, 3-D boxes) must match them. Hidden: tests/check_gguf_reference.sh runs it with
// DTENSOR_GGUF_REFERENCE_DIR set after running the script.
#include "checkpoint_test_util.hpp"

#include "io/gguf.hpp"
#include "io/npy.hpp"
#include "tensor/ops.hpp"

#include <cmath>
#include <cstdlib>

using namespace dtensor;

namespace {

// max |ours - expected| <= 1e-6 * max(1, max |expected|): both decode in f32, but the compilers
// may fuse the scale-and-offset into one rounding where numpy rounds twice.
void check_close(const Tensor& ours, const Tensor& expected, const std::string& what) {
  INFO(what);
  REQUIRE(ours.shape() == expected.shape());
  const Tensor a = ours.contiguous(), b = expected.contiguous();
  const auto* pa = static_cast<const float*>(a.data_ptr());
  const auto* pb = static_cast<const float*>(b.data_ptr());
  double diff = 0, scale = 1;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, double(std::fabs(pa[i] - pb[i])));
    scale = std::max(scale, double(std::fabs(pb[i])));
  }
  CHECK(diff <= 1e-6 * scale);
}

Tensor box_of(Tensor t, const Shape& offset, const Shape& sizes) {
  for (int64_t d = 0; d < t.dim(); ++d) t = t.narrow(d, offset[size_t(d)], sizes[size_t(d)]);
  return t;
}

}  // namespace

TEST_CASE("gguf: dequantization matches gguf-py on every readable type", "[.][gguf-reference]") {
  const char* dir = std::getenv("DTENSOR_GGUF_REFERENCE_DIR");
  REQUIRE(dir != nullptr);
  const io::GgufFile file = io::GgufFile::open(std::string(dir) + "/types.gguf");
  REQUIRE(file.names().size() == 11);
  for (const std::string& name : file.names()) {
    const Tensor expected = io::read_npy(std::string(dir) + "/" + name + ".npy");
    const Shape& shape = file.tensor(name).shape;
    check_close(file.read(name), expected, name + ": whole");
    const int64_t nd = int64_t(shape.size()), cols = shape.back();
    const int64_t block = io::ggml_block_size(file.tensor(name).type);
    std::vector<std::pair<Shape, Shape>> boxes;
    Shape row_offset(size_t(nd), 0), row_sizes = shape;
    row_offset[0] = 1, row_sizes[0] = 1;
    boxes.push_back({row_offset, row_sizes});  // one row (of dim 0)
    Shape offset(size_t(nd), 0), sizes = shape;
    offset.back() = block, sizes.back() = std::min(block, cols - block);
    if (sizes.back() > 0) boxes.push_back({offset, sizes});  // whole-block columns
    offset.back() = 5, sizes.back() = cols - 11;
    for (int64_t d = 0; d + 1 < nd; ++d) offset[size_t(d)] = shape[size_t(d)] - 1, sizes[size_t(d)] = 1;
    boxes.push_back({offset, sizes});  // starts and ends inside blocks
    offset.back() = cols - 3, sizes.back() = 3;
    boxes.push_back({offset, sizes});  // the tail of the last block
    for (const auto& [box_offset, box_sizes] : boxes) {
      check_close(file.read_block(name, box_offset, box_sizes), box_of(expected, box_offset, box_sizes),
                  name + ": box at " + shape_str(box_offset) + " of " + shape_str(box_sizes));
    }
  }
}
