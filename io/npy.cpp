#include "io/npy.hpp"

#include "tensor/error.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

namespace dtensor::io {

namespace {

constexpr const char* kReadOp = "read_npy";
constexpr std::string_view kMagic = "\x93NUMPY";

std::string shape_tuple(const Shape& shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

// How an element is stored in the file and which dtype of ours it becomes.
struct NpyElement {
  std::string_view descr;
  size_t file_bytes;
  DType dtype;
};
constexpr NpyElement kElements[] = {
    {"<f4", 4, DType::F32}, {"<f8", 8, DType::F64}, {"<i8", 8, DType::I64},
    {"<i4", 4, DType::I32}, {"|i1", 1, DType::I8},  {"|u1", 1, DType::U8},
    {"<i2", 2, DType::I32}, {"<u2", 2, DType::I32}, {"<u4", 4, DType::I64},
};

struct NpyHeader {
  NpyElement element;
  Shape shape;
  uint64_t data_offset = 0;  // where the elements start in the file
  uint64_t data_bytes = 0;   // what the shape and descr say they take
};

// The header dict numpy writes, a Python literal such as
//   {'descr': '<i8', 'fortran_order': False, 'shape': (4, 129), }
// parsed strictly: the three keys once each and nothing else, as numpy.load requires.
class HeaderDictParser {
 public:
  HeaderDictParser(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  NpyHeader parse() {
    std::optional<std::string> descr;
    std::optional<bool> fortran_order;
    std::optional<Shape> shape;
    expect('{');
    while (!accept('}')) {
      const std::string key = parse_string("a key");
      expect(':');
      if (key == "descr" && !descr) {
        descr = parse_string("'descr'");
      } else if (key == "fortran_order" && !fortran_order) {
        fortran_order = parse_bool();
      } else if (key == "shape" && !shape) {
        shape = parse_shape();
      } else {
        fail<ValueError>(kReadOp, "{}: header key '{}' is {}", path_, key,
                         key == "descr" || key == "fortran_order" || key == "shape" ? "repeated" : "not a .npy key");
      }
      if (!accept(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    check(pos_ == text_.size(), kReadOp, "{}: header has '{}' after the dict", path_, text_.substr(pos_));
    check(descr && fortran_order && shape, kReadOp, "{}: header lacks '{}'", path_,
          !descr           ? "descr"
          : !fortran_order ? "fortran_order"
                           : "shape");
    check(!*fortran_order, kReadOp, "{}: 'fortran_order' is True; only C-order arrays are read", path_);
    NpyHeader header;
    header.element = element(*descr);
    header.shape = *shape;
    return header;
  }

 private:
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\t')) ++pos_;
  }
  bool accept(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    check(accept(c), kReadOp, "{}: header dict: expected '{}' at byte {} of '{}'", path_, c, pos_, text_);
  }
  std::string parse_string(const char* what) {
    skip_space();
    const char quote = pos_ < text_.size() ? text_[pos_] : '\0';
    check(quote == '\'' || quote == '"', kReadOp, "{}: header dict: {} must be a quoted string at byte {} of '{}'",
          path_, what, pos_, text_);
    const size_t end = text_.find(quote, pos_ + 1);
    check(end != std::string_view::npos, kReadOp, "{}: header dict: unterminated string at byte {}", path_, pos_);
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return value;
  }
  bool parse_bool() {
    skip_space();
    for (const auto& [word, value] : {std::pair{std::string_view("True"), true}, {std::string_view("False"), false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    fail<ValueError>(kReadOp, "{}: 'fortran_order' must be True or False at byte {} of '{}'", path_, pos_, text_);
  }
  Shape parse_shape() {
    check<ShapeError>(accept('('), kReadOp, "{}: 'shape' must be a tuple at byte {} of '{}'", path_, pos_, text_);
    Shape shape;
    while (!accept(')')) {
      shape.push_back(parse_dim());
      if (!accept(',')) {
        check<ShapeError>(accept(')'), kReadOp, "{}: 'shape': expected ',' or ')' at byte {} of '{}'", path_, pos_,
                          text_);
        break;
      }
    }
    return shape;
  }
  int64_t parse_dim() {
    skip_space();
    const size_t start = pos_;
    uint64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      const bool overflow = __builtin_mul_overflow(value, 10, &value) ||
                            __builtin_add_overflow(value, uint64_t(text_[pos_] - '0'), &value) ||
                            value > uint64_t(INT64_MAX);
      check<ShapeError>(!overflow, kReadOp, "{}: 'shape' dim at byte {} exceeds int64", path_, start);
      ++pos_;
    }
    check<ShapeError>(pos_ > start, kReadOp, "{}: 'shape' must hold non-negative integers, at byte {} of '{}'", path_,
                      start, text_);
    return int64_t(value);
  }
  NpyElement element(const std::string& descr) const {
    for (const NpyElement& e : kElements) {
      if (e.descr == descr) return e;
    }
    const bool big_endian = !descr.empty() && descr[0] == '>';
    fail<DTypeError>(kReadOp, "{}: 'descr' '{}' is {} (expected one of <f4 <f8 <i8 <i4 <i2 <u2 <u4 |i1 |u1)", path_,
                     descr, big_endian ? "big-endian" : "not supported");
  }

  std::string_view text_;
  const std::string& path_;
  size_t pos_ = 0;
};

uint64_t little_endian(const std::string& bytes, size_t offset, size_t count) {
  uint64_t value = 0;
  for (size_t i = 0; i < count; ++i) value |= uint64_t(uint8_t(bytes[offset + i])) << (8 * i);
  return value;
}

// Reads and checks everything before the data: magic, version, header length, dict, and that the
// file holds exactly the bytes the shape needs.
NpyHeader read_header(std::ifstream& file, const std::string& path, uint64_t file_size) {
  std::string prefix(12, '\0');
  file.read(prefix.data(), std::streamsize(std::min<uint64_t>(file_size, prefix.size())));
  check(file_size >= 10 && std::string_view(prefix).substr(0, 6) == kMagic, kReadOp,
        "{}: not a .npy file (it does not start with \"\\x93NUMPY\" and a version)", path);
  const int major = uint8_t(prefix[6]), minor = uint8_t(prefix[7]);
  check((major == 1 || major == 2 || major == 3) && minor == 0, kReadOp,
        "{}: format version {}.{} is not 1.0, 2.0 or 3.0", path, major, minor);
  const size_t length_bytes = major == 1 ? 2 : 4;
  check(file_size >= 8 + length_bytes, kReadOp, "{}: truncated in the header length", path);
  const uint64_t header_length = little_endian(prefix, 8, length_bytes);
  const uint64_t dict_start = 8 + length_bytes;
  check(header_length <= file_size - dict_start, kReadOp,
        "{}: truncated: the header length says {} bytes, the file has {} after it", path, header_length,
        file_size - dict_start);
  std::string dict(header_length, '\0');
  file.seekg(std::streamoff(dict_start));
  file.read(dict.data(), std::streamsize(header_length));
  check(bool(file), kReadOp, "{}: cannot read the header", path);

  NpyHeader header = HeaderDictParser(dict, path).parse();
  header.data_offset = dict_start + header_length;
  uint64_t bytes = header.element.file_bytes;
  int64_t extent = 1;  // the product of the dims with a zero counted as 1: what the array's strides multiply
  for (int64_t dim : header.shape) {
    check<ShapeError>(!__builtin_mul_overflow(bytes, uint64_t(dim), &bytes), kReadOp,
                      "{}: 'shape' {} overflows a 64-bit byte count", path, shape_str(header.shape));
    // An empty array holds 0 bytes whatever its other dims, but its strides still multiply them.
    check<ShapeError>(!__builtin_mul_overflow(extent, std::max<int64_t>(dim, 1), &extent), kReadOp,
                      "{}: 'shape' {} overflows int64 strides", path, shape_str(header.shape));
  }
  header.data_bytes = bytes;
  const uint64_t present = file_size - header.data_offset;
  check(present == bytes, kReadOp, "{}: {} data bytes for 'shape' {} of '{}', expected {}{}", path, present,
        shape_str(header.shape), header.element.descr, bytes, present < bytes ? " (truncated)" : "");
  return header;
}

// Elements stored narrower or unsigned than their dtype of ours, widened.
template <typename Stored, typename Wide>
Tensor read_widened(std::ifstream& file, const NpyHeader& header) {
  std::vector<Stored> stored(size_t(header.data_bytes / sizeof(Stored)));
  file.read(reinterpret_cast<char*>(stored.data()), std::streamsize(header.data_bytes));
  return Tensor::from_vector(std::vector<Wide>(stored.begin(), stored.end()), header.shape);
}

}  // namespace

std::string npy_header(const Shape& shape) {
  std::string dict = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", shape_tuple(shape));
  const size_t prefix = 10;  // magic (6) + version (2) + header length (2)
  const size_t padded = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(padded - prefix - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::string header = "\x93NUMPY";
  header += char(1);
  header += char(0);
  header += char(dict.size() & 0xff);
  header += char(dict.size() >> 8);
  return header + dict;
}

void write_npy(const std::string& path, const Tensor& tensor) {
  check<DTypeError>(is_floating(tensor.dtype()), "write_npy", "{}: expected a floating tensor, got {}", path,
                    dtype_name(tensor.dtype()));
  const Tensor data = tensor.to(Device::cpu()).to(DType::F32).contiguous();
  const std::string header = npy_header(data.shape());
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(header.data(), std::streamsize(header.size()));
  file.write(static_cast<const char*>(data.data_ptr()), std::streamsize(data.nbytes()));
  file.close();
  check(bool(file), "write_npy", "{}: cannot write the file", path);
}

Tensor read_npy(const std::string& path) {
  std::error_code error;
  const uint64_t file_size = std::filesystem::file_size(path, error);
  check(!error, kReadOp, "{}: cannot read the file: {}", path, error.message());
  std::ifstream file(path, std::ios::binary);
  check(bool(file), kReadOp, "{}: cannot open the file", path);
  const NpyHeader header = read_header(file, path, file_size);
  file.seekg(std::streamoff(header.data_offset));
  Tensor out;
  const std::string_view descr = header.element.descr;
  if (descr == "<i2") {
    out = read_widened<int16_t, int32_t>(file, header);
  } else if (descr == "<u2") {
    out = read_widened<uint16_t, int32_t>(file, header);
  } else if (descr == "<u4") {
    out = read_widened<uint32_t, int64_t>(file, header);
  } else {
    out = Tensor::empty(header.shape, header.element.dtype);
    file.read(static_cast<char*>(out.data_ptr()), std::streamsize(header.data_bytes));
  }
  check(bool(file), kReadOp, "{}: cannot read the data", path);
  return out;
}

Tensor read_token_ids(const std::string& path) {
  const Tensor ids = read_npy(path);
  check<DTypeError>(!is_floating(ids.dtype()), kReadOp, "{}: token ids must be integers, the file holds {}", path,
                    dtype_name(ids.dtype()));
  check<ShapeError>(ids.dim() == 2, kReadOp, "{}: token ids must be 2-D [N, T+1], the file's shape is {}", path,
                    shape_str(ids.shape()));
  check<ShapeError>(ids.size(0) >= 1 && ids.size(1) >= 2, kReadOp,
                    "{}: token ids [N, T+1] need N >= 1 rows and T+1 >= 2 columns, the file's shape is {}", path,
                    shape_str(ids.shape()));
  return ids.to(DType::I64);
}

}  // namespace dtensor::io
