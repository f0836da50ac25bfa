// The .npy reader (io/npy.hpp) against files built byte by byte as numpy.save writes them: every
// supported descr, versions 1.0 to 3.0, the token-id checks, and every truncation and corrupt
// header field refused with a typed error naming the file and the field.
#include "checkpoint_test_util.hpp"

#include "io/npy.hpp"
#include "tensor/ops.hpp"

using namespace dtensor;
using namespace checkpoint_test;
using Catch::Contains;

namespace {

// The file numpy.save writes for this header dict and data: magic, version, the header length
// (2 bytes for version 1, else 4), the dict padded with spaces to a newline so the data starts at
// a multiple of 64 bytes.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  const size_t length_bytes = major == 1 ? 2 : 4;
  std::string padded = dict;
  const size_t prefix = 8 + length_bytes;
  padded.append((prefix + padded.size() + 1 + 63) / 64 * 64 - prefix - padded.size() - 1, ' ');
  padded.push_back('\n');
  std::string out = "\x93NUMPY";
  out += char(major);
  out += char(0);
  for (size_t i = 0; i < length_bytes; ++i) out += char((padded.size() >> (8 * i)) & 0xff);
  return out + padded + data;
}

std::string dict_of(const std::string& descr, const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
}

const std::vector<int64_t> kIds = {5, 0, 7, 1, 2, 3};  // [2, 3]

std::string token_file() { return npy_bytes(dict_of("<i8", "(2, 3)"), bytes_of(kIds)); }

}  // namespace

TEST_CASE("npy: every supported descr reads back its values", "[checkpoint][npy]") {
  TempDir dir;
  const std::string path = dir.file("a.npy");
  const Tensor expected = Tensor::from_vector(kIds, {2, 3});

  write_file(path, token_file());
  Tensor t = io::read_npy(path);
  CHECK(t.dtype() == DType::I64);
  CHECK(equal(t, expected));

  write_file(path, npy_bytes(dict_of("<i4", "(2, 3)"), bytes_of(std::vector<int32_t>{5, 0, 7, 1, 2, 3})));
  t = io::read_npy(path);
  CHECK(t.dtype() == DType::I32);
  CHECK(equal(t.to(DType::I64), expected));

  // Narrow and unsigned integers widen: 65535 stays positive, 4e9 fits in i64.
  write_file(path, npy_bytes(dict_of("<u2", "(2,)"), bytes_of(std::vector<uint16_t>{65535, 1})));
  t = io::read_npy(path);
  CHECK(t.dtype() == DType::I32);
  CHECK(equal(t, Tensor::from_vector<int32_t>({65535, 1}, {2})));
  write_file(path, npy_bytes(dict_of("<i2", "(2,)"), bytes_of(std::vector<int16_t>{-3, 300})));
  CHECK(equal(io::read_npy(path), Tensor::from_vector<int32_t>({-3, 300}, {2})));
  write_file(path, npy_bytes(dict_of("<u4", "(1,)"), bytes_of(std::vector<uint32_t>{4000000000u})));
  t = io::read_npy(path);
  CHECK(t.dtype() == DType::I64);
  CHECK(t.item<int64_t>() == 4000000000);

  write_file(path, npy_bytes(dict_of("<f8", "()"), bytes_of(std::vector<double>{2.5})));
  CHECK(io::read_npy(path).item<double>() == 2.5);
  write_file(path, npy_bytes(dict_of("|u1", "(0, 4)"), ""));
  CHECK(io::read_npy(path).shape() == Shape{0, 4});

  // Versions 2.0 and 3.0 (4-byte header length), double quotes, keys in another order.
  for (int major : {2, 3}) {
    write_file(path, npy_bytes(R"({"shape": (2, 3), "fortran_order": False, "descr": "<i8"})", bytes_of(kIds), major));
    CHECK(equal(io::read_npy(path), expected));
  }
}

TEST_CASE("npy: what write_npy writes reads back", "[checkpoint][npy]") {
  TempDir dir;
  const Tensor logits = Tensor::from_vector<float>({1.5f, -2, 3, 4.25f, 5, -6}, {3, 2});
  io::write_npy(dir.file("l.npy"), logits);
  CHECK(equal(io::read_npy(dir.file("l.npy")), logits));
}

TEST_CASE("npy: token ids are integer [N, T+1] with T+1 >= 2, returned as i64", "[checkpoint][npy]") {
  TempDir dir;
  const std::string path = dir.file("tokens.npy");
  write_file(path, npy_bytes(dict_of("<i4", "(2, 3)"), bytes_of(std::vector<int32_t>{5, 0, 7, 1, 2, 3})));
  const Tensor ids = io::read_token_ids(path);
  CHECK(ids.dtype() == DType::I64);
  CHECK(equal(ids, Tensor::from_vector(kIds, {2, 3})));

  write_file(path, npy_bytes(dict_of("<f4", "(2, 3)"), bytes_of(std::vector<float>(6, 1.0f))));
  CHECK_THAT(message_of<DTypeError>([&] { io::read_token_ids(path); }), Contains(path) && Contains("integers"));
  write_file(path, npy_bytes(dict_of("<i8", "(6,)"), bytes_of(kIds)));
  CHECK_THAT(message_of<ShapeError>([&] { io::read_token_ids(path); }), Contains(path) && Contains("[6]"));
  write_file(path, npy_bytes(dict_of("<i8", "(1, 2, 3)"), bytes_of(kIds)));
  CHECK_THAT(message_of<ShapeError>([&] { io::read_token_ids(path); }), Contains("2-D"));
  write_file(path, npy_bytes(dict_of("<i8", "(6, 1)"), bytes_of(kIds)));
  CHECK_THAT(message_of<ShapeError>([&] { io::read_token_ids(path); }), Contains("T+1 >= 2"));
  write_file(path, npy_bytes(dict_of("<i8", "(0, 3)"), ""));
  CHECK_THAT(message_of<ShapeError>([&] { io::read_token_ids(path); }), Contains("N >= 1"));
}

TEST_CASE("npy: every proper prefix of a file is refused naming the file", "[checkpoint][npy][errors]") {
  TempDir dir;
  const std::string path = dir.file("cut.npy");
  const std::string whole = token_file();
  for (size_t length = 0; length < whole.size(); ++length) {
    write_file(path, whole.substr(0, length));
    INFO("prefix of " << length << " bytes");
    CHECK_THAT(message_of<ValueError>([&] { io::read_npy(path); }), Contains(path) && Contains("[read_npy]"));
  }
  write_file(path, whole + "x");  // one byte more than the shape needs
  CHECK_THAT(message_of<ValueError>([&] { io::read_npy(path); }), Contains("49 data bytes"));
  CHECK_THAT(message_of<ValueError>([&] { io::read_npy(dir.file("absent.npy")); }),
             Contains("absent.npy") && Contains("cannot read"));
}

TEST_CASE("npy: corrupt magic, version and header fields are typed errors naming the field",
          "[checkpoint][npy][errors]") {
  TempDir dir;
  const std::string path = dir.file("bad.npy");
  const std::string data = bytes_of(kIds);
  auto refused = [&](const std::string& bytes) {
    write_file(path, bytes);
    return message_of<dtensor::Error>([&] { io::read_npy(path); });
  };
  std::string bytes = token_file();
  bytes[1] = 'M';
  CHECK_THAT(refused(bytes), Contains(path) && Contains("not a .npy file"));
  bytes = token_file();
  bytes[6] = 4;
  CHECK_THAT(refused(bytes), Contains("version 4.0"));

  const std::string f = "'fortran_order': False";
  const std::string s = "'shape': (2, 3)";
  CHECK_THAT(refused(npy_bytes("{'descr': '<i8', " + f + "}", data)), Contains("lacks 'shape'"));
  CHECK_THAT(refused(npy_bytes("{'descr': '<i8', " + s + "}", data)), Contains("lacks 'fortran_order'"));
  CHECK_THAT(refused(npy_bytes("{" + f + ", " + s + "}", data)), Contains("lacks 'descr'"));
  CHECK_THAT(refused(npy_bytes("{'descr': '<i8', 'descr': '<i8', " + f + ", " + s + "}", data)),
             Contains("'descr' is repeated"));
  CHECK_THAT(refused(npy_bytes("{'descr': '<i8', 'order': 1, " + f + ", " + s + "}", data)),
             Contains("'order' is not a .npy key"));
  CHECK_THAT(refused(npy_bytes("{'descr': '<i8', 'fortran_order': True, " + s + "}", data)),
             Contains("'fortran_order' is True"));
  CHECK_THAT(refused(npy_bytes("{'descr': '<i8', 'fortran_order': 0, " + s + "}", data)),
             Contains("'fortran_order' must be True or False"));
  CHECK_THAT(refused(npy_bytes("['descr', '<i8']", data)), Contains("expected '{'"));
  CHECK_THAT(refused(npy_bytes("{'descr': '<i8', " + f + ", " + s + "} x", data)), Contains("after the dict"));
  CHECK_THAT(refused(npy_bytes("{'descr: '<i8', " + f + ", " + s + "}", data)), Contains("expected ':'"));

  const auto dtype_error = [&](const std::string& descr) {
    write_file(path, npy_bytes(dict_of(descr, "(2, 3)"), data));
    return message_of<DTypeError>([&] { io::read_npy(path); });
  };
  CHECK_THAT(dtype_error(">i8"), Contains("'descr' '>i8' is big-endian"));
  CHECK_THAT(dtype_error("<c8"), Contains("'descr' '<c8' is not supported"));
  CHECK_THAT(dtype_error("O"), Contains(path));

  const auto shape_error = [&](const std::string& shape) {
    write_file(path, npy_bytes(dict_of("<i8", shape), data));
    return message_of<ShapeError>([&] { io::read_npy(path); });
  };
  CHECK_THAT(shape_error("[2, 3]"), Contains("'shape' must be a tuple"));
  CHECK_THAT(shape_error("(2, -3)"), Contains("'shape' must hold non-negative integers"));
  CHECK_THAT(shape_error("(2 3)"), Contains("expected ',' or ')'"));
  CHECK_THAT(shape_error("(99999999999999999999,)"), Contains("exceeds int64"));
  CHECK_THAT(shape_error("(4294967296, 4294967296)"), Contains("overflows"));
  // A shape that disagrees with the data's size.
  write_file(path, npy_bytes(dict_of("<i8", "(3, 3)"), data));
  CHECK_THAT(message_of<ValueError>([&] { io::read_npy(path); }),
             Contains("48 data bytes for 'shape' [3, 3] of '<i8', expected 72 (truncated)"));
}

// fuzz/corpus/npy/crash-zero-dim-huge-strides.npy: the byte count of an empty array is 0 whatever
// its other dims, but its strides multiply them, which overflowed int64.
TEST_CASE("npy: an empty array whose other dims overflow int64 strides is a ShapeError", "[checkpoint][npy][errors]") {
  TempDir dir;
  const std::string path = dir.file("empty.npy");
  write_file(path, npy_bytes(dict_of("<f4", "(0, 4611686018427387904, 4611686018427387904)"), ""));
  CHECK_THAT(message_of<ShapeError>([&] { io::read_npy(path); }),
             Contains(path) && Contains("'shape' [0, 4611686018427387904, 4611686018427387904] overflows int64"));
  // The largest such shape that fits still reads, as an empty array.
  write_file(path, npy_bytes(dict_of("<f4", "(0, 4611686018427387904, 1)"), ""));
  const Tensor empty = io::read_npy(path);
  CHECK(empty.shape() == Shape{0, 4611686018427387904, 1});
  CHECK(empty.numel() == 0);
}
