// Joining, splitting and gathers (CPU kernels) against naive references;
// shared helpers in tensor_ops_reference.hpp.
#include "tensor_ops_reference.hpp"

// Joining, splitting, gathers -------------------------------------------------------------------

TEST_CASE("cat joins strided and empty pieces along any dim") {
  for (DType dt : kAllDTypes) {
    INFO(dtype_name(dt));
    const std::vector<Tensor> rows = {make({2, 3}, dt, Layout::Contiguous, 1), make({4, 3}, dt, Layout::Transposed, 2),
                                      make({0, 3}, dt, Layout::Contiguous, 3), make({1, 3}, dt, Layout::Narrowed, 4)};
    std::vector<double> want;
    for (const Tensor& t : rows) {
      for (double v : read(t)) want.push_back(v);
    }
    check_close(cat(rows, 0), {7, 3}, want, {0, 0});
    check_close(cat(rows, -2), {7, 3}, want, {0, 0});

    const std::vector<Tensor> cols = {make({2, 3}, dt, Layout::Narrowed, 5), make({2, 0}, dt, Layout::Contiguous, 6),
                                      make({2, 2}, dt, Layout::Expanded, 7)};
    const std::vector<double> c0 = read(cols[0]), c2 = read(cols[2]);
    want = {c0[0], c0[1], c0[2], c2[0], c2[1], c0[3], c0[4], c0[5], c2[2], c2[3]};
    check_close(cat(cols, 1), {2, 5}, want, {0, 0});
    // torch's legacy rule: a 1-D [0] tensor is skipped whatever the others' rank.
    check_close(cat({make({0}, dt, Layout::Contiguous), cols[0]}, 1), {2, 3}, c0, {0, 0});
    check_close(cat({make({0, 4}, dt, Layout::Contiguous)}, 0), {0, 4}, {}, {0, 0});
  }
  const Tensor a = make({2, 3}, DType::F32, Layout::Contiguous);
  expect_error<DTypeError>([&] { cat({a, a.to(DType::BF16)}, 0); }, {"[cat]", "f32", "bf16"});
  expect_error<ShapeError>(
      [&] {
        cat({a, make({2, 4}, DType::F32, Layout::Contiguous)}, 0);
      },
      {"[cat]", "[2, 4]", "dim 1"});
  expect_error<ShapeError>([&] { cat({a, a.unsqueeze(0)}, 0); }, {"[cat]", "dims"});
  expect_error<ShapeError>([&] { cat({a, a}, 2); }, {"[cat]", "2"});
  expect_error<ValueError>([&] { cat({}, 0); }, {"[cat]", "non-empty"});
}

TEST_CASE("chunk follows torch.chunk and returns views") {
  const Tensor a = make({3, 6}, DType::I64, Layout::Contiguous);
  const std::vector<double> va = read(a);
  struct Case {
    int64_t n, chunks;
    std::vector<int64_t> sizes;
  };
  for (const Case& c : std::vector<Case>{{5, 4, {2, 2, 1}},
                                         {6, 4, {2, 2, 2}},
                                         {4, 4, {1, 1, 1, 1}},
                                         {5, 1, {5}},
                                         {3, 5, {1, 1, 1}},
                                         {0, 3, {0, 0, 0}}}) {
    INFO("n=" << c.n << " chunks=" << c.chunks);
    const Tensor t = a.narrow(1, 0, c.n);
    const std::vector<Tensor> pieces = chunk(t, c.chunks, 1);
    REQUIRE(pieces.size() == c.sizes.size());
    int64_t start = 0;
    for (size_t p = 0; p < pieces.size(); ++p) {
      CHECK(pieces[p].shape() == Shape{3, c.sizes[p]});
      CHECK(pieces[p].shares_storage(a));
      std::vector<double> want;
      for (int64_t r = 0; r < 3; ++r) {
        for (int64_t j = 0; j < c.sizes[p]; ++j) want.push_back(va[size_t(r * 6 + start + j)]);
      }
      check_close(pieces[p], {3, c.sizes[p]}, want, {0, 0});
      start += c.sizes[p];
    }
  }
  expect_error<ValueError>([&] { chunk(a, 0, 0); }, {"[chunk]", "0"});
  expect_error<ShapeError>([&] { chunk(a, 2, 2); }, {"[chunk]", "2"});
}

TEST_CASE("split by sizes returns views and checks the sizes") {
  const Tensor a = make({2, 4}, DType::F32, Layout::Transposed);
  const std::vector<double> va = read(a);
  const std::vector<Tensor> pieces = split(a, {1, 0, 3}, -1);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[0].shares_storage(a));
  check_close(pieces[0], {2, 1}, {va[0], va[4]}, {0, 0});
  check_close(pieces[1], {2, 0}, {}, {0, 0});
  check_close(pieces[2], {2, 3}, {va[1], va[2], va[3], va[5], va[6], va[7]}, {0, 0});
  expect_error<ShapeError>([&] { split(a, {1, 2}, 1); }, {"[split]", "sum 3", "4"});
  expect_error<ValueError>([&] { split(a, {5, -1}, 1); }, {"[split]", "-1"});
}

TEST_CASE("index_select gathers along any dim with i32 and i64 indices") {
  for (DType dt : kAllDTypes) {
    for (Layout layout : {Layout::Contiguous, Layout::Transposed, Layout::Narrowed}) {
      INFO(dtype_name(dt) << " " << layout_name(layout));
      const Tensor a = make({4, 5}, dt, layout, 8);
      const std::vector<double> va = read(a);
      const Tensor rows = from_values({3}, DType::I32, {3, 0, 3});
      check_close(index_select(a, 0, rows), {3, 5},
                  [&] {
                    std::vector<double> w;
                    for (int64_t r : {3, 0, 3}) {
                      for (int64_t j = 0; j < 5; ++j) w.push_back(va[size_t(r * 5 + j)]);
                    }
                    return w;
                  }(),
                  {0, 0});
      const Tensor cols = from_values({8}, DType::I64, {0, 2, 4, 0, 2, 4, 0, 2}).slice(0, 0, 4);
      std::vector<double> want;
      for (int64_t r = 0; r < 4; ++r) {
        for (int64_t c : {0, 2, 4, 0}) want.push_back(va[size_t(r * 5 + c)]);
      }
      check_close(index_select(a, -1, cols), {4, 4}, want, {0, 0});
      check_close(index_select(a, 1, from_values({0}, DType::I64, {})), {4, 0}, {}, {0, 0});
    }
  }
  const Tensor a = make({4, 5}, DType::F32, Layout::Contiguous);
  expect_error<ValueError>(
      [&] {
        index_select(a, 0, from_values({2}, DType::I64, {1, 4}));
      },
      {"[index_select]", "index 4", "[0, 4)"});
  expect_error<ValueError>([&] { index_select(a, 1, from_values({1}, DType::I32, {-1})); }, {"[index_select]", "-1"});
  expect_error<DTypeError>([&] { index_select(a, 0, from_values({1}, DType::F32, {1})); }, {"[index_select]", "f32"});
  expect_error<ShapeError>([&] { index_select(a, 2, from_values({1}, DType::I64, {0})); }, {"[index_select]", "2"});
}

TEST_CASE("embedding looks up rows for ids of any shape") {
  for (DType dt : kAllDTypes) {
    for (Layout layout : {Layout::Contiguous, Layout::Narrowed}) {
      INFO(dtype_name(dt) << " " << layout_name(layout));
      const Tensor weight = make({6, 3}, dt, layout, 9);
      const std::vector<double> vw = read(weight);
      const std::vector<double> ids = {5, 0, 2, 5};
      std::vector<double> want;
      for (double id : ids) {
        for (int64_t j = 0; j < 3; ++j) want.push_back(vw[size_t(int64_t(id) * 3 + j)]);
      }
      check_close(embedding(weight, from_values({2, 2}, DType::I64, ids)), {2, 2, 3}, want, {0, 0});
      check_close(embedding(weight, from_values({2, 2}, DType::I32, ids).transpose(0, 1)), {2, 2, 3},
                  {want[0], want[1], want[2], want[6], want[7], want[8], want[3], want[4], want[5], want[9], want[10],
                   want[11]},
                  {0, 0});
    }
  }
  const Tensor weight = make({6, 3}, DType::F32, Layout::Contiguous);
  expect_error<ValueError>(
      [&] {
        embedding(weight, from_values({2}, DType::I64, {1, 6}));
      },
      {"[embedding]", "index 6", "[0, 6)"});
  const Tensor id = from_values({1}, DType::I64, {0});
  expect_error<ShapeError>([&] { embedding(weight.select(1, 0), id); }, {"[embedding]", "2-D"});
}
