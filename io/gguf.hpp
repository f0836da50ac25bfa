// Reading GGUF files (llama.cpp's format, versions 2 and 3) through a memory map.
//
// Layout (little-endian): "GGUF", uint32 version, uint64 tensor count, uint64 metadata count,
// the metadata key/values (a string key, a uint32 value type, the value; arrays nest), the tensor
// table (name, uint32 n_dims, n_dims uint64 dims innermost first, uint32 ggml type, uint64 offset
// relative to the data section), padding to `general.alignment` (default 32), the data section.
//
// open() validates everything before any tensor byte is touched: magic, version, counts bounded
// by the file size, every value type and length, the alignment (a power of two), each tensor's
// dims, type, aligned offset and byte size inside the data section, and that no two tensors
// overlap. Each violation is a typed error naming the file and the key, tensor or field.
//
// Shapes are ours (row-major): ggml's ne reversed, so ggml [576, 49152] reads as [49152, 576] and
// a row is ggml's innermost dim, a whole number of quantization blocks.
//
//   GgufFile file = GgufFile::open("model.gguf");
//   int64_t layers = file.get_int("llama.block_count");
//   Tensor w = file.read("blk.0.attn_q.weight");               // dequantized to f32
//   Tensor box = file.read_block("token_embd.weight", {0, 0}, {128, 576});
//   Tensor raw = file.read_blocks("blk.0.ffn_up.weight", 0, 1536, 0, 576);  // U8, ggml blocks
#pragma once

#include "io/tensor_source.hpp"
#include "tensor/tensor.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dtensor::io {

// ggml tensor type ids (ggml.h). Reading supports F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K
// and Q6_K; the other ids are known by name and size only.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

// "Q4_1", "F32", ...; "unknown type 99" for an id ggml does not define.
std::string ggml_type_name(GgmlType type);
bool ggml_type_known(GgmlType type);
// True for the types read() and read_block() dequantize.
bool ggml_type_readable(GgmlType type);
// Elements per block (1 for F32/F16/BF16, 32 for Q8_0/Q4_0/Q4_1, 256 for the K-quants) and
// bytes per block. DTypeError naming the type for an unknown id.
int64_t ggml_block_size(GgmlType type);
int64_t ggml_block_bytes(GgmlType type);
// Decodes `blocks` whole blocks of a readable type starting at `src` into blocks * block_size
// floats (DTypeError for a type that is not readable).
void dequantize_blocks(GgmlType type, const std::byte* src, int64_t blocks, float* dst);

// GGUF metadata value types (the spec's gguf_metadata_value_type).
enum class GgufValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
std::string_view gguf_value_type_name(GgufValueType type);

// One metadata value. Integers are kept as `integer` (U64 above INT64_MAX as `uinteger` only),
// floats as `real`; an array holds `items` of `element_type`.
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  int64_t integer = 0;
  uint64_t uinteger = 0;
  double real = 0;
  bool boolean = false;
  std::string text;
  GgufValueType element_type = GgufValueType::U8;
  std::vector<GgufValue> items;

  bool is_integer() const;
  bool is_float() const;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  Shape shape;          // ours: ggml's ne reversed
  uint64_t offset = 0;  // absolute byte offset in the file
  uint64_t bytes = 0;
  int64_t row_bytes() const;  // bytes of one row (the innermost dim, whole blocks)
};

class GgufFile {
 public:
  // Maps and validates the file (ValueError / ShapeError / DTypeError naming file and field).
  static GgufFile open(const std::string& path);

  const std::string& path() const;
  uint32_t version() const;
  uint64_t alignment() const;
  uint64_t data_offset() const;  // where the data section starts in the file
  uint64_t file_bytes() const;

  // Metadata. The typed getters throw ValueError naming the key and the file when it is missing,
  // DTypeError naming the key, the wanted and the stored type when it has another type.
  const std::map<std::string, GgufValue, std::less<>>& metadata() const;
  bool has(std::string_view key) const;
  const GgufValue& value(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;   // any integer type that fits int64
  double get_float(std::string_view key) const;  // F32 or F64
  bool get_bool(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::vector<double> get_float_array(std::string_view key) const;
  // The length of an array value (of any element type).
  int64_t array_size(std::string_view key) const;

  // Tensor names in the order of the tensor table.
  const std::vector<std::string>& names() const;
  bool contains(std::string_view name) const;
  // ValueError naming the tensor and the file if it is not there.
  const GgufTensorInfo& tensor(std::string_view name) const;

  // A new contiguous f32 tensor holding the whole tensor dequantized (DTypeError naming the
  // tensor and its type for a type that is not readable).
  Tensor read(std::string_view name) const;
  // The box [offset, offset + sizes) dequantized; a box may start or end inside a block (the
  // covering blocks of the rows asked are decoded).
  Tensor read_block(std::string_view name, const Shape& offset, const Shape& sizes) const;
  // The same into a caller's f32 view (`out` gives the sizes).
  void read_block_into(std::string_view name, const Shape& offset, const Tensor& out) const;
  // The raw ggml blocks of rows [row0, row0 + rows) and columns [col0, col0 + cols) of a tensor
  // seen as [rows, innermost dim]: a U8 tensor [rows, cols / block_size * block_bytes]. ShapeError
  // naming the tensor, the block size and the column when col0 or col0 + cols splits a block.
  Tensor read_blocks(std::string_view name, int64_t row0, int64_t rows, int64_t col0, int64_t cols) const;
  // The mapped bytes of a tensor (valid while any copy of this GgufFile lives).
  const std::byte* tensor_data(std::string_view name) const;

 private:
  struct State;
  explicit GgufFile(std::shared_ptr<const State> state);
  const std::byte* state_map() const;  // the whole mapping
  std::shared_ptr<const State> state_;
};

// A box reader of the tensor `name` of `file` dequantizing to f32 (ValueError naming both if it
// is not there, DTypeError if its type is not readable).
TensorSource tensor_source(const GgufFile& file, const std::string& name);

}  // namespace dtensor::io
