// Fuzzes SafetensorsFile::open (header length, JSON header, dtypes, shapes, offsets) and reads
// every tensor a file that opens declares.
#include "fuzz/fuzz_util.hpp"
#include "io/safetensors.hpp"

namespace {

using namespace dtensor;

uint64_t header_length(const uint8_t* data) {
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | data[i];
  return length;
}

// A file that opens declares tensors that fit, without overlapping, in its data section; each
// reads back whole with its declared shape and dtype.
void check_opened(const io::SafetensorsFile& file, const uint8_t* data, size_t size) {
  FUZZ_CHECK(size >= 8 && file.file_bytes() == size);
  const uint64_t data_section = size - 8 - header_length(data);
  uint64_t declared = 0;
  for (const std::string& name : file.names()) {
    FUZZ_CHECK(file.contains(name));
    const io::TensorInfo& info = file.info(name);
    const uint64_t bytes = uint64_t(shape_numel(info.shape)) * dtype_size(info.dtype);
    FUZZ_CHECK(bytes <= data_section - declared);
    declared += bytes;
    const Tensor tensor = file.read(name);
    FUZZ_CHECK(tensor.shape() == info.shape && tensor.dtype() == info.dtype && tensor.nbytes() == bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_scratch_file("model.safetensors", fuzz::as_text(data, size));
  fuzz::expect_typed_errors([&] { check_opened(io::SafetensorsFile::open(path), data, size); });
  return 0;
}
