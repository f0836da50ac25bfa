#include "io/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dtensor::io {

namespace {

// A box is copied out of the mapping in slabs of about this many source bytes, each slab's pages
// released before the next: the most of the mapping a read holds resident at once.
constexpr uint64_t kResidentSlabBytes = uint64_t(4) << 20;

// A header larger than this is refused before it is parsed (the reference implementation's
// bound is 100 MB too); real headers of 100k tensors stay far below it.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeName {
  std::string_view name;
  DType dtype;
};
constexpr DTypeName kDTypeNames[] = {
    {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
    {"I64", DType::I64}, {"I32", DType::I32}, {"I8", DType::I8},   {"U8", DType::U8},
};
// Valid safetensors dtypes without a DType of ours: refused as unsupported, not as unknown.
constexpr std::string_view kUnsupportedDTypes[] = {"BOOL",    "I16",     "U16", "U32",     "U64",     "F8_E4M3",
                                                   "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};

}  // namespace

std::string_view safetensors_dtype_name(DType dtype) {
  for (const DTypeName& entry : kDTypeNames) {
    if (entry.dtype == dtype) return entry.name;
  }
  fail<DTypeError>("safetensors", "dtype {} has no safetensors name", dtype);
}

DType dtype_from_safetensors(std::string_view name, const std::string& what) {
  for (const DTypeName& entry : kDTypeNames) {
    if (entry.name == name) return entry.dtype;
  }
  const bool known =
      std::find(std::begin(kUnsupportedDTypes), std::end(kUnsupportedDTypes), name) != std::end(kUnsupportedDTypes);
  fail<DTypeError>("safetensors", "{}: dtype \"{}\" is {} (expected one of F64 F32 F16 BF16 I64 I32 I8 U8)", what, name,
                   known ? "not supported by dtensor" : "unknown");
}

void copy_box_from_dense(const std::byte* base, const Shape& shape, const Shape& offset, const Tensor& out) {
  check_box(shape, offset, out.shape(), "copy_box_from_dense");
  check<DeviceError>(out.device().is_cpu(), "read_block", "the destination must be a CPU tensor, got {}", out.device());
  if (out.numel() == 0) return;
  const size_t elem = out.element_size();
  const Shape src_strides = contiguous_strides(shape);
  const Shape& sizes = out.shape();
  const int64_t ndim = int64_t(shape.size());
  auto* dst = static_cast<std::byte*>(out.data_ptr());
  int64_t src_start = 0;
  for (int64_t d = 0; d < ndim; ++d) src_start += offset[d] * src_strides[d];
  if (ndim == 0) {
    std::memcpy(dst, base, elem);
    return;
  }
  if (sizes.back() != 1 && out.stride(-1) != 1) {  // rare: stage through a dense buffer
    Tensor dense = Tensor::empty(sizes, out.dtype());
    copy_box_from_dense(base, shape, offset, dense);
    out.copy_from(dense);
    return;
  }
  // Merge trailing dims into one run while the box covers the source dim below fully (so the
  // source bytes are adjacent) and the destination is dense across them too.
  int64_t first = ndim - 1;
  int64_t run = sizes[ndim - 1];
  while (first > 0 && sizes[first] == shape[first] && (sizes[first - 1] == 1 || out.stride(first - 1) == run)) {
    --first;
    run *= sizes[first];
  }
  const size_t run_bytes = size_t(run) * elem;
  int64_t outer = 1;
  for (int64_t d = 0; d < first; ++d) outer *= sizes[d];
  std::vector<int64_t> index(size_t(first), 0);
  for (int64_t n = 0; n < outer; ++n) {
    int64_t src = src_start, dst_elems = 0;
    for (int64_t d = 0; d < first; ++d) {
      src += index[d] * src_strides[d];
      dst_elems += index[d] * out.stride(d);
    }
    std::memcpy(dst + dst_elems * int64_t(elem), base + src * int64_t(elem), run_bytes);
    for (int64_t d = first - 1; d >= 0; --d) {
      if (++index[d] < sizes[d]) break;
      index[d] = 0;
    }
  }
}

// SafetensorsFile -----------------------------------------------------------------------------

struct SafetensorsFile::State {
  struct Entry {
    TensorInfo info;
    uint64_t begin = 0;  // absolute byte offsets in the file
    uint64_t end = 0;
  };
  std::string path;
  const std::byte* map = nullptr;
  uint64_t size = 0;
  std::map<std::string, Entry, std::less<>> entries;
  std::vector<std::string> names;
  std::map<std::string, std::string> metadata;

  ~State() {
    if (map != nullptr) ::munmap(const_cast<std::byte*>(map), size);
  }
  const Entry& entry(std::string_view name) const {
    auto it = entries.find(name);
    if (it == entries.end()) {
      fail<ValueError>("safetensors", "{}: no tensor named '{}' (the file holds {} tensors)", path, name,
                       entries.size());
    }
    return it->second;
  }
  void parse_header(const nlohmann::json& header, uint64_t data_start);
  Entry parse_entry(const std::string& name, const nlohmann::json& value, uint64_t data_start) const;
};

SafetensorsFile::State::Entry SafetensorsFile::State::parse_entry(const std::string& name, const nlohmann::json& value,
                                                                  uint64_t data_start) const {
  const std::string what = fmt::format("{}: tensor '{}'", path, name);
  check(value.is_object(), "safetensors", "{}: expected an object, got {}", what, value.dump());
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    check(value.contains(key), "safetensors", "{}: missing \"{}\"", what, key);
  }
  const nlohmann::json& dtype = value["dtype"];
  check<DTypeError>(dtype.is_string(), "safetensors", "{}: \"dtype\" must be a string, got {}", what, dtype.dump());
  Entry entry;
  entry.info.dtype = dtype_from_safetensors(dtype.get<std::string>(), what);

  const nlohmann::json& shape = value["shape"];
  check<ShapeError>(shape.is_array(), "safetensors", "{}: \"shape\" must be an array, got {}", what, shape.dump());
  uint64_t bytes = dtype_size(entry.info.dtype);
  int64_t extent = 1;  // the product of the dims with a zero counted as 1: what the tensor's strides multiply
  for (const nlohmann::json& dim : shape) {
    check<ShapeError>(dim.is_number_unsigned() && dim.get<uint64_t>() <= uint64_t(INT64_MAX), "safetensors",
                      "{}: shape {} must hold non-negative integers", what, shape.dump());
    check<ShapeError>(!__builtin_mul_overflow(bytes, dim.get<uint64_t>(), &bytes), "safetensors",
                      "{}: shape {} overflows a 64-bit byte count", what, shape.dump());
    // An empty tensor holds 0 bytes whatever its other dims, but its strides still multiply them.
    check<ShapeError>(!__builtin_mul_overflow(extent, std::max<int64_t>(dim.get<int64_t>(), 1), &extent), "safetensors",
                      "{}: shape {} overflows int64 strides", what, shape.dump());
    entry.info.shape.push_back(dim.get<int64_t>());
  }

  const nlohmann::json& offsets = value["data_offsets"];
  const bool pair =
      offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned();
  check(pair, "safetensors", "{}: \"data_offsets\" must be [begin, end] of non-negative integers, got {}", what,
        offsets.dump());
  const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  const uint64_t data_size = size - data_start;
  check(begin <= end && end <= data_size, "safetensors",
        "{}: data_offsets [{}, {}] must satisfy begin <= end <= {} (the data section's size)", what, begin, end,
        data_size);
  check<ShapeError>(end - begin == bytes, "safetensors",
                    "{}: data_offsets [{}, {}] hold {} bytes, expected {} (shape {} x {} bytes of {})", what, begin,
                    end, end - begin, bytes, shape_str(entry.info.shape), dtype_size(entry.info.dtype),
                    dtype.get<std::string>());
  entry.begin = data_start + begin;
  entry.end = data_start + end;
  return entry;
}

void SafetensorsFile::State::parse_header(const nlohmann::json& header, uint64_t data_start) {
  check(header.is_object(), "safetensors", "{}: the header must be a JSON object, got {}", path, header.type_name());
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      check(value.is_object(), "safetensors", "{}: \"__metadata__\" must be an object of strings", path);
      for (const auto& [key, text] : value.items()) {
        check(text.is_string(), "safetensors", "{}: \"__metadata__\" entry '{}' must be a string, got {}", path, key,
              text.dump());
        metadata[key] = text.get<std::string>();
      }
      continue;
    }
    entries[name] = parse_entry(name, value, data_start);
  }
  for (const auto& [name, entry] : entries) names.push_back(name);
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    return entries.find(a)->second.begin < entries.find(b)->second.begin;
  });
  // Sorted by begin, a tensor overlaps its successor exactly when it ends after the successor
  // begins (empty tensors overlap nothing).
  for (size_t i = 1; i < names.size(); ++i) {
    const Entry& previous = entries.find(names[i - 1])->second;
    const Entry& current = entries.find(names[i])->second;
    if (previous.begin == previous.end || current.begin == current.end) continue;
    check(previous.end <= current.begin, "safetensors",
          "{}: tensors '{}' (data_offsets [{}, {}]) and '{}' (data_offsets [{}, {}]) overlap", path, names[i - 1],
          previous.begin - data_start, previous.end - data_start, names[i], current.begin - data_start,
          current.end - data_start);
  }
}

SafetensorsFile::SafetensorsFile(std::shared_ptr<const State> state) : state_(std::move(state)) {}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto state = std::make_shared<State>();
  state->path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  check(fd >= 0, "safetensors", "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  const int stat_errno = errno;
  if (!stat_ok || st.st_size < 8) {
    ::close(fd);
    check(stat_ok, "safetensors", "{}: cannot stat: {}", path, std::strerror(stat_errno));
    fail("safetensors", "{}: the file has {} bytes, fewer than the 8-byte header length (truncated?)", path,
         st.st_size);
  }
  state->size = uint64_t(st.st_size);
  void* map = ::mmap(nullptr, state->size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file
  check(map != MAP_FAILED, "safetensors", "{}: mmap failed: {}", path, std::strerror(map_errno));
  state->map = static_cast<const std::byte*>(map);

  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | uint64_t(state->map[i]);
  check(header_bytes <= kMaxHeaderBytes, "safetensors",
        "{}: header length {} exceeds the bound of {} bytes (not a safetensors file?)", path, header_bytes,
        kMaxHeaderBytes);
  check(8 + header_bytes <= state->size, "safetensors",
        "{}: header length {} runs past the end of the file ({} bytes; truncated?)", path, header_bytes, state->size);
  const char* text = reinterpret_cast<const char*>(state->map + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_bytes);
  } catch (const nlohmann::json::exception& e) {
    fail("safetensors", "{}: the header is not valid JSON: {}", path, e.what());
  }
  state->parse_header(header, 8 + header_bytes);
  return SafetensorsFile(std::move(state));
}

const std::string& SafetensorsFile::path() const { return state_->path; }
const std::vector<std::string>& SafetensorsFile::names() const { return state_->names; }
bool SafetensorsFile::contains(std::string_view name) const { return state_->entries.contains(name); }
const TensorInfo& SafetensorsFile::info(std::string_view name) const { return state_->entry(name).info; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return state_->metadata; }
uint64_t SafetensorsFile::file_bytes() const { return state_->size; }

Tensor SafetensorsFile::read(std::string_view name) const {
  const TensorInfo& info = this->info(name);
  return read_block(name, Shape(info.shape.size(), 0), info.shape);
}

Tensor SafetensorsFile::read_block(std::string_view name, const Shape& offset, const Shape& sizes) const {
  const TensorInfo& info = this->info(name);
  check_box(info.shape, offset, sizes, fmt::format("{}: tensor '{}'", path(), name));
  Tensor out = Tensor::empty(sizes, info.dtype);
  read_block_into(name, offset, out);
  return out;
}

void SafetensorsFile::read_block_into(std::string_view name, const Shape& offset, const Tensor& out) const {
  const State::Entry& entry = state_->entry(name);
  const std::string what = fmt::format("{}: tensor '{}'", path(), name);
  check<DTypeError>(out.dtype() == entry.info.dtype, "read_block", "{}: destination dtype {} differs from {}", what,
                    out.dtype(), entry.info.dtype);
  check_box(entry.info.shape, offset, out.shape(), what);
  const std::byte* base = state_->map + entry.begin;
  const Shape& shape = entry.info.shape;
  if (shape.empty() || out.numel() == 0) {
    copy_box_from_dense(base, shape, offset, out);
    return;
  }
  // Copy in slabs of whole rows of dim 0 and give each slab's pages back right after it: they
  // stay in the page cache, but no longer count as this process's resident memory. A rank reading
  // strided columns touches every page of the rows it spans, so without slabs a column slice of a
  // large tensor would briefly hold the whole tensor resident.
  const uint64_t row_bytes = (entry.end - entry.begin) / uint64_t(shape[0]);
  const int64_t rows_per_slab = std::max<int64_t>(1, int64_t(kResidentSlabBytes / std::max<uint64_t>(row_bytes, 1)));
  for (int64_t row = 0; row < out.size(0); row += rows_per_slab) {
    const int64_t rows = std::min(rows_per_slab, out.size(0) - row);
    Shape slab_offset = offset;
    slab_offset[0] += row;
    copy_box_from_dense(base, shape, slab_offset, out.narrow(0, row, rows));
    const uint64_t begin = entry.begin + uint64_t(slab_offset[0]) * row_bytes;
    release_pages(begin, begin + uint64_t(rows) * row_bytes);
  }
}

void SafetensorsFile::release_pages(uint64_t begin, uint64_t end) const {
  // Whole pages around [begin, end): a page shared with a neighbour is merely read again from the
  // page cache if the neighbour is read later (the mapping is read-only, nothing is lost).
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t first = begin / page * page;
  const uint64_t last = std::min(state_->size, (end + page - 1) / page * page);
  if (last > first) ::madvise(const_cast<std::byte*>(state_->map) + first, last - first, MADV_DONTNEED);
}

TensorSource tensor_source(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo& info = file.info(name);
  return {info.dtype, info.shape,
          [file, name](const Shape& offset, const Tensor& out) { file.read_block_into(name, offset, out); }};
}

}  // namespace dtensor::io
