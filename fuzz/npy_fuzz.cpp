// Fuzzes read_npy (magic, version, header dict, shape, data size) and read_token_ids on top.
#include "fuzz/fuzz_util.hpp"
#include "io/npy.hpp"

namespace {

using namespace dtensor;

// An array that reads is a dense tensor whose elements (at least a byte each) came from the file.
void check_read(const Tensor& array, size_t file_size) {
  FUZZ_CHECK(array.is_contiguous() && uint64_t(array.numel()) <= file_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_scratch_file("array.npy", fuzz::as_text(data, size));
  fuzz::expect_typed_errors([&] { check_read(io::read_npy(path), size); });
  fuzz::expect_typed_errors([&] {
    const Tensor ids = io::read_token_ids(path);
    FUZZ_CHECK(ids.dtype() == DType::I64 && ids.dim() == 2 && ids.size(0) >= 1 && ids.size(1) >= 2);
  });
  return 0;
}
