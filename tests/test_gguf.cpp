// The GGUF reader on files written byte by byte here (tests/gguf_test_writer.hpp): metadata of
// every value type, the tensor table in our row-major order, hand-worked dequantization of F16,
// BF16, Q8_0, Q4_0 and Q4_1 (whole tensors and boxes starting inside a block), raw block reads,
// and every header violation, truncation and corrupted header byte as a typed error.
#include "checkpoint_test_util.hpp"
#include "gguf_test_writer.hpp"

#include "io/gguf.hpp"

using namespace dtensor;
using namespace checkpoint_test;
using namespace gguf_test;
using Catch::Contains;
using io::GgufFile;

namespace {

std::vector<float> values_of(const Tensor& t) {
  const auto* p = static_cast<const float*>(t.data_ptr());
  return std::vector<float>(p, p + t.numel());
}

// Q8_0, one block: d = 0.5 (f16 0x3800), q[j] = j - 16, so the values are (j - 16) / 2.
std::string q8_0_block() {
  std::string block = le<uint16_t>(0x3800);
  for (int j = 0; j < 32; ++j) block += char(int8_t(j - 16));
  return block;
}
// Q4_0, one block: d = 2 (0x4000); byte j holds j in its low nibble, 15 - j in its high one:
// element j (< 16) is (j - 8) * 2, element 16 + j is (15 - j - 8) * 2.
std::string q4_0_block() {
  std::string block = le<uint16_t>(0x4000);
  for (int j = 0; j < 16; ++j) block += char(j | ((15 - j) << 4));
  return block;
}
// Q4_1, one block: d = 0.5 (0x3800), m = -1 (0xBC00); byte j = j | (15 - j) << 4: element j is
// j / 2 - 1, element 16 + j is (15 - j) / 2 - 1.
std::string q4_1_block() {
  std::string block = le<uint16_t>(0x3800) + le<uint16_t>(0xBC00);
  for (int j = 0; j < 16; ++j) block += char(j | ((15 - j) << 4));
  return block;
}

// The expected values of the blocks above, worked out by hand from their comments.
std::vector<float> q8_0_values() {
  std::vector<float> v;
  for (int j = 0; j < 32; ++j) v.push_back(float(j - 16) * 0.5f);
  return v;
}
std::vector<float> q4_0_values() {
  std::vector<float> v(32);
  for (int j = 0; j < 16; ++j) v[size_t(j)] = float(j - 8) * 2, v[size_t(16 + j)] = float(7 - j) * 2;
  return v;
}
std::vector<float> q4_1_values() {
  std::vector<float> v(32);
  for (int j = 0; j < 16; ++j) v[size_t(j)] = float(j) * 0.5f - 1, v[size_t(16 + j)] = float(15 - j) * 0.5f - 1;
  return v;
}

// A file with metadata of every type and one tensor of each readable hand-checked type.
GgufWriter known_writer() {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_raw("u8", GgufValueType::U8, le<uint8_t>(200));
  w.add_raw("i8", GgufValueType::I8, le<int8_t>(-100));
  w.add_raw("u16", GgufValueType::U16, le<uint16_t>(60000));
  w.add_raw("i16", GgufValueType::I16, le<int16_t>(-30000));
  w.add_u32("u32", 4000000000u);
  w.add_raw("i32", GgufValueType::I32, le<int32_t>(-2000000000));
  w.add_raw("u64", GgufValueType::U64, le<uint64_t>(uint64_t(1) << 40));
  w.add_raw("i64", GgufValueType::I64, le<int64_t>(-(int64_t(1) << 40)));
  w.add_f32("f32", 0.25f);
  w.add_raw("f64", GgufValueType::F64, le<double>(-1.5));
  w.add_raw("yes", GgufValueType::BOOL, le<uint8_t>(1));
  w.add_string_array("words", {"a", "", "ünï"});
  w.add_raw("ints", GgufValueType::ARRAY,
            le<uint32_t>(5) + le<uint64_t>(3) + le<int32_t>(-1) + le<int32_t>(0) + le<int32_t>(7));
  w.add_raw("floats", GgufValueType::ARRAY, le<uint32_t>(6) + le<uint64_t>(2) + le<float>(0.5f) + le<float>(-2.f));
  // [[1, 2], []] : an array of arrays of u8
  w.add_raw("nested", GgufValueType::ARRAY,
            le<uint32_t>(9) + le<uint64_t>(2) + le<uint32_t>(0) + le<uint64_t>(2) + "\x01\x02" + le<uint32_t>(0) +
                le<uint64_t>(0));
  std::vector<float> rows(12);
  for (int i = 0; i < 12; ++i) rows[size_t(i)] = float(i);
  w.add_tensor("rows", GgmlType::F32, {3, 4}, bytes_of(rows));
  w.add_tensor("half", GgmlType::F16, {2, 2}, bytes_of(std::vector<uint16_t>{0x3C00, 0xC000, 0x3800, 0x7BFF}));
  w.add_tensor("brain", GgmlType::BF16, {4}, bytes_of(std::vector<uint16_t>{0x3F80, 0xC040, 0x3E80, 0x4120}));
  // Two rows of two blocks each: row r, block b holds the block above (rows differ via d below).
  w.add_tensor("q8", GgmlType::Q8_0, {2, 64}, q8_0_block() + q8_0_block() + q8_0_block() + q8_0_block());
  w.add_tensor("q40", GgmlType::Q4_0, {1, 64}, q4_0_block() + q4_0_block());
  w.add_tensor("q41", GgmlType::Q4_1, {2, 32}, q4_1_block() + q4_1_block());
  return w;
}

std::string write_known(TempDir& dir, const GgufWriter& w, const std::string& name = "known.gguf") {
  const std::string path = dir.file(name);
  write_file(path, w.bytes());
  return path;
}

}  // namespace

TEST_CASE("gguf: metadata of every value type through the typed getters", "[gguf]") {
  TempDir dir;
  for (uint32_t version : {2u, 3u}) {
    GgufWriter w = known_writer();
    w.version = version;
    GgufFile file = GgufFile::open(write_known(dir, w));
    CHECK(file.version() == version);
    CHECK(file.alignment() == 32);
    CHECK(file.data_offset() % 32 == 0);
    CHECK(file.get_string("general.architecture") == "llama");
    CHECK(file.get_int("u8") == 200);
    CHECK(file.get_int("i8") == -100);
    CHECK(file.get_int("u16") == 60000);
    CHECK(file.get_int("i16") == -30000);
    CHECK(file.get_int("u32") == 4000000000);
    CHECK(file.get_int("i32") == -2000000000);
    CHECK(file.get_int("u64") == int64_t(1) << 40);
    CHECK(file.get_int("i64") == -(int64_t(1) << 40));
    CHECK(file.get_float("f32") == 0.25);
    CHECK(file.get_float("f64") == -1.5);
    CHECK(file.get_bool("yes"));
    CHECK(file.get_string_array("words") == std::vector<std::string>{"a", "", "ünï"});
    CHECK(file.get_int_array("ints") == std::vector<int64_t>{-1, 0, 7});
    CHECK(file.get_float_array("floats") == std::vector<double>{0.5, -2.0});
    const io::GgufValue& nested = file.value("nested");
    REQUIRE(nested.items.size() == 2);
    CHECK(nested.items[0].items.size() == 2);
    CHECK(nested.items[0].items[1].integer == 2);
    CHECK(nested.items[1].items.empty());
    CHECK(file.array_size("words") == 3);
  }
}

TEST_CASE("gguf: a missing or mistyped key names the key", "[gguf][errors]") {
  TempDir dir;
  GgufFile file = GgufFile::open(write_known(dir, known_writer()));
  CHECK_THAT(message_of<ValueError>([&] { file.get_int("llama.block_count"); }),
             Contains("'llama.block_count'") && Contains("known.gguf"));
  CHECK_THAT(message_of<DTypeError>([&] { file.get_int("general.architecture"); }),
             Contains("'general.architecture'") && Contains("an integer") && Contains("string"));
  CHECK_THAT(message_of<DTypeError>([&] { file.get_string("u32"); }), Contains("'u32'") && Contains("u32"));
  CHECK_THAT(message_of<DTypeError>([&] { file.get_float("i8"); }), Contains("'i8'"));
  CHECK_THAT(message_of<DTypeError>([&] { file.get_bool("u8"); }), Contains("'u8'"));
  CHECK_THAT(message_of<DTypeError>([&] { file.get_string_array("ints"); }),
             Contains("'ints'") && Contains("array of i32"));
  CHECK_THAT(message_of<DTypeError>([&] { file.get_int_array("words"); }), Contains("'words'"));
  CHECK_THAT(message_of<DTypeError>([&] { file.get_float_array("ints"); }), Contains("'ints'"));
  CHECK_THAT(message_of<DTypeError>([&] { file.array_size("u8"); }), Contains("'u8'"));
}

TEST_CASE("gguf: the tensor table in row-major order and hand-worked dequantization", "[gguf]") {
  TempDir dir;
  GgufFile file = GgufFile::open(write_known(dir, known_writer()));
  CHECK(file.names() == std::vector<std::string>{"rows", "half", "brain", "q8", "q40", "q41"});
  CHECK(file.tensor("rows").shape == Shape{3, 4});
  CHECK(file.tensor("q8").shape == Shape{2, 64});
  CHECK(file.tensor("q8").bytes == 4 * 34);
  CHECK(file.tensor("q8").type == GgmlType::Q8_0);
  for (const std::string& name : file.names()) CHECK(file.tensor(name).offset % 32 == 0);

  CHECK(values_of(file.read("rows")) == std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  CHECK(values_of(file.read("half")) == std::vector<float>{1, -2, 0.5, 65504});
  CHECK(values_of(file.read("brain")) == std::vector<float>{1, -3, 0.25, 10});
  std::vector<float> q8 = q8_0_values();
  std::vector<float> q8_rows;
  for (int i = 0; i < 4; ++i) q8_rows.insert(q8_rows.end(), q8.begin(), q8.end());
  CHECK(values_of(file.read("q8")) == q8_rows);
  CHECK(values_of(file.read("q8"))[0] == -8.0f);
  CHECK(values_of(file.read("q8"))[31] == 7.5f);
  std::vector<float> q40 = q4_0_values();
  CHECK(q40[0] == -16.0f);
  CHECK(q40[31] == -16.0f);
  q40.insert(q40.end(), q40.begin(), q40.end());
  CHECK(values_of(file.read("q40")) == q40);
  std::vector<float> q41 = q4_1_values();
  CHECK(q41[0] == -1.0f);
  CHECK(q41[16] == 6.5f);
  q41.insert(q41.end(), q41.begin(), q41.end());
  CHECK(values_of(file.read("q41")) == q41);

  SECTION("boxes start and end inside blocks") {
    // q8 row 1, columns [20, 45): the end of block 0 and the start of block 1
    std::vector<float> expected(q8.begin() + 20, q8.end());
    expected.insert(expected.end(), q8.begin(), q8.begin() + 13);
    CHECK(values_of(file.read_block("q8", {1, 20}, {1, 25})) == expected);
    CHECK(values_of(file.read_block("q40", {0, 33}, {1, 2})) == std::vector<float>{q40[1], q40[2]});
    CHECK(values_of(file.read_block("rows", {1, 1}, {2, 2})) == std::vector<float>{5, 6, 9, 10});
    CHECK(values_of(file.read_block("q41", {1, 31}, {1, 1})) == std::vector<float>{q41[31]});
    CHECK(file.read_block("q41", {1, 3}, {0, 4}).numel() == 0);
  }
  SECTION("a strided destination and a tensor source") {
    Tensor out = Tensor::zeros({4, 2}, DType::F32);
    file.read_block_into("rows", {0, 2}, out.narrow(0, 1, 2).transpose(0, 1));
    CHECK(values_of(out) == std::vector<float>{0, 0, 2, 6, 3, 7, 0, 0});
    io::TensorSource source = io::tensor_source(file, "q8");
    CHECK(source.dtype == DType::F32);
    CHECK(source.shape == Shape{2, 64});
    CHECK(values_of(source.read({0, 30}, {2, 4})) ==
          std::vector<float>{q8[30], q8[31], q8[0], q8[1], q8[30], q8[31], q8[0], q8[1]});
  }
  SECTION("raw blocks") {
    Tensor raw = file.read_blocks("q8", 1, 1, 32, 32);
    CHECK(raw.dtype() == DType::U8);
    CHECK(raw.shape() == Shape{1, 34});
    CHECK(std::string(static_cast<const char*>(raw.data_ptr()), 34) == q8_0_block());
    CHECK(file.read_blocks("q41", 0, 2, 0, 32).shape() == Shape{2, 20});
    CHECK(file.read_blocks("half", 1, 1, 1, 1).shape() == Shape{1, 2});
    CHECK_THAT(message_of<ShapeError>([&] { file.read_blocks("q8", 0, 1, 16, 32); }),
               Contains("'q8'") && Contains("column 16") && Contains("Q8_0 block of 32") &&
                   Contains("shard boundary inside a quantization block"));
    CHECK_THAT(message_of<ShapeError>([&] { file.read_blocks("q40", 0, 1, 0, 40); }), Contains("column 40"));
    CHECK_THAT(message_of<ShapeError>([&] { file.read_blocks("q8", 1, 2, 0, 32); }), Contains("'q8'"));
  }
}

TEST_CASE("gguf: bad reads and unreadable types name the tensor", "[gguf][errors]") {
  TempDir dir;
  GgufWriter w = known_writer();
  w.add_tensor("q5", GgmlType::Q5_0, {1, 32}, std::string(22, '\0'));
  GgufFile file = GgufFile::open(write_known(dir, w));
  CHECK(file.tensor("q5").bytes == 22);
  CHECK_THAT(message_of<DTypeError>([&] { file.read("q5"); }), Contains("'q5'") && Contains("Q5_0"));
  CHECK_THAT(message_of<DTypeError>([&] { io::tensor_source(file, "q5"); }), Contains("'q5'") && Contains("Q5_0"));
  CHECK_THAT(message_of<ValueError>([&] { file.read("absent"); }), Contains("'absent'") && Contains("known.gguf"));
  CHECK_THAT(message_of<ShapeError>([&] { file.read_block("q8", {0, 60}, {1, 5}); }), Contains("'q8'"));
  CHECK_THAT(message_of<DTypeError>([&] {
               file.read_block_into("rows", {0, 0}, Tensor::zeros({1, 1}, DType::F64));
             }),
             Contains("'rows'"));
  CHECK(io::ggml_block_size(GgmlType::Q4_K) == 256);
  CHECK(io::ggml_block_bytes(GgmlType::Q6_K) == 210);
  CHECK(io::ggml_type_name(GgmlType(99)) == "unknown type 99");
  CHECK_THAT(message_of<DTypeError>([&] { io::ggml_block_size(GgmlType(99)); }), Contains("99"));
}

namespace {

// Opens `bytes` as a file and expects E with every fragment in its message.
template <typename E>
void expect_open_error(TempDir& dir, const std::string& bytes, const std::vector<std::string>& fragments) {
  const std::string path = dir.file("bad.gguf");
  write_file(path, bytes);
  const std::string message = message_of<E>([&] { GgufFile::open(path); });
  CHECK_THAT(message, Contains("bad.gguf"));
  for (const std::string& fragment : fragments) CHECK_THAT(message, Contains(fragment));
}

GgufWriter one_tensor(GgmlType type = GgmlType::F32, const Shape& shape = {2, 2}, size_t bytes = 16) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_tensor("w", type, shape, std::string(bytes, '\x01'));
  return w;
}

}  // namespace

TEST_CASE("gguf: every header violation is a typed error naming the field", "[gguf][errors]") {
  TempDir dir;
  GgufWriter w = one_tensor();
  w.magic = 0x46554746;
  expect_open_error<ValueError>(dir, w.bytes(), {"magic"});
  for (uint32_t version : {1u, 4u}) {
    w = one_tensor();
    w.version = version;
    expect_open_error<ValueError>(dir, w.bytes(), {fmt::format("version {}", version)});
  }
  w = one_tensor();
  w.version = 0x03000000;
  expect_open_error<ValueError>(dir, w.bytes(), {"big-endian"});
  std::string absurd = one_tensor().bytes();
  std::memcpy(absurd.data() + 8, le<uint64_t>(uint64_t(1) << 60).data(), 8);
  expect_open_error<ValueError>(dir, absurd, {"tensor count"});
  absurd = one_tensor().bytes();
  std::memcpy(absurd.data() + 16, le<uint64_t>(uint64_t(1) << 40).data(), 8);
  expect_open_error<ValueError>(dir, absurd, {"metadata count"});

  w = one_tensor();
  w.add_raw("long", GgufValueType::STRING, le<uint64_t>(uint64_t(1) << 50) + "x");
  expect_open_error<ValueError>(dir, w.bytes(), {"metadata 'long'", "truncated"});
  w = one_tensor();
  w.add_raw("arr", GgufValueType::ARRAY, le<uint32_t>(10) + le<uint64_t>(uint64_t(1) << 59));
  expect_open_error<ValueError>(dir, w.bytes(), {"metadata 'arr' length"});
  w = one_tensor();
  w.add_raw("odd", GgufValueType(13), "");
  expect_open_error<DTypeError>(dir, w.bytes(), {"metadata 'odd'", "unknown value type 13"});
  w = one_tensor();
  w.add_raw("arr", GgufValueType::ARRAY, le<uint32_t>(77) + le<uint64_t>(0));
  expect_open_error<DTypeError>(dir, w.bytes(), {"metadata 'arr'", "element type 77"});
  w = one_tensor();
  std::string deep = le<uint32_t>(0) + le<uint64_t>(0);
  for (int level = 0; level < 12; ++level) deep = le<uint32_t>(9) + le<uint64_t>(1) + deep;
  w.add_raw("deep", GgufValueType::ARRAY, deep);
  expect_open_error<ValueError>(dir, w.bytes(), {"metadata 'deep'", "nest"});
  w = one_tensor();
  w.add_raw("flag", GgufValueType::BOOL, le<uint8_t>(2));
  expect_open_error<ValueError>(dir, w.bytes(), {"metadata 'flag'", "bool"});
  w = one_tensor();
  w.add_u32("general.architecture", 1);
  expect_open_error<ValueError>(dir, w.bytes(), {"'general.architecture'", "twice"});

  w = one_tensor();
  w.add_u32("general.alignment", 24);
  expect_open_error<ValueError>(dir, w.bytes(), {"general.alignment", "power of two"});
  w = one_tensor();
  w.add_string("general.alignment", "32");
  expect_open_error<DTypeError>(dir, w.bytes(), {"general.alignment"});
  w = one_tensor();
  w.add_u32("general.alignment", 64);
  w.alignment = 64;
  CHECK(GgufFile::open(write_known(dir, w, "aligned64.gguf")).alignment() == 64);

  w = one_tensor();
  w.add_tensor_ne("v", 99, {4}, std::string(16, '\0'));
  expect_open_error<DTypeError>(dir, w.bytes(), {"tensor 'v'", "unknown type 99"});
  w = one_tensor();
  w.add_tensor_ne("v", 0, {1, 1, 1, 1, 1}, std::string(4, '\0'));
  expect_open_error<ShapeError>(dir, w.bytes(), {"tensor 'v'", "n_dims 5"});
  w = one_tensor();
  w.add_tensor_ne("v", 0, {}, "");
  expect_open_error<ShapeError>(dir, w.bytes(), {"tensor 'v'", "n_dims 0"});
  w = one_tensor();
  w.add_tensor("v", GgmlType::Q4_0, {1, 48}, std::string(36, '\0'));
  expect_open_error<ShapeError>(dir, w.bytes(), {"tensor 'v'", "block size 32"});
  w = one_tensor();
  w.add_tensor_ne("v", 0, {uint64_t(1) << 32, uint64_t(1) << 32, 16}, "");
  expect_open_error<ShapeError>(dir, w.bytes(), {"tensor 'v'", "overflow"});
  w = one_tensor();
  w.add_tensor_ne("v", 0, {uint64_t(1) << 62, 0}, "");  // no bytes, but a row's bytes overflow int64
  expect_open_error<ShapeError>(dir, w.bytes(), {"tensor 'v'", "a row of", "overflow"});
  w = one_tensor();
  w.add_tensor("v", GgmlType::F32, {4}, std::string(16, '\0'), 40);
  expect_open_error<ValueError>(dir, w.bytes(), {"tensor 'v'", "offset 40", "alignment 32"});
  w = one_tensor();
  w.add_tensor("v", GgmlType::F32, {4}, std::string(16, '\0'), 0);
  expect_open_error<ValueError>(dir, w.bytes(), {"'w'", "'v'", "overlap"});
  w = one_tensor();
  w.add_tensor("w", GgmlType::F32, {4}, std::string(16, '\0'));
  expect_open_error<ValueError>(dir, w.bytes(), {"tensor 'w'", "twice"});
  std::string cut = one_tensor().bytes();
  expect_open_error<ValueError>(dir, cut.substr(0, cut.size() - 1), {"tensor 'w'", "past its end"});
  CHECK_THAT(message_of<ValueError>([&] { GgufFile::open(dir.file("absent.gguf")); }), Contains("absent.gguf"));
}

TEST_CASE("gguf: any truncation or corrupted header byte is an error or a valid file", "[gguf][errors]") {
  TempDir dir;
  const std::string path = dir.file("mutant.gguf");
  const std::string whole = known_writer().bytes();
  // The file ends with a non-empty tensor, so every proper prefix must be refused.
  for (size_t length = 0; length < whole.size(); ++length) {
    write_file(path, whole.substr(0, length));
    INFO("prefix of " << length << " bytes");
    CHECK_THROWS_AS(GgufFile::open(path), dtensor::Error);
  }
  // Each header byte replaced by values that change counts, lengths, types and offsets: the file
  // opens and reads cleanly, or fails with one of our errors, never anything else.
  const size_t header_end = size_t(GgufFile::open(write_known(dir, known_writer())).data_offset());
  for (size_t at = 0; at < header_end; ++at) {
    for (uint8_t replacement : {0x00, 0x01, 0x07, 0x80, 0xff}) {
      std::string mutant = whole;
      mutant[at] = char(replacement);
      write_file(path, mutant);
      INFO("byte " << at << " set to " << int(replacement));
      try {
        GgufFile file = GgufFile::open(path);
        for (const std::string& name : file.names()) {
          if (io::ggml_type_readable(file.tensor(name).type)) file.read(name);
        }
      } catch (const dtensor::Error&) {
      }
    }
  }
}
