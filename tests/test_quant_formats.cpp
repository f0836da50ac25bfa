// The quantized formats (tensor/quant/quantized.hpp) against independent references: blocks
// worked by hand, ggml's and bitsandbytes' reference formulas written again here, the gguf PyPI
// package's quantize / dequantize (tests/quant_gguf_reference.py, skipped without it) and the NF4
// code values as bitsandbytes publishes them; then shards, row lookups and bad input.
#include <catch2/catch.hpp>

#include "skip.hpp"
#include "tensor/error.hpp"
#include "tensor/half.hpp"
#include "tensor/quant/quantized.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

using namespace dtensor;

namespace {

// Rounds like two separate float operations (no fused multiply-add): ggml's and gguf's rounding.
float mul_f(float a, float b) { return float(double(a) * double(b)); }
float add_f(float a, float b) { return float(double(a) + double(b)); }

float from_half_bits(uint16_t bits) {
  Half h;
  h.bits = bits;
  return float(h);
}
uint16_t half_bits(float v) { return Half(v).bits; }

std::vector<uint8_t> bytes_of(const QuantizedMatrix& q) {
  const Tensor d = q.data();
  const auto* p = static_cast<const uint8_t*>(d.data_ptr());
  return std::vector<uint8_t>(p, p + d.nbytes());
}

// Rows with typical and corner-case blocks: gaussian, all zero, constant, one spike, ties.
std::vector<float> test_values(int64_t rows, int64_t cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (auto& x : v) x = normal(gen);
  std::fill(v.begin(), v.begin() + 64, 0.0f);
  std::fill(v.begin() + 64, v.begin() + 128, 0.75f);
  if (rows * cols >= 256) v[150] = 40.0f, v[200] = -3.0f, v[201] = 3.0f;
  return v;
}

// ggml's reference quantization of one 32-element block, written from its definition.
std::vector<uint8_t> ggml_block(QuantFormat format, const float* x) {
  std::vector<uint8_t> out;
  auto put_half = [&](float v) {
    const uint16_t h = half_bits(v);
    out.push_back(uint8_t(h & 255));
    out.push_back(uint8_t(h >> 8));
  };
  if (format == QuantFormat::Q8_0) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127, id = d == 0 ? 0.0f : 1.0f / d;
    put_half(d);
    for (int j = 0; j < 32; ++j) out.push_back(uint8_t(int8_t(std::round(mul_f(x[j], id)))));
  } else if (format == QuantFormat::Q4_0) {
    int at = 0;
    for (int j = 1; j < 32; ++j) at = std::fabs(x[j]) > std::fabs(x[at]) ? j : at;
    const float d = x[at] / -8, id = d == 0 ? 0.0f : 1.0f / d;
    put_half(d);
    auto q = [&](float v) { return std::min(15, int(std::trunc(add_f(mul_f(v, id), 8.5f)))); };
    for (int j = 0; j < 16; ++j) out.push_back(uint8_t(q(x[j]) | q(x[j + 16]) << 4));
  } else {
    const float lo = *std::min_element(x, x + 32), hi = *std::max_element(x, x + 32);
    const float d = (hi - lo) / 15, id = d == 0 ? 0.0f : 1.0f / d;
    put_half(d);
    put_half(lo);
    auto q = [&](float v) { return std::min(15, int(std::trunc(add_f(mul_f(v - lo, id), 0.5f)))); };
    for (int j = 0; j < 16; ++j) out.push_back(uint8_t(q(x[j]) | q(x[j + 16]) << 4));
  }
  return out;
}

// The NF4 values as published in bitsandbytes (functional.py, get_4bit_type("nf4")).
const double kPublishedNF4[16] = {-1.0,
                                  -0.6961928009986877,
                                  -0.5250730514526337,
                                  -0.39491748809814453,
                                  -0.28444138169288635,
                                  -0.18477343022823334,
                                  -0.09105003625154495,
                                  0.0,
                                  0.07958029955625534,
                                  0.16093020141124725,
                                  0.24611230194568634,
                                  0.33791524171829224,
                                  0.44070982933044434,
                                  0.5626170039176941,
                                  0.7229568362236023,
                                  1.0};

// The nearest NF4 code (ties to the lower), by exhaustive search.
int nearest_nf4(float v) {
  int best = 0;
  for (int c = 1; c < 16; ++c) {
    if (std::fabs(v - float(kPublishedNF4[c])) < std::fabs(v - float(kPublishedNF4[best]))) best = c;
  }
  return best;
}

Tensor f32_tensor(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return Tensor::from_vector(v, {rows, cols});
}

template <typename E>
void require_error(const std::function<void()>& call, const std::vector<std::string>& fragments) {
  try {
    call();
    FAIL("expected an error");
  } catch (const E& e) {
    const std::string message = e.what();
    for (const auto& fragment : fragments) {
      INFO(message);
      CHECK(message.find(fragment) != std::string::npos);
    }
  }
}

}  // namespace

TEST_CASE("quant format names parse and print", "[quant]") {
  for (QuantFormat f : kAllQuantFormats) CHECK(quant_format_from_name(quant_format_name(f)) == f);
  CHECK(quant_format_name(QuantFormat::Q4_1) == "q4_1");
  require_error<ValueError>([] { quant_format_from_name("q5_k"); }, {"q5_k", "nf4"});
  CHECK(quant_block_size(QuantFormat::Q4_0) == 32);
  CHECK(quant_block_size(QuantFormat::NF4) == 64);
  CHECK(quant_block_bytes(QuantFormat::Q8_0) == 34);
  CHECK(quant_block_bytes(QuantFormat::Q4_0) == 18);
  CHECK(quant_block_bytes(QuantFormat::Q4_1) == 20);
}

TEST_CASE("quant blocks worked by hand", "[quant]") {
  std::vector<float> x(32, 0.0f);
  SECTION("q8_0: d = absmax / 127, q = round(x / d)") {
    x[0] = 127, x[1] = -127, x[2] = 3.4f, x[3] = -2.5f, x[4] = 0.5f;
    const auto b = bytes_of(QuantizedMatrix::quantize(f32_tensor(x, 1, 32), QuantFormat::Q8_0));
    REQUIRE(b.size() == 34);
    CHECK(b[0] == 0x00);  // f16 1.0 = 0x3c00, little-endian
    CHECK(b[1] == 0x3c);
    CHECK(int8_t(b[2]) == 127);
    CHECK(int8_t(b[3]) == -127);
    CHECK(int8_t(b[4]) == 3);
    CHECK(int8_t(b[5]) == -3);  // roundf: halves away from zero
    CHECK(int8_t(b[6]) == 1);
    CHECK(int8_t(b[7]) == 0);
  }
  SECTION("q4_0: d = (largest-magnitude value) / -8, q = trunc(x / d + 8.5)") {
    x[0] = -8, x[1] = 7, x[2] = 7.4f, x[3] = 0.49f, x[4] = 0.5f, x[5] = -0.6f, x[16] = 3;
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(x, 1, 32), QuantFormat::Q4_0);
    const auto b = bytes_of(q);
    REQUIRE(b.size() == 18);
    CHECK((b[0] == 0x00 && b[1] == 0x3c));  // d = 1
    CHECK(b[2] == 0xb0);                    // x[0] -> 0, x[16] -> 11 in the high nibble
    CHECK(b[3] == 0x8f);                    // x[1] -> 15, x[17] = 0 -> 8
    CHECK(b[4] == 0x8f);                    // 7.4 + 8.5 truncates to 15
    CHECK(b[5] == 0x88);
    CHECK(b[6] == 0x89);
    CHECK(b[7] == 0x87);
    const auto w = q.dequantize().to_vector<float>();
    CHECK(w[0] == -8.0f);
    CHECK(w[16] == 3.0f);
    CHECK(w[2] == 7.0f);
  }
  SECTION("q4_0 with a positive extreme: d < 0") {
    x[0] = 8, x[1] = -7;
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(x, 1, 32), QuantFormat::Q4_0);
    const auto b = bytes_of(q);
    CHECK((b[0] == 0x00 && b[1] == 0xbc));  // d = -1
    CHECK((b[2] & 15) == 0);
    CHECK((b[3] & 15) == 15);
    CHECK(q.dequantize().to_vector<float>()[0] == 8.0f);
  }
  SECTION("q4_1: d = (max - min) / 15, m = min, q = trunc((x - m) / d + 0.5)") {
    std::fill(x.begin(), x.end(), 0.0f);
    x[0] = -1, x[1] = 14, x[2] = 2.4f, x[3] = 2.5f;
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(x, 1, 32), QuantFormat::Q4_1);
    const auto b = bytes_of(q);
    REQUIRE(b.size() == 20);
    CHECK((b[0] == 0x00 && b[1] == 0x3c));  // d = 1
    CHECK((b[2] == 0x00 && b[3] == 0xbc));  // m = -1
    CHECK(b[4] == 0x10);                    // x[0] -> 0, x[16] = 0 -> 1
    CHECK(b[5] == 0x1f);
    CHECK(b[6] == 0x13);
    CHECK(b[7] == 0x14);
    CHECK(q.dequantize().to_vector<float>()[1] == 14.0f);
  }
  SECTION("nf4: absmax per 64, codes of x / absmax, first element in the high nibble") {
    std::vector<float> y(64, 0.0f);
    y[0] = 2, y[1] = -2, y[2] = 0, y[3] = 2 * 0.16093020141124725f, y[4] = 1.0f, y[5] = -0.9f;
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(y, 1, 64), QuantFormat::NF4);
    const auto b = bytes_of(q);
    REQUIRE(b.size() == 32);
    CHECK(b[0] == 0xf0);
    CHECK(b[1] == 0x79);
    CHECK(b[2] == 0xc3);  // 0.5 -> 0.4407 (12), -0.45 -> -0.3949 (3)
    CHECK(q.scales().to_vector<float>() == std::vector<float>{2.0f});
    CHECK(q.dequantize().to_vector<float>()[3] == float(2 * 0.16093020141124725f));
  }
  SECTION("int8: scale = absmax / 127 per row, q = round(x / scale)") {
    x[0] = 63.5f, x[1] = -0.25f, x[2] = 10.2f, x[3] = -0.75f;
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(x, 1, 32), QuantFormat::Int8);
    CHECK(q.scales().to_vector<float>() == std::vector<float>{0.5f});
    const auto b = bytes_of(q);
    CHECK(int8_t(b[0]) == 127);
    CHECK(int8_t(b[1]) == 0);  // -0.5 to nearest even
    CHECK(int8_t(b[2]) == 20);
    CHECK(int8_t(b[3]) == -2);  // -1.5 to nearest even
  }
}

TEST_CASE("quant: ggml formats match their reference formulas", "[quant]") {
  const int64_t rows = 5, cols = 96;
  const auto v = test_values(rows, cols, 7);
  for (QuantFormat f : {QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4_1}) {
    INFO(quant_format_name(f));
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(v, rows, cols), f);
    std::vector<uint8_t> expected;
    for (int64_t b = 0; b < rows * cols / 32; ++b) {
      const auto block = ggml_block(f, v.data() + b * 32);
      expected.insert(expected.end(), block.begin(), block.end());
    }
    REQUIRE(bytes_of(q) == expected);
    // Dequantization from the bytes, by the formats' definitions.
    const auto w = q.dequantize().to_vector<float>();
    const int64_t bb = quant_block_bytes(f);
    for (int64_t b = 0; b < rows * cols / 32; ++b) {
      const uint8_t* p = expected.data() + b * bb;
      const float d = from_half_bits(uint16_t(p[0] | p[1] << 8));
      for (int j = 0; j < 32; ++j) {
        float want;
        if (f == QuantFormat::Q8_0) {
          want = float(int8_t(p[2 + j])) * d;
        } else {
          const uint8_t byte = p[(f == QuantFormat::Q4_0 ? 2 : 4) + j % 16];
          const int nibble = j < 16 ? byte & 15 : byte >> 4;
          want = f == QuantFormat::Q4_0 ? float(nibble - 8) * d
                                        : add_f(mul_f(float(nibble), d), from_half_bits(uint16_t(p[2] | p[3] << 8)));
        }
        REQUIRE(w[size_t(b * 32 + j)] == want);
      }
    }
  }
}

TEST_CASE("quant: nf4 and int8 match their reference formulas", "[quant]") {
  const int64_t rows = 3, cols = 128;
  const auto v = test_values(rows, cols, 11);
  SECTION("nf4 codes are the published values") {
    for (int c = 0; c < 16; ++c) CHECK(kNF4Codes[c] == float(kPublishedNF4[c]));
  }
  SECTION("nf4: nearest code of x * (1 / absmax) per 64-element block") {
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(v, rows, cols), QuantFormat::NF4);
    const auto b = bytes_of(q);
    const auto absmax = q.scales().to_vector<float>();
    REQUIRE(absmax.size() == size_t(rows * cols / 64));
    for (int64_t block = 0; block < rows * cols / 64; ++block) {
      float amax = 0;
      for (int j = 0; j < 64; ++j) amax = std::max(amax, std::fabs(v[size_t(block * 64 + j)]));
      REQUIRE(absmax[size_t(block)] == amax);
      const float inv = amax == 0 ? 0.0f : 1.0f / amax;
      for (int j = 0; j < 64; ++j) {
        const uint8_t byte = b[size_t(block * 32 + j / 2)];
        const int code = j % 2 == 0 ? byte >> 4 : byte & 15;
        REQUIRE(code == nearest_nf4(mul_f(v[size_t(block * 64 + j)], inv)));
      }
    }
    const auto w = q.dequantize().to_vector<float>();
    for (size_t i = 0; i < w.size(); ++i) {
      const uint8_t byte = b[i / 2];
      const int code = i % 2 == 0 ? byte >> 4 : byte & 15;
      REQUIRE(w[i] == mul_f(float(kPublishedNF4[code]), absmax[i / 64]));
    }
  }
  SECTION("int8 per row") {
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(v, rows, cols), QuantFormat::Int8);
    const auto b = bytes_of(q);
    const auto scales = q.scales().to_vector<float>();
    for (int64_t r = 0; r < rows; ++r) {
      float amax = 0;
      for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(v[size_t(r * cols + c)]));
      REQUIRE(scales[size_t(r)] == amax / 127);
      for (int64_t c = 0; c < cols; ++c) {
        const float want = amax == 0 ? 0.0f : std::nearbyint(mul_f(v[size_t(r * cols + c)], 127 / amax));
        REQUIRE(int8_t(b[size_t(r * cols + c)]) == int(want));
      }
    }
  }
}

TEST_CASE("quant: bytes identical to the gguf package's quantize, values to its dequantize", "[quant]") {
  const int64_t rows = 6, cols = 160;
  const auto v = test_values(rows, cols, 3);
  const std::string dir = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  const std::string base = dir + "/dtensor_quant_" + std::to_string(::getpid());
  std::ofstream(base + ".in", std::ios::binary).write(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  for (QuantFormat f : {QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4_1}) {
    INFO(quant_format_name(f));
    const std::string command = "python3 " DTENSOR_QUANT_GGUF_REFERENCE " " + std::string(quant_format_name(f)) + " " +
                                std::to_string(rows) + " " + std::to_string(cols) + " " + base + ".in " + base +
                                ".blocks " + base + ".out 2>/dev/null";
    const int status = std::system(command.c_str());
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
      std::remove((base + ".in").c_str());
      SKIP_TEST("the gguf Python package is not importable (scripts/install-py-tools.sh)");
    }
    REQUIRE(status == 0);
    const int64_t nbytes = rows * cols / 32 * quant_block_bytes(f);
    std::vector<uint8_t> blocks(static_cast<size_t>(nbytes));
    std::ifstream(base + ".blocks", std::ios::binary).read(reinterpret_cast<char*>(blocks.data()), nbytes);
    std::vector<float> values(static_cast<size_t>(rows * cols));
    std::ifstream(base + ".out", std::ios::binary).read(reinterpret_cast<char*>(values.data()), rows * cols * 4);
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(v, rows, cols), f);
    CHECK(bytes_of(q) == blocks);
    const QuantizedMatrix adopted = QuantizedMatrix::from_blocks(f, rows, cols, Tensor::from_vector(blocks, {nbytes}));
    CHECK(adopted.dequantize().to_vector<float>() == values);
  }
  for (const char* suffix : {".in", ".blocks", ".out"}) std::remove((base + suffix).c_str());
}

TEST_CASE("quant: shards, row lookups and storage", "[quant]") {
  const int64_t rows = 6, cols = 256;
  const auto v = test_values(rows, cols, 5);
  for (QuantFormat f : kAllQuantFormats) {
    INFO(quant_format_name(f));
    const QuantizedMatrix q = QuantizedMatrix::quantize(f32_tensor(v, rows, cols), f);
    const Tensor full = q.dequantize();
    const int64_t block = quant_block_size(f) == 1 ? 32 : quant_block_size(f);
    DYNAMIC_SECTION("narrow_rows / narrow_cols equal the dequantized slices: " << quant_format_name(f)) {
      CHECK(q.narrow_rows(2, 3).dequantize().to_vector<float>() == full.narrow(0, 2, 3).to_vector<float>());
      const QuantizedMatrix cols_shard = q.narrow_cols(block, 2 * block);
      CHECK(cols_shard.cols() == 2 * block);
      CHECK(cols_shard.dequantize().to_vector<float>() == full.narrow(1, block, 2 * block).to_vector<float>());
      CHECK(!cols_shard.data().shares_storage(q.data()));
    }
    DYNAMIC_SECTION("dequantize_rows reads rows by id, any id shape: " << quant_format_name(f)) {
      const Tensor ids = Tensor::from_vector<int64_t>({5, 0, 5, 2}, {2, 2});
      const Tensor got = q.dequantize_rows(ids, DType::F32);
      CHECK(got.shape() == Shape{2, 2, cols});
      CHECK(got.select(0, 1).select(0, 1).to_vector<float>() == full.select(0, 2).to_vector<float>());
      CHECK(q.dequantize_rows(Tensor::from_vector<int32_t>({1}, {1}), DType::BF16).dtype() == DType::BF16);
      require_error<ValueError>([&] { q.dequantize_rows(Tensor::from_vector<int64_t>({6}, {1})); }, {"id 6"});
    }
    DYNAMIC_SECTION("bytes counts data and scales: " << quant_format_name(f)) {
      const int64_t expected = f == QuantFormat::Int8  ? rows * cols + rows * 4
                               : f == QuantFormat::NF4 ? rows * cols / 2 + rows * cols / 64 * 4
                                                       : rows * cols / 32 * quant_block_bytes(f);
      CHECK(q.bytes() == expected);
    }
  }
}

TEST_CASE("quant: shard boundaries inside a block are refused", "[quant]") {
  const auto v = test_values(4, 256, 9);
  const QuantizedMatrix q4 = QuantizedMatrix::quantize(f32_tensor(v, 4, 256), QuantFormat::Q4_0);
  require_error<ShapeError>([&] { q4.narrow_cols(16, 64); }, {"boundary 16", "32"});
  require_error<ShapeError>([&] { q4.narrow_cols(32, 40); }, {"boundary 72", "32"});
  require_error<ShapeError>([&] { q4.narrow_cols(0, 288); }, {"outside"});
  require_error<ShapeError>([&] { q4.narrow_rows(3, 2); }, {"outside"});
  const QuantizedMatrix nf4 = QuantizedMatrix::quantize(f32_tensor(v, 4, 256), QuantFormat::NF4);
  require_error<ShapeError>([&] { nf4.narrow_cols(32, 64); }, {"boundary 32", "64"});
  CHECK(nf4.narrow_cols(64, 128).cols() == 128);
  const QuantizedMatrix i8 = QuantizedMatrix::quantize(f32_tensor(v, 4, 256), QuantFormat::Int8);
  CHECK(i8.narrow_cols(3, 5).dequantize().to_vector<float>() ==
        i8.dequantize().narrow(1, 3, 5).contiguous().to_vector<float>());
}

TEST_CASE("quant: bad input", "[quant]") {
  const auto v = test_values(2, 64, 1);
  const Tensor w = f32_tensor(v, 2, 64);
  require_error<ShapeError>([&] { QuantizedMatrix::quantize(w.narrow(1, 0, 48), QuantFormat::Q4_0); }, {"48", "32"});
  require_error<ShapeError>([&] { QuantizedMatrix::quantize(w.narrow(1, 0, 32), QuantFormat::NF4); }, {"32", "64"});
  require_error<ShapeError>([&] { QuantizedMatrix::quantize(w.view({2, 2, 32}), QuantFormat::Q8_0); }, {"2-D"});
  require_error<DTypeError>([&] { QuantizedMatrix::quantize(w.to(DType::I32), QuantFormat::Q8_0); }, {"i32"});
  require_error<ShapeError>(
      [&] { QuantizedMatrix::from_blocks(QuantFormat::Q4_1, 2, 64, Tensor::zeros({79}, DType::U8)); }, {"80", "79"});
  require_error<ValueError>(
      [&] { QuantizedMatrix::from_blocks(QuantFormat::NF4, 2, 64, Tensor::zeros({64}, DType::U8)); }, {"nf4"});
  require_error<DTypeError>(
      [&] { QuantizedMatrix::from_blocks(QuantFormat::Q8_0, 2, 64, Tensor::zeros({136}, DType::F32)); }, {"f32"});
  require_error<ShapeError>(
      [&] {
        QuantizedMatrix::from_parts(QuantFormat::NF4, 2, 64, Tensor::zeros({2, 32}, DType::U8));
      },
      {"scales"});
  // Values bf16 and f16 quantize like their f32 widening.
  const QuantizedMatrix from_bf16 = QuantizedMatrix::quantize(w.to(DType::BF16), QuantFormat::Q4_0);
  const QuantizedMatrix from_f32 = QuantizedMatrix::quantize(w.to(DType::BF16).to(DType::F32), QuantFormat::Q4_0);
  CHECK(bytes_of(from_bf16) == bytes_of(from_f32));
}
