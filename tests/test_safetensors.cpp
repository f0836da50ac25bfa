// The safetensors reader on files written byte by byte here: whole reads and boxes (rows,
// strided columns, 3-D, packed parts) of known values, and every header violation as a typed
// error naming the file and the tensor.
#include "checkpoint_test_util.hpp"

#include "io/checkpoint_writer.hpp"
#include "io/safetensors.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <numeric>

using namespace dtensor;
using namespace checkpoint_test;
using Catch::Contains;
using io::SafetensorsFile;

namespace {

std::vector<float> iota_f32(int n) {
  std::vector<float> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.0f);
  return v;
}
std::vector<double> iota_f64(int n) {
  std::vector<double> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.0);
  return v;
}

// Keys deliberately out of offset order: names() must follow the offsets.
const char* kHeader = R"({
  "ids": {"dtype": "I64", "shape": [3], "data_offsets": [248, 272]},
  "__metadata__": {"format": "pt", "note": "hand made"},
  "rows": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
  "half": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [240, 248]},
  "cube": {"dtype": "F64", "shape": [2, 3, 4], "data_offsets": [48, 240]},
  "empty": {"dtype": "F32", "shape": [0, 3], "data_offsets": [272, 272]},
  "scalar": {"dtype": "F32", "shape": [], "data_offsets": [272, 276]}
})";

std::string known_data() {
  const std::vector<uint16_t> half_bits = {0x3F80, 0xC000, 0x3F00, 0x4040};  // 1, -2, 0.5, 3
  const std::vector<int64_t> ids = {int64_t(1) << 40, -5, 7};
  return bytes_of(iota_f32(12)) + bytes_of(iota_f64(24)) + bytes_of(half_bits) + bytes_of(ids) +
         bytes_of(std::vector<float>{42.5f});
}

Tensor f32(const std::vector<float>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

}  // namespace

TEST_CASE("safetensors: whole tensors of every kind read back their bytes", "[checkpoint][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("known.safetensors");
  write_file(path, safetensors_bytes(kHeader, known_data()));
  SafetensorsFile file = SafetensorsFile::open(path);

  CHECK(file.names() == std::vector<std::string>{"rows", "cube", "half", "ids", "empty", "scalar"});
  CHECK(file.metadata().at("note") == "hand made");
  CHECK(file.info("cube").dtype == DType::F64);
  CHECK(file.info("cube").shape == Shape{2, 3, 4});
  CHECK(equal(file.read("rows"), f32(iota_f32(12), {3, 4})));
  CHECK(equal(file.read("cube"), Tensor::from_vector(iota_f64(24), {2, 3, 4})));
  CHECK(file.read("half").dtype() == DType::BF16);
  CHECK(file.read("half").to_vector<float>() == std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f});
  CHECK(file.read("ids").to_vector<int64_t>() == std::vector<int64_t>{int64_t(1) << 40, -5, 7});
  CHECK(file.read("empty").shape() == Shape{0, 3});
  CHECK(file.read("scalar").item<float>() == 42.5f);
}

TEST_CASE("safetensors: boxes come straight from the file", "[checkpoint][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("known.safetensors");
  write_file(path, safetensors_bytes(kHeader, known_data()));
  SafetensorsFile file = SafetensorsFile::open(path);

  SECTION("contiguous rows") {
    CHECK(equal(file.read_block("rows", {1, 0}, {2, 4}), f32({4, 5, 6, 7, 8, 9, 10, 11}, {2, 4})));
  }
  SECTION("strided columns") {
    CHECK(equal(file.read_block("rows", {0, 1}, {3, 2}), f32({1, 2, 5, 6, 9, 10}, {3, 2})));
    CHECK(equal(file.read_block("rows", {0, 3}, {3, 1}), f32({3, 7, 11}, {3, 1})));
  }
  SECTION("a 3-D box") {
    // cube[i][j][k] = 12 i + 4 j + k
    Tensor box = file.read_block("cube", {1, 1, 1}, {1, 2, 2});
    CHECK(equal(box, Tensor::from_vector<double>({17, 18, 21, 22}, {1, 2, 2})));
    Tensor slab = file.read_block("cube", {0, 2, 0}, {2, 1, 4});
    CHECK(equal(slab, Tensor::from_vector<double>({8, 9, 10, 11, 20, 21, 22, 23}, {2, 1, 4})));
  }
  SECTION("bf16 and i64 boxes") {
    CHECK(file.read_block("half", {0, 1}, {2, 1}).to_vector<float>() == std::vector<float>{-2.0f, 3.0f});
    CHECK(file.read_block("ids", {1}, {2}).to_vector<int64_t>() == std::vector<int64_t>{-5, 7});
  }
  SECTION("empty boxes and into a strided destination") {
    CHECK(file.read_block("rows", {3, 0}, {0, 4}).shape() == Shape{0, 4});
    Tensor out = Tensor::zeros({3, 5}, DType::F32);
    file.read_block_into("rows", {0, 2}, out.narrow(1, 1, 2));  // columns 2..3 into columns 1..2
    CHECK(equal(out, f32({0, 2, 3, 0, 0, 0, 6, 7, 0, 0, 0, 10, 11, 0, 0}, {3, 5})));
  }
  SECTION("packed parts through a TensorSource") {
    io::TensorSource source = io::tensor_source(file, "rows");
    CHECK(source.shape == Shape{3, 4});
    // rows packs [a; b] along dim 1 as two [3, 2] halves: column 1 of each half is cols 1 and 3.
    CHECK(equal(source.read_packed(1, 2, {0, 1}, {3, 1}), f32({1, 3, 5, 7, 9, 11}, {3, 2})));
    io::TensorSource cube = io::tensor_source(file, "cube");
    // cube packs [gate; up] along dim 0; the rank's rows 1..2 (of 3) of each part.
    Tensor packed = cube.read_packed(0, 2, {0, 1, 0}, {1, 2, 4});
    CHECK(equal(packed, Tensor::from_vector(iota_f64(24), {2, 3, 4}).narrow(1, 1, 2).contiguous()));
    // The same box from an in-memory source.
    io::TensorSource memory = io::tensor_source(Tensor::from_vector(iota_f64(24), {2, 3, 4}));
    CHECK(equal(memory.read_packed(0, 2, {0, 1, 0}, {1, 2, 4}), packed));
    CHECK_THROWS_AS(source.read_packed(0, 2, {0, 0}, {1, 4}), ShapeError);  // 3 rows do not split in 2
  }
}

namespace {

// Resets this process's peak resident memory to the current value (Linux >= 4.0); false where
// the kernel refuses.
bool reset_peak_resident() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
  clear_refs.flush();
  return clear_refs.good();
}

uint64_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "VmHWM:  1234 kB"
  }
  FAIL("no VmHWM line in /proc/self/status");
  return 0;
}

}  // namespace

TEST_CASE("safetensors: a column slice of a large tensor never holds the tensor resident",
          "[checkpoint][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("large.safetensors");
  const Shape shape{2000, 4096};  // 31 MiB of f32; rows of 16 KiB, so the slabs end unevenly
  const RandomOptions values{.seed = 21};
  io::write_safetensors(path, {{"w", random(shape, DType::F32, values)}});
  SafetensorsFile file = SafetensorsFile::open(path);
  Tensor columns = Tensor::zeros({shape[0], 16}, DType::F32);  // touched before the measurement
  if (!reset_peak_resident()) {
    WARN("cannot reset VmHWM through /proc/self/clear_refs; the memory check is skipped");
  } else {
    const uint64_t before = peak_resident_bytes();
    file.read_block_into("w", {0, 1000}, columns);
    // Every page of the tensor is touched, but only a slab of them is mapped at a time.
    CHECK(peak_resident_bytes() - before < (uint64_t(12) << 20));
  }
  file.read_block_into("w", {0, 1000}, columns);
  CHECK(equal(columns, random_block(shape, {0, 1000}, {shape[0], 16}, DType::F32, values)));
  CHECK(equal(file.read_block("w", {1990, 7}, {10, 3}), random_block(shape, {1990, 7}, {10, 3}, DType::F32, values)));
}

TEST_CASE("safetensors: bad reads name the file and the tensor", "[checkpoint][safetensors][errors]") {
  TempDir dir;
  const std::string path = dir.file("known.safetensors");
  write_file(path, safetensors_bytes(kHeader, known_data()));
  SafetensorsFile file = SafetensorsFile::open(path);
  CHECK_THAT(message_of<ValueError>([&] { file.read("nope"); }), Contains(path) && Contains("'nope'"));
  CHECK_THAT(message_of<ShapeError>([&] {
               file.read_block("rows", {2, 0}, {2, 4});
             }),
             Contains(path) && Contains("'rows'"));
  CHECK_THROWS_AS(file.read_block("rows", {0}, {3}), ShapeError);
  CHECK_THAT(message_of<DTypeError>([&] {
               file.read_block_into("rows", {0, 0}, Tensor::zeros({1, 1}, DType::F64));
             }),
             Contains("'rows'"));
}

namespace {

struct BadHeader {
  const char* what;
  std::string header;
  std::string data;
  std::vector<std::string> mentions;  // besides the path
};

template <typename E>
void expect_open_error(const TempDir& dir, const BadHeader& bad) {
  INFO(bad.what);
  const std::string path = dir.file("bad.safetensors");
  write_file(path, safetensors_bytes(bad.header, bad.data));
  const std::string message = message_of<E>([&] { SafetensorsFile::open(path); });
  CHECK_THAT(message, Contains(path));
  for (const std::string& mention : bad.mentions) CHECK_THAT(message, Contains(mention));
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape + ", \"data_offsets\": " + offsets +
         "}";
}

// A JSON object of the given members. (Built by appending: GCC 12 warns falsely (-Wrestrict,
// bug 105329) about `"{" + std::string`.)
std::string object_of(const std::string& members) {
  std::string out = "{";
  out += members;
  out += "}";
  return out;
}

}  // namespace

TEST_CASE("safetensors: every header violation is a typed error", "[checkpoint][safetensors][errors]") {
  TempDir dir;
  const std::string data(64, '\0');
  const std::string good = entry("ok", "F32", "[2, 2]", "[0, 16]");

  expect_open_error<ValueError>(dir, {"invalid JSON", "{\"w\": {\"dtype\": ", data, {"JSON"}});
  expect_open_error<ValueError>(dir, {"not an object", "[1, 2]", data, {"object"}});
  expect_open_error<ValueError>(dir, {"entry not an object", "{\"w\": 3}", data, {"'w'"}});
  expect_open_error<ValueError>(
      dir, {"missing data_offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", data, {"'w'", "data_offsets"}});
  expect_open_error<DTypeError>(
      dir, {"unknown dtype", object_of(entry("w", "F17", "[1]", "[0, 4]")), data, {"'w'", "F17", "unknown"}});
  expect_open_error<DTypeError>(
      dir, {"dtype we lack", object_of(entry("mask", "BOOL", "[4]", "[0, 4]")), data, {"'mask'", "not supported"}});
  expect_open_error<DTypeError>(dir, {"I16 we lack", object_of(entry("s", "I16", "[2]", "[0, 4]")), data, {"'s'"}});
  expect_open_error<ShapeError>(
      dir, {"negative dim", object_of(entry("w", "F32", "[-1, 2]", "[0, 8]")), data, {"'w'", "non-negative"}});
  expect_open_error<ShapeError>(dir,
                                {"fractional dim", object_of(entry("w", "F32", "[2.5]", "[0, 8]")), data, {"'w'"}});
  expect_open_error<ShapeError>(dir,
                                {"shape not an array", object_of(entry("w", "F32", "4", "[0, 16]")), data, {"'w'"}});
  expect_open_error<ValueError>(dir, {"end past the data",
                                      object_of(good + ", " + entry("w", "F32", "[4]", "[60, 76]")),
                                      data,
                                      {"'w'", "data_offsets"}});
  expect_open_error<ValueError>(dir, {"begin after end", object_of(entry("w", "F32", "[0]", "[8, 4]")), data, {"'w'"}});
  expect_open_error<ValueError>(
      dir, {"offsets not a pair", object_of(entry("w", "F32", "[1]", "[0, 4, 8]")), data, {"'w'"}});
  // An empty tensor holds no bytes, but its strides multiply the other dims
  // (fuzz/corpus/safetensors/crash-zero-dim-huge-strides.safetensors).
  expect_open_error<ShapeError>(
      dir, {"empty tensor whose strides overflow",
            object_of(entry("w", "F32", "[0, 4611686018427387904, 4611686018427387904]", "[0, 0]")),
            data,
            {"'w'", "overflows int64 strides"}});
  expect_open_error<ShapeError>(
      dir, {"bytes differ from shape", object_of(entry("w", "F32", "[2, 3]", "[0, 20]")), data, {"'w'", "24"}});
  expect_open_error<ValueError>(dir, {"overlap",
                                      object_of(good + ", " + entry("late", "F32", "[4]", "[8, 24]")),
                                      data,
                                      {"'ok'", "'late'", "overlap"}});
  expect_open_error<ValueError>(
      dir, {"metadata not strings", "{\"__metadata__\": {\"n\": 3}, " + good + "}", data, {"__metadata__"}});
}

TEST_CASE("safetensors: truncated files and absurd header lengths", "[checkpoint][safetensors][errors]") {
  TempDir dir;
  const std::string path = dir.file("short.safetensors");
  const std::string whole = safetensors_bytes(kHeader, known_data());

  write_file(path, whole.substr(0, 5));  // not even the length
  CHECK_THAT(message_of<ValueError>([&] { SafetensorsFile::open(path); }), Contains(path) && Contains("truncated"));
  write_file(path, whole.substr(0, 40));  // the header is cut
  CHECK_THAT(message_of<ValueError>([&] { SafetensorsFile::open(path); }), Contains("runs past"));
  write_file(path, whole.substr(0, whole.size() - 2));  // the data is cut: 'scalar' ends past it
  CHECK_THAT(message_of<ValueError>([&] { SafetensorsFile::open(path); }), Contains(path) && Contains("'scalar'"));

  std::string huge(8, '\0');
  huge[5] = 1;  // 2^40 bytes of header
  write_file(path, huge + "{}");
  CHECK_THAT(message_of<ValueError>([&] { SafetensorsFile::open(path); }), Contains("bound"));
  CHECK_THAT(message_of<ValueError>([&] { SafetensorsFile::open(dir.file("absent.safetensors")); }),
             Contains("absent.safetensors"));
}

TEST_CASE("safetensors: any truncation or corrupted header byte is an error or a valid file",
          "[checkpoint][safetensors][errors]") {
  TempDir dir;
  const std::string path = dir.file("mutant.safetensors");
  const std::string whole = safetensors_bytes(kHeader, known_data());
  // The file ends with a non-empty tensor, so every proper prefix must be refused.
  for (size_t length = 0; length < whole.size(); ++length) {
    write_file(path, whole.substr(0, length));
    INFO("prefix of " << length << " bytes");
    CHECK_THROWS_AS(SafetensorsFile::open(path), dtensor::Error);
  }
  // Each header byte replaced by a character that changes numbers, strings or structure: the
  // file opens and reads cleanly, or fails with one of our errors, never anything else.
  const size_t header_end = 8 + std::strlen(kHeader);
  for (size_t at = 0; at < header_end; ++at) {
    for (char replacement : {'9', '-', '"', '}', '\x01'}) {
      std::string mutant = whole;
      mutant[at] = replacement;
      write_file(path, mutant);
      INFO("byte " << at << " set to " << int(replacement));
      try {
        SafetensorsFile file = SafetensorsFile::open(path);
        for (const std::string& name : file.names()) file.read(name);
      } catch (const dtensor::Error&) {
      }
    }
  }
}
