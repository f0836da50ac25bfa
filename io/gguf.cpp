#include "io/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dtensor::io {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read little-endian
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;
// Arrays of arrays deeper than this are refused: no real file nests at all beyond one level,
// and the parser recurses once per level.
constexpr int kMaxNesting = 8;
// The smallest encodings: a key/value (empty key, type, a one-byte value) and a tensor entry
// (empty name, n_dims, one dim, type, offset). Counts above file size / these cannot fit.
constexpr uint64_t kMinKeyValueBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

// Reads the header fields one by one, each read checked against the end of the file.
class Cursor {
 public:
  Cursor(const std::byte* data, uint64_t size, const std::string& path) : data_(data), size_(size), path_(path) {}

  uint64_t position() const { return position_; }
  uint64_t remaining() const { return size_ - position_; }

  template <typename T>
  T scalar(std::string_view what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + position_, sizeof(T));
    position_ += sizeof(T);
    return value;
  }
  std::string string(std::string_view what) {
    const uint64_t length = scalar<uint64_t>(what);
    need(length, what);
    std::string text(reinterpret_cast<const char*>(data_ + position_), size_t(length));
    position_ += length;
    return text;
  }
  // ValueError unless `count` items of at least `min_bytes` each still fit in the file.
  void check_count(uint64_t count, uint64_t min_bytes, std::string_view what) const {
    check(count <= remaining() / min_bytes, "gguf",
          "{}: {} {} cannot fit in the {} bytes left of the file (corrupt count or truncated file)", path_, what, count,
          remaining());
  }

 private:
  void need(uint64_t bytes, std::string_view what) const {
    check(bytes <= remaining(), "gguf", "{}: {} needs {} bytes at offset {} but the file ends at {} (truncated?)",
          path_, what, bytes, position_, size_);
  }
  const std::byte* data_;
  uint64_t size_;
  uint64_t position_ = 0;
  const std::string& path_;
};

constexpr std::string_view kValueTypeNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                "bool", "string", "array", "u64", "i64", "f64"};

bool value_type_known(uint32_t type) { return type <= uint32_t(GgufValueType::F64); }

// The fewest bytes one array element of `type` takes (to bound an array's length).
uint64_t min_value_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::U8:
    case GgufValueType::I8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::U16:
    case GgufValueType::I16:
      return 2;
    case GgufValueType::U32:
    case GgufValueType::I32:
    case GgufValueType::F32:
      return 4;
    case GgufValueType::STRING:
    case GgufValueType::U64:
    case GgufValueType::I64:
    case GgufValueType::F64:
      return 8;
    case GgufValueType::ARRAY:
      return 12;
  }
  return 1;
}

GgufValue read_value(Cursor& cursor, GgufValueType type, const std::string& what, const std::string& path, int depth);

GgufValue read_array(Cursor& cursor, const std::string& what, const std::string& path, int depth) {
  check(depth < kMaxNesting, "gguf", "{}: {}: arrays nest deeper than {} levels", path, what, kMaxNesting);
  const uint32_t element = cursor.scalar<uint32_t>(what + " element type");
  check<DTypeError>(value_type_known(element), "gguf", "{}: {}: unknown array element type {}", path, what, element);
  const uint64_t count = cursor.scalar<uint64_t>(what + " length");
  cursor.check_count(count, min_value_bytes(GgufValueType(element)), what + " length");
  GgufValue value;
  value.type = GgufValueType::ARRAY;
  value.element_type = GgufValueType(element);
  value.items.reserve(size_t(count));
  for (uint64_t i = 0; i < count; ++i) {
    value.items.push_back(read_value(cursor, value.element_type, what, path, depth + 1));
  }
  return value;
}

template <typename T>
GgufValue integer_value(Cursor& cursor, GgufValueType type, const std::string& what) {
  GgufValue value;
  value.type = type;
  const T raw = cursor.scalar<T>(what);
  if constexpr (std::is_same_v<T, uint64_t>) {
    value.uinteger = raw;
    value.integer = raw <= uint64_t(INT64_MAX) ? int64_t(raw) : 0;
  } else {
    value.integer = int64_t(raw);
    value.uinteger = uint64_t(raw);
  }
  return value;
}

GgufValue read_value(Cursor& cursor, GgufValueType type, const std::string& what, const std::string& path, int depth) {
  GgufValue value;
  value.type = type;
  switch (type) {
    case GgufValueType::U8:
      return integer_value<uint8_t>(cursor, type, what);
    case GgufValueType::I8:
      return integer_value<int8_t>(cursor, type, what);
    case GgufValueType::U16:
      return integer_value<uint16_t>(cursor, type, what);
    case GgufValueType::I16:
      return integer_value<int16_t>(cursor, type, what);
    case GgufValueType::U32:
      return integer_value<uint32_t>(cursor, type, what);
    case GgufValueType::I32:
      return integer_value<int32_t>(cursor, type, what);
    case GgufValueType::U64:
      return integer_value<uint64_t>(cursor, type, what);
    case GgufValueType::I64:
      return integer_value<int64_t>(cursor, type, what);
    case GgufValueType::F32:
      value.real = cursor.scalar<float>(what);
      return value;
    case GgufValueType::F64:
      value.real = cursor.scalar<double>(what);
      return value;
    case GgufValueType::BOOL: {
      const uint8_t byte = cursor.scalar<uint8_t>(what);
      check(byte <= 1, "gguf", "{}: {}: a bool must be 0 or 1, got {}", path, what, byte);
      value.boolean = byte == 1;
      return value;
    }
    case GgufValueType::STRING:
      value.text = cursor.string(what);
      return value;
    case GgufValueType::ARRAY:
      return read_array(cursor, what, path, depth);
  }
  fail<DTypeError>("gguf", "{}: {}: unknown value type {}", path, what, uint32_t(type));
}

uint64_t align_up(uint64_t offset, uint64_t alignment) { return (offset + alignment - 1) / alignment * alignment; }

}  // namespace

std::string_view gguf_value_type_name(GgufValueType type) {
  return value_type_known(uint32_t(type)) ? kValueTypeNames[uint32_t(type)] : std::string_view("unknown");
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::U8:
    case GgufValueType::I8:
    case GgufValueType::U16:
    case GgufValueType::I16:
    case GgufValueType::U32:
    case GgufValueType::I32:
    case GgufValueType::U64:
    case GgufValueType::I64:
      return true;
    default:
      return false;
  }
}

bool GgufValue::is_float() const { return type == GgufValueType::F32 || type == GgufValueType::F64; }

int64_t GgufTensorInfo::row_bytes() const {
  const int64_t cols = shape.empty() ? 1 : shape.back();
  return cols / ggml_block_size(type) * ggml_block_bytes(type);
}

// GgufFile -----------------------------------------------------------------------------------

struct GgufFile::State {
  std::string path;
  const std::byte* map = nullptr;
  uint64_t size = 0;
  uint32_t version = 0;
  uint64_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;
  std::map<std::string, GgufValue, std::less<>> metadata;
  std::map<std::string, GgufTensorInfo, std::less<>> tensors;
  std::vector<std::string> names;

  ~State() {
    if (map != nullptr) ::munmap(const_cast<std::byte*>(map), size);
  }
  void parse();
  void parse_metadata(Cursor& cursor, uint64_t count);
  void parse_alignment();
  GgufTensorInfo parse_tensor_info(Cursor& cursor, uint64_t index);
  void place_tensors();
};

void GgufFile::State::parse() {
  Cursor cursor(map, size, path);
  const uint32_t magic = cursor.scalar<uint32_t>("the magic");
  check(magic == kMagic, "gguf", "{}: bad magic 0x{:08x}, expected \"GGUF\" (not a GGUF file?)", path, magic);
  version = cursor.scalar<uint32_t>("the version");
  if (version != 2 && version != 3) {
    const bool byte_swapped = (version & 0xffffff) == 0;  // 2 or 3 written big-endian
    fail("gguf", "{}: GGUF version {} is not supported (little-endian versions 2 and 3 are){}", path, version,
         byte_swapped ? "; a big-endian file?" : "");
  }
  const uint64_t tensor_count = cursor.scalar<uint64_t>("the tensor count");
  const uint64_t kv_count = cursor.scalar<uint64_t>("the metadata count");
  cursor.check_count(kv_count, kMinKeyValueBytes, "metadata count");
  parse_metadata(cursor, kv_count);
  parse_alignment();
  cursor.check_count(tensor_count, kMinTensorInfoBytes, "tensor count");
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info = parse_tensor_info(cursor, i);
    check(!tensors.contains(info.name), "gguf", "{}: tensor '{}' appears twice in the tensor table", path, info.name);
    names.push_back(info.name);
    tensors.emplace(info.name, std::move(info));
  }
  data_offset = align_up(cursor.position(), alignment);
  check(data_offset <= size || tensor_count == 0, "gguf",
        "{}: the data section starts at {} (the tensor table's end aligned to {}) past the end of the file ({} bytes; "
        "truncated?)",
        path, data_offset, alignment, size);
  place_tensors();
}

void GgufFile::State::parse_metadata(Cursor& cursor, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    std::string key = cursor.string(fmt::format("metadata key #{}", i));
    const std::string what = fmt::format("metadata '{}'", key);
    const uint32_t type = cursor.scalar<uint32_t>(what + " value type");
    check<DTypeError>(value_type_known(type), "gguf", "{}: {}: unknown value type {}", path, what, type);
    GgufValue value = read_value(cursor, GgufValueType(type), what, path, 0);
    check(!metadata.contains(key), "gguf", "{}: metadata key '{}' appears twice", path, key);
    metadata.emplace(std::move(key), std::move(value));
  }
}

void GgufFile::State::parse_alignment() {
  auto it = metadata.find("general.alignment");
  if (it == metadata.end()) return;
  const GgufValue& value = it->second;
  check<DTypeError>(value.is_integer(), "gguf", "{}: metadata 'general.alignment' must be an integer, got {}", path,
                    gguf_value_type_name(value.type));
  const uint64_t align = value.uinteger;
  check(align != 0 && (align & (align - 1)) == 0 && align <= (uint64_t(1) << 30), "gguf",
        "{}: metadata 'general.alignment' = {} must be a power of two (at most 2^30)", path, value.integer);
  alignment = align;
}

GgufTensorInfo GgufFile::State::parse_tensor_info(Cursor& cursor, uint64_t index) {
  GgufTensorInfo info;
  info.name = cursor.string(fmt::format("tensor #{} name", index));
  const std::string what = fmt::format("{}: tensor '{}'", path, info.name);
  const uint32_t n_dims = cursor.scalar<uint32_t>("tensor '" + info.name + "' n_dims");
  check<ShapeError>(n_dims >= 1 && n_dims <= uint32_t(kMaxDims), "gguf", "{}: n_dims {} must be 1 to {}", what, n_dims,
                    kMaxDims);
  std::vector<uint64_t> ne(n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) ne[d] = cursor.scalar<uint64_t>("tensor '" + info.name + "' dims");
  const uint32_t type = cursor.scalar<uint32_t>("tensor '" + info.name + "' type");
  info.type = GgmlType(type);
  check<DTypeError>(ggml_type_known(info.type), "gguf", "{}: {} is not a ggml type dtensor knows", what,
                    ggml_type_name(info.type));
  const uint64_t offset = cursor.scalar<uint64_t>("tensor '" + info.name + "' offset");

  const uint64_t block = uint64_t(ggml_block_size(info.type));
  check<ShapeError>(ne[0] % block == 0, "gguf", "{}: the innermost dim {} is not a multiple of {}'s block size {}",
                    what, ne[0], ggml_type_name(info.type), block);
  // A row's bytes must fit int64 even when another dim is 0 and the tensor holds no bytes at all.
  uint64_t bytes = 0;
  check<ShapeError>(!__builtin_mul_overflow(ne[0] / block, uint64_t(ggml_block_bytes(info.type)), &bytes) &&
                        bytes <= uint64_t(INT64_MAX),
                    "gguf", "{}: a row of {} {} elements overflows a 64-bit byte count", what, ne[0],
                    ggml_type_name(info.type));
  int64_t extent = 1;  // as in safetensors: the strides' product, a zero dim counted as 1
  for (uint32_t d = 0; d < n_dims; ++d) {
    check<ShapeError>(ne[d] <= uint64_t(INT64_MAX), "gguf", "{}: dim {} = {} exceeds int64", what, d, ne[d]);
    if (d > 0) {
      check<ShapeError>(!__builtin_mul_overflow(bytes, ne[d], &bytes), "gguf", "{}: dims overflow a 64-bit byte count",
                        what);
    }
    check<ShapeError>(!__builtin_mul_overflow(extent, std::max<int64_t>(int64_t(ne[d]), 1), &extent), "gguf",
                      "{}: dims overflow int64 strides", what);
  }
  for (uint32_t d = n_dims; d-- > 0;) info.shape.push_back(int64_t(ne[d]));
  check(offset % alignment == 0, "gguf", "{}: offset {} is not a multiple of the alignment {}", what, offset,
        alignment);
  info.offset = offset;  // relative until place_tensors
  info.bytes = bytes;
  return info;
}

void GgufFile::State::place_tensors() {
  const uint64_t data_size = size - std::min(size, data_offset);
  for (auto& [name, info] : tensors) {
    check(info.offset <= data_size && info.bytes <= data_size - info.offset, "gguf",
          "{}: tensor '{}': bytes [{}, {}) of the data section run past its end ({} bytes; truncated?)", path, name,
          info.offset, info.offset + info.bytes, data_size);
    info.offset += data_offset;
  }
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& [name, info] : tensors) by_offset.push_back(&info);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& previous = *by_offset[i - 1];
    const GgufTensorInfo& current = *by_offset[i];
    if (previous.bytes == 0 || current.bytes == 0) continue;
    check(previous.offset + previous.bytes <= current.offset, "gguf",
          "{}: tensors '{}' (bytes [{}, {}) of the data section) and '{}' (from byte {}) overlap", path, previous.name,
          previous.offset - data_offset, previous.offset + previous.bytes - data_offset, current.name,
          current.offset - data_offset);
  }
}

GgufFile::GgufFile(std::shared_ptr<const State> state) : state_(std::move(state)) {}

GgufFile GgufFile::open(const std::string& path) {
  auto state = std::make_shared<State>();
  state->path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  check(fd >= 0, "gguf", "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  const int stat_errno = errno;
  if (!stat_ok || st.st_size < 24) {
    ::close(fd);
    check(stat_ok, "gguf", "{}: cannot stat: {}", path, std::strerror(stat_errno));
    fail("gguf", "{}: the file has {} bytes, fewer than the 24-byte GGUF header (truncated?)", path, st.st_size);
  }
  state->size = uint64_t(st.st_size);
  void* map = ::mmap(nullptr, state->size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file
  check(map != MAP_FAILED, "gguf", "{}: mmap failed: {}", path, std::strerror(map_errno));
  state->map = static_cast<const std::byte*>(map);
  state->parse();
  return GgufFile(std::move(state));
}

const std::string& GgufFile::path() const { return state_->path; }
uint32_t GgufFile::version() const { return state_->version; }
uint64_t GgufFile::alignment() const { return state_->alignment; }
uint64_t GgufFile::data_offset() const { return state_->data_offset; }
uint64_t GgufFile::file_bytes() const { return state_->size; }
const std::map<std::string, GgufValue, std::less<>>& GgufFile::metadata() const { return state_->metadata; }
bool GgufFile::has(std::string_view key) const { return state_->metadata.contains(key); }
const std::vector<std::string>& GgufFile::names() const { return state_->names; }
bool GgufFile::contains(std::string_view name) const { return state_->tensors.contains(name); }

const GgufValue& GgufFile::value(std::string_view key) const {
  auto it = state_->metadata.find(key);
  check(it != state_->metadata.end(), "gguf", "{}: no metadata key '{}'", path(), key);
  return it->second;
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  auto it = state_->tensors.find(name);
  if (it == state_->tensors.end()) {
    fail<ValueError>("gguf", "{}: no tensor named '{}' (the file holds {} tensors)", path(), name,
                     state_->tensors.size());
  }
  return it->second;
}

const std::byte* GgufFile::state_map() const { return state_->map; }
const std::byte* GgufFile::tensor_data(std::string_view name) const { return state_->map + tensor(name).offset; }

}  // namespace dtensor::io
