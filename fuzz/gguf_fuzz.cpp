// Fuzzes GgufFile::open (magic, version, counts, metadata values and nested arrays, alignment,
// the tensor table) and, for a file that opens, every typed getter, every readable tensor
// dequantized and every tensor's raw blocks.
#include "fuzz/fuzz_util.hpp"
#include "io/gguf.hpp"

namespace {

using namespace dtensor;

// Each getter either answers or throws a typed error, whatever the value's type.
void read_metadata(const io::GgufFile& file) {
  for (const auto& [key, value] : file.metadata()) {
    fuzz::expect_typed_errors([&] { file.get_int(key); });
    fuzz::expect_typed_errors([&] { file.get_float(key); });
    fuzz::expect_typed_errors([&] { file.get_string(key); });
    fuzz::expect_typed_errors([&] { file.get_bool(key); });
    fuzz::expect_typed_errors([&] { file.get_string_array(key); });
    fuzz::expect_typed_errors([&] { file.get_int_array(key); });
    fuzz::expect_typed_errors([&] { file.get_float_array(key); });
  }
}

// A file that opens declares aligned tensors inside its data section, without overlaps (checked
// by summing: their bytes fit in the section); each readable one dequantizes to its shape.
void check_opened(const io::GgufFile& file, size_t size) {
  FUZZ_CHECK(file.file_bytes() == size);
  FUZZ_CHECK(file.version() == 2 || file.version() == 3);
  const uint64_t align = file.alignment();
  FUZZ_CHECK(align != 0 && (align & (align - 1)) == 0);
  read_metadata(file);
  uint64_t declared = 0;
  for (const std::string& name : file.names()) {
    const io::GgufTensorInfo& info = file.tensor(name);
    FUZZ_CHECK(info.shape.size() >= 1 && info.shape.size() <= 4);
    FUZZ_CHECK(info.offset >= file.data_offset() && (info.offset - file.data_offset()) % align == 0);
    FUZZ_CHECK(info.offset + info.bytes <= size);
    declared += info.bytes;
    FUZZ_CHECK(declared <= size - file.data_offset());
    if (!io::ggml_type_readable(info.type)) continue;
    const Tensor tensor = file.read(name);
    FUZZ_CHECK(tensor.shape() == info.shape && tensor.dtype() == DType::F32);
    const int64_t rows = info.shape.back() == 0 ? 0 : tensor.numel() / info.shape.back();
    const Tensor raw = file.read_blocks(name, 0, rows, 0, info.shape.back());
    FUZZ_CHECK(uint64_t(raw.nbytes()) == info.bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_scratch_file("model.gguf", fuzz::as_text(data, size));
  fuzz::expect_typed_errors([&] { check_opened(io::GgufFile::open(path), size); });
  return 0;
}
