// Bad-input rows: GGUF files (io/gguf.hpp, models/gguf_model.hpp): truncated, corrupt counts and
// lengths, unknown types, misaligned or overlapping tensors, unreadable types, a shard boundary
// inside a quantization block, an unsupported architecture. Each message names the file, the
// tensor or the metadata key at fault.
#include "bad_input_rows.hpp"
#include "gguf_test_writer.hpp"

#include "io/gguf.hpp"
#include "models/hf_config.hpp"

using namespace dtensor;
using namespace gguf_test;

namespace bad_input {

namespace {

// One f32 tensor "w" [2, 2] and an architecture.
GgufWriter one_tensor() {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_tensor("w", GgmlType::F32, {2, 2}, std::string(16, '\0'));
  return w;
}

std::string gguf_file(const std::string& name, const std::string& bytes) {
  const auto path = scratch_dir() / name;
  write_file(path, bytes);
  return path.string();
}

Row open_row(ErrorKind expected, const std::string& what, const std::string& name, const std::string& bytes,
             const std::string& argument = "") {
  const std::string path = gguf_file(name, bytes);
  return {"gguf: " + what, expected, argument.empty() ? name : argument, [path] { io::GgufFile::open(path); }};
}

std::string with_u64_at(std::string bytes, size_t at, uint64_t value) {
  bytes.replace(at, 8, le(value));
  return bytes;
}

}  // namespace

std::vector<Row> gguf_rows() {
  const std::string good = one_tensor().bytes();
  GgufWriter magic = one_tensor(), version = one_tensor(), long_string = one_tensor(), odd_value = one_tensor();
  GgufWriter odd_type = one_tensor(), misaligned = one_tensor(), overlap = one_tensor(), alignment = one_tensor();
  GgufWriter quantized = one_tensor(), mamba = one_tensor();
  magic.magic = 0x47475546;
  version.version = 1;
  long_string.add_raw("general.name", GgufValueType::STRING, le<uint64_t>(uint64_t(1) << 62));
  odd_value.add_raw("general.name", GgufValueType(42), "");
  odd_type.add_tensor_ne("v", 77, {4}, std::string(16, '\0'));
  misaligned.add_tensor("v", GgmlType::F32, {4}, std::string(16, '\0'), 48);
  overlap.add_tensor("v", GgmlType::F32, {4}, std::string(16, '\0'), 0);
  alignment.add_u32("general.alignment", 48);
  quantized.add_tensor("q", GgmlType::Q8_0, {2, 64}, std::string(4 * 34, '\0'));
  quantized.add_tensor("q5", GgmlType::Q5_0, {1, 32}, std::string(22, '\0'));
  mamba.tensors.clear();
  mamba.kv.clear();
  mamba.kv_count = 0;
  mamba.add_string("general.architecture", "mamba");
  const std::string quantized_path = gguf_file("quantized.gguf", quantized.bytes());
  const std::string mamba_path = gguf_file("mamba.gguf", mamba.bytes());
  const std::string llama_path = gguf_file("llama-no-sizes.gguf", one_tensor().bytes());
  return {
      row<ValueError>("gguf: missing file", "absent.gguf",
                      [] { io::GgufFile::open((scratch_dir() / "absent.gguf").string()); }),
      open_row(ErrorKind::Value, "empty file", "empty.gguf", ""),
      open_row(ErrorKind::Value, "bad magic", "magic.gguf", magic.bytes(), "magic"),
      open_row(ErrorKind::Value, "version 1", "version.gguf", version.bytes(), "version 1"),
      open_row(ErrorKind::Value, "truncated in the tensor table", "cut.gguf", good.substr(0, 80), "cut.gguf"),
      open_row(ErrorKind::Value, "truncated in the data", "cut-data.gguf", good.substr(0, good.size() - 4), "'w'"),
      open_row(ErrorKind::Value, "tensor count 2^62", "count.gguf", with_u64_at(good, 8, uint64_t(1) << 62),
               "tensor count"),
      open_row(ErrorKind::Value, "metadata count 2^62", "kv-count.gguf", with_u64_at(good, 16, uint64_t(1) << 62),
               "metadata count"),
      open_row(ErrorKind::Value, "string length 2^62", "long-string.gguf", long_string.bytes(), "'general.name'"),
      open_row(ErrorKind::DType, "unknown value type", "value-type.gguf", odd_value.bytes(), "'general.name'"),
      open_row(ErrorKind::DType, "unknown tensor type", "tensor-type.gguf", odd_type.bytes(), "'v'"),
      open_row(ErrorKind::Value, "misaligned offset", "misaligned.gguf", misaligned.bytes(), "'v'"),
      open_row(ErrorKind::Value, "overlapping tensors", "overlap.gguf", overlap.bytes(), "'v'"),
      open_row(ErrorKind::Value, "alignment not a power of two", "alignment.gguf", alignment.bytes(),
               "general.alignment"),
      row<DTypeError>("gguf: read an unreadable type", "'q5'",
                      [quantized_path] { io::GgufFile::open(quantized_path).read("q5"); }),
      row<ShapeError>("gguf: a shard boundary inside a quantization block", "'q'",
                      [quantized_path] { io::GgufFile::open(quantized_path).read_blocks("q", 0, 2, 0, 48); }),
      row<ValueError>("gguf: read an unknown tensor", "'nope'",
                      [quantized_path] { io::GgufFile::open(quantized_path).read("nope"); }),
      row<ValueError>("gguf: unsupported architecture", "general.architecture",
                      [mamba_path] { models::load_hf_config(mamba_path); }),
      row<ValueError>("gguf: a Llama without its sizes", "llama.embedding_length",
                      [llama_path] { models::load_hf_config(llama_path); }),
  };
}

}  // namespace bad_input
