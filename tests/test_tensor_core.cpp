// Tensor metadata, views and copies, checked against index arithmetic done by hand here.
#include <catch2/catch.hpp>

#include "tensor/host_block_cache.hpp"
#include "tensor/tensor.hpp"

#include <cmath>
#include <cstring>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

using namespace dtensor;

namespace {
// Element (i, j) of a row-major [rows, cols] arange is i * cols + j.
Tensor arange2d(int64_t rows, int64_t cols, DType dtype = DType::F32) { return Tensor::arange({rows, cols}, dtype); }
}  // namespace

TEST_CASE("factories set shape, strides and values", "[tensor]") {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::F64);
  CHECK(t.shape() == Shape{2, 3, 4});
  CHECK(t.strides() == Shape{12, 4, 1});
  CHECK(t.numel() == 24);
  CHECK(t.nbytes() == 24 * 8);
  CHECK(t.is_contiguous());
  for (double v : t.to_vector<double>()) CHECK(v == 0.0);

  Tensor f = Tensor::full({3}, 2.5, DType::BF16);
  for (float v : f.to_vector<float>()) CHECK(v == 2.5f);

  Tensor a = Tensor::arange({5}, DType::I64);
  CHECK(a.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});

  Tensor e = Tensor::empty({0, 3}, DType::F32);
  CHECK(e.numel() == 0);
  CHECK(e.is_contiguous());
}

TEST_CASE("every dtype has its size and name", "[tensor]") {
  CHECK(dtype_size(DType::F32) == 4);
  CHECK(dtype_size(DType::F64) == 8);
  CHECK(dtype_size(DType::BF16) == 2);
  CHECK(dtype_size(DType::F16) == 2);
  CHECK(dtype_size(DType::I32) == 4);
  CHECK(dtype_size(DType::I64) == 8);
  CHECK(dtype_size(DType::U8) == 1);
  CHECK(dtype_size(DType::I8) == 1);
  for (DType d : kAllDTypes) CHECK(dtype_from_name(dtype_name(d)) == d);
  CHECK_THROWS_AS(dtype_from_name("f8"), DTypeError);
}

TEST_CASE("bf16 and f16 round to nearest even", "[tensor][half]") {
  CHECK(BFloat16(1.0f).bits == 0x3F80);
  CHECK(BFloat16(-2.0f).bits == 0xC000);
  // 1 + 2^-8 is exactly halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even (1.0).
  CHECK(float(BFloat16(1.0f + 0x1.0p-8f)) == 1.0f);
  CHECK(float(BFloat16(1.0f + 0x1.8p-8f)) == 1.0f + 0x1.0p-7f);
  CHECK(std::isnan(float(BFloat16(NAN))));

  CHECK(Half(1.0f).bits == 0x3C00);
  CHECK(Half(65504.0f).bits == 0x7BFF);
  CHECK(Half(65520.0f).bits == 0x7C00);                      // rounds past the largest finite half: inf
  CHECK(Half(0x1.0p-24f).bits == 0x0001);                    // smallest subnormal
  CHECK(Half(0x1.0p-14f).bits == 0x0400);                    // smallest normal
  CHECK(float(Half(0x1.0p-25f)) == 0.0f);                    // halfway to the smallest subnormal: even (0)
  CHECK(float(Half(-0.333251953125f)) == -0.333251953125f);  // exactly representable
  for (float x : {0.1f, 3.14159f, -1000.5f, 1e-5f}) {
    // Half error: half an ulp, or half the subnormal spacing (2^-25) below 2^-14.
    CHECK(std::fabs(float(Half(x)) - x) <= std::max(std::fabs(x) * 0x1.0p-11f, 0x1.0p-25f));
    CHECK(std::fabs(float(BFloat16(x)) - x) <= std::fabs(x) * 0x1.0p-8f);
  }
}

TEST_CASE("narrow, select and slice are views with the right offsets", "[tensor][views]") {
  Tensor t = arange2d(4, 5);
  Tensor n = t.narrow(1, 1, 3);
  CHECK(n.shares_storage(t));
  CHECK(n.shape() == Shape{4, 3});
  CHECK_FALSE(n.is_contiguous());
  auto nv = n.to_vector<float>();
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 3; ++j) CHECK(nv[i * 3 + j] == float(i * 5 + j + 1));

  Tensor rows = t.narrow(0, 2, 2);
  CHECK(rows.is_contiguous());
  CHECK(rows.to_vector<float>().front() == 10.0f);

  Tensor s = t.select(0, -1);
  CHECK(s.shape() == Shape{5});
  CHECK(s.to_vector<float>() == std::vector<float>{15, 16, 17, 18, 19});

  Tensor every_other = t.slice(1, 0, 5, 2);
  CHECK(every_other.shape() == Shape{4, 3});
  CHECK(every_other.select(0, 1).to_vector<float>() == std::vector<float>{5, 7, 9});

  Tensor empty = t.narrow(0, 4, 0);
  CHECK(empty.numel() == 0);
  CHECK(empty.contiguous().numel() == 0);
}

TEST_CASE("transpose, permute and contiguous", "[tensor][views]") {
  Tensor t = Tensor::arange({2, 3, 4}, DType::I32);
  Tensor p = t.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  auto pv = p.contiguous().to_vector<int32_t>();
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) CHECK(pv[(k * 2 + i) * 3 + j] == i * 12 + j * 4 + k);

  Tensor tr = arange2d(3, 2).transpose(0, 1);
  CHECK(tr.to_vector<float>() == std::vector<float>{0, 2, 4, 1, 3, 5});
  CHECK(tr.contiguous().is_contiguous());
  CHECK_FALSE(tr.contiguous().shares_storage(tr));
  Tensor c = arange2d(3, 2);
  CHECK(c.contiguous().shares_storage(c));
}

TEST_CASE("expand, unsqueeze, squeeze, view, reshape, flatten", "[tensor][views]") {
  Tensor row = Tensor::arange({3}, DType::F32);
  Tensor e = row.expand({2, 3});
  CHECK(e.strides() == Shape{0, 1});
  CHECK(e.to_vector<float>() == std::vector<float>{0, 1, 2, 0, 1, 2});
  Tensor col = row.unsqueeze(1);
  CHECK(col.shape() == Shape{3, 1});
  CHECK(col.expand({3, 2}).to_vector<float>() == std::vector<float>{0, 0, 1, 1, 2, 2});
  CHECK(col.squeeze(1).shape() == Shape{3});
  CHECK_THROWS_AS(row.expand({2, 4}), ShapeError);

  Tensor t = arange2d(4, 6);
  Tensor v = t.view({2, -1, 3});
  CHECK(v.shape() == Shape{2, 4, 3});
  CHECK(v.shares_storage(t));
  CHECK_THROWS_AS(t.view({5, -1}), ShapeError);
  CHECK_THROWS_AS(t.transpose(0, 1).view({24}), ShapeError);
  Tensor r = t.transpose(0, 1).reshape({24});
  CHECK_FALSE(r.shares_storage(t));
  CHECK(r.to_vector<float>()[1] == 6.0f);  // element (0, 1) of the transpose is t[1][0]
  CHECK(Tensor::arange({2, 3, 4}, DType::F32).flatten(1).shape() == Shape{2, 12});
}

TEST_CASE("copy_from converts dtypes and broadcasts into strided views", "[tensor][copy]") {
  for (DType src_dtype : kAllDTypes) {
    for (DType dst_dtype : kAllDTypes) {
      Tensor src = Tensor::arange({3, 4}, src_dtype);
      Tensor dst = Tensor::zeros({4, 3}, dst_dtype).transpose(0, 1);  // strided destination
      dst.copy_from(src);
      auto got = dst.to_vector<double>();
      for (int64_t i = 0; i < 12; ++i) CHECK(got[i] == double(i));
    }
  }
  Tensor dst = Tensor::zeros({2, 3}, DType::F64);
  dst.copy_from(Tensor::arange({3}, DType::F64));
  CHECK(dst.to_vector<double>() == std::vector<double>{0, 1, 2, 0, 1, 2});
  CHECK_THROWS_AS(dst.copy_from(Tensor::zeros({4}, DType::F64)), ShapeError);

  Tensor block = Tensor::zeros({4, 5}, DType::F32);
  block.narrow(1, 1, 2).fill(7.0);
  auto bv = block.to_vector<float>();
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 5; ++j) CHECK(bv[i * 5 + j] == ((j == 1 || j == 2) ? 7.0f : 0.0f));
}

TEST_CASE("from_blob wraps memory without copying and runs the deleter", "[tensor]") {
  bool deleted = false;
  std::vector<float> memory = {1, 2, 3, 4, 5, 6};
  {
    Tensor t = Tensor::from_blob(memory.data(), {2, 3}, DType::F32, [&](void*) { deleted = true; });
    CHECK(t.data_ptr() == memory.data());
    t.select(0, 1).fill(0.0);
    CHECK(memory[4] == 0.0f);
    Tensor view = t.narrow(1, 0, 1);
    t = Tensor();
    CHECK_FALSE(deleted);  // the view still holds the storage
  }
  CHECK(deleted);
}

#if defined(__SANITIZE_ADDRESS__)
// Only in the sanitizer build (make asan): storages come from a cache of freed blocks and are
// rounded up to 64 bytes, both out of ASan's sight unless the storage code poisons them itself.
TEST_CASE("under ASan a storage's padding and a released block in the cache are poisoned", "[tensor][storage]") {
  const size_t nbytes = (size_t(256) << 10) + 4;  // a size the cache keeps, with 60 bytes of padding
  auto storage = Storage::allocate(nbytes, Device::cpu());
  auto* data = static_cast<char*>(storage->data());
  CHECK(__asan_region_is_poisoned(data, nbytes) == nullptr);
  CHECK(__asan_address_is_poisoned(data + nbytes));
  CHECK(__asan_address_is_poisoned(data + nbytes + 59));
  storage.reset();
  CHECK(__asan_region_is_poisoned(data, nbytes) == data);
  auto again = Storage::allocate(nbytes, Device::cpu());
  REQUIRE(again->data() == data);  // the same block, taken back from the cache
  CHECK(__asan_region_is_poisoned(data, nbytes) == nullptr);
  CHECK(__asan_address_is_poisoned(data + nbytes));
}
#endif

TEST_CASE("bad arguments raise typed errors naming the operation", "[tensor][errors]") {
  Tensor t = arange2d(3, 4);
  CHECK_THROWS_AS(t.narrow(2, 0, 1), ShapeError);
  CHECK_THROWS_WITH(t.narrow(1, 2, 3), Catch::Contains("[narrow]") && Catch::Contains("size 4"));
  CHECK_THROWS_AS(t.select(0, 3), ShapeError);
  CHECK_THROWS_AS(t.permute({0, 0}), ShapeError);
  CHECK_THROWS_AS(t.data<double>(), DTypeError);
  CHECK_THROWS_AS(Tensor::empty({2, -1}, DType::F32), ShapeError);
  // Empty, but its strides would multiply the other sizes past int64 (what the fuzzed parsers
  // first let through: fuzz/corpus/npy/crash-zero-dim-huge-strides.npy).
  const int64_t huge = int64_t(1) << 62;
  CHECK_THROWS_WITH(Tensor::empty({0, huge, huge}, DType::F32),
                    Catch::Contains("[empty]") && Catch::Contains("overflows int64 strides"));
  CHECK(Tensor::empty({0, huge, 1}, DType::F32).numel() == 0);
  CHECK_THROWS_AS(Tensor::empty({2}, DType::F32, Device::cuda(0)), DeviceError);
  CHECK_THROWS_WITH(t.item<float>(), Catch::Contains("[item]"));
  CHECK_THROWS_WITH(Tensor().data_ptr(), Catch::Contains("rank"));
}

TEST_CASE("release_cached_host_blocks frees the blocks released storages left cached", "[tensor][storage]") {
  release_cached_host_blocks();  // whatever earlier tests left
  const size_t bytes = size_t(1) << 20;
  {
    Tensor block = Tensor::empty({int64_t(bytes / 4)}, DType::F32);
    block.data<float>()[0] = 1.0f;
  }
  CHECK(release_cached_host_blocks() == bytes);  // the block went to the cache, and now out of it
  CHECK(release_cached_host_blocks() == 0);
  Tensor again = Tensor::zeros({int64_t(bytes / 4)}, DType::F32);  // a fresh block, not a freed one
  CHECK(again.data<float>()[0] == 0.0f);
}
