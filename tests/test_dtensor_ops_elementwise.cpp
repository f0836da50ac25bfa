// Elementwise DTensor ops (binary with broadcasting, where, scalar, unary, cast) against the same
// op on the full tensors, over random placements on the 1-D world mesh and the 2x2 mesh.
#include "dtensor_ops_check.hpp"

using namespace dtensor;
using namespace dtensor::testing;

namespace {

using Binary = Tensor (*)(const Tensor&, const Tensor&);
using DBinary = DTensor (*)(const DTensor&, const DTensor&);

struct BinaryCase {
  const char* name;
  DBinary op;
  Binary reference;
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {{"add", dtensor::add, dtensor::add},
                                                {"sub", dtensor::sub, dtensor::sub},
                                                {"mul", dtensor::mul, dtensor::mul},
                                                {"div", dtensor::div, dtensor::div},
                                                {"maximum", dtensor::maximum, dtensor::maximum},
                                                {"minimum", dtensor::minimum, dtensor::minimum}};
  return cases;
}

// Shape pairs: equal and even, uneven, smaller than the mesh (empty shards), and broadcasting.
const std::vector<std::pair<Shape, Shape>>& shape_pairs() {
  static const std::vector<std::pair<Shape, Shape>> pairs = {{{8, 4}, {8, 4}}, {{7, 5}, {7, 5}},    {{3, 2}, {3, 2}},
                                                             {{6, 5}, {5}},    {{5, 1, 3}, {4, 3}}, {{1, 6}, {5, 1}}};
  return pairs;
}

}  // namespace

TEST_CASE("binary elementwise ops equal the full-tensor op for random placements", "[ops][elementwise]") {
  std::mt19937 rng(1234);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const auto& [sa, sb] : shape_pairs()) {
      for (const BinaryCase& c : binary_cases()) {
        for (DType dtype : {DType::F64, DType::F32}) {
          Tensor a = integer_valued(sa, dtype, 1);
          // Divisors stay away from zero.
          Tensor b =
              std::string_view(c.name) == "div" ? integer_valued(sb, dtype, 2, 1, 5) : integer_valued(sb, dtype, 2);
          for (int draw = 0; draw < 4; ++draw) {
            std::vector<Placements> layouts = {random_placements(rng, mesh, int64_t(sa.size()), true),
                                               random_placements(rng, mesh, int64_t(sb.size()), true)};
            INFO(c.name << " " << shape_str(sa) << " " << shape_str(sb) << " " << dtype_name(dtype));
            check_op(
                mesh, {a, b}, layouts, [&](const std::vector<DTensor>& x) { return c.op(x[0], x[1]); },
                [&](const std::vector<Tensor>& x) { return c.reference(x[0], x[1]); });
          }
        }
      }
    }
  }
}

TEST_CASE("bf16 and integer elementwise ops", "[ops][elementwise]") {
  std::mt19937 rng(99);
  for (const DeviceMesh& mesh : op_meshes()) {
    Tensor a = integer_valued({9, 6}, DType::I64, 3);
    Tensor b = integer_valued({9, 6}, DType::I64, 4);
    Tensor fa = random({9, 6}, DType::BF16, {.seed = 5});
    Tensor fb = random({6}, DType::BF16, {.seed = 6});
    for (int draw = 0; draw < 6; ++draw) {
      auto la = random_placements(rng, mesh, 2, true), lb = random_placements(rng, mesh, 2, true);
      check_op(
          mesh, {a, b}, {la, lb}, [](const auto& x) { return mul(x[0], x[1]); },
          [](const auto& x) { return mul(x[0], x[1]); });
      // bf16 partial values are summed in bf16 by the reduction: compare with a bf16 tolerance.
      check_op(
          mesh, {fa, fb}, {la, random_placements(rng, mesh, 1, false)}, [](const auto& x) { return add(x[0], x[1]); },
          [](const auto& x) { return add(x[0], x[1]); }, 2e-2);
    }
  }
}

TEST_CASE("where picks from a and b under random placements", "[ops][elementwise]") {
  std::mt19937 rng(7);
  for (const DeviceMesh& mesh : op_meshes()) {
    Tensor cond = integer_valued({6, 5}, DType::U8, 8, 0, 2);
    Tensor a = integer_valued({6, 5}, DType::F64, 9);
    Tensor b = integer_valued({5}, DType::F64, 10);
    for (int draw = 0; draw < 12; ++draw) {
      std::vector<Placements> layouts = {random_placements(rng, mesh, 2, false), random_placements(rng, mesh, 2, true),
                                         random_placements(rng, mesh, 1, true)};
      check_op(
          mesh, {cond, a, b}, layouts, [](const auto& x) { return where(x[0], x[1], x[2]); },
          [](const auto& x) { return where(x[0], x[1], x[2]); });
    }
  }
}

TEST_CASE("unary, scalar and cast ops equal the full-tensor op", "[ops][elementwise]") {
  using Unary = Tensor (*)(const Tensor&);
  using DUnary = DTensor (*)(const DTensor&);
  const std::vector<std::pair<DUnary, Unary>> unary = {
      {dtensor::neg, dtensor::neg},   {dtensor::exp, dtensor::exp},     {dtensor::log, dtensor::log},
      {dtensor::sqrt, dtensor::sqrt}, {dtensor::rsqrt, dtensor::rsqrt}, {dtensor::tanh, dtensor::tanh},
      {dtensor::relu, dtensor::relu}, {dtensor::silu, dtensor::silu},   {dtensor::gelu, dtensor::gelu}};
  std::mt19937 rng(42);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const Shape& shape : {Shape{7, 3}, Shape{2, 5, 4}, Shape{3}}) {
      // Positive values so log, sqrt and rsqrt are defined; a Partial input sums to the same value.
      Tensor x = random(shape, DType::F64, {.seed = 12, .a = 0.5, .b = 2.0});
      for (int draw = 0; draw < 3; ++draw) {
        std::vector<Placements> layout = {random_placements(rng, mesh, int64_t(shape.size()), true)};
        for (const auto& [op, reference] : unary) {
          check_op(
              mesh, {x}, layout, [op = op](const auto& t) { return op(t[0]); },
              [reference = reference](const auto& t) { return reference(t[0]); }, 1e-12);
        }
        check_op(
            mesh, {x}, layout, [](const auto& t) { return add(t[0], 2.5); },
            [](const auto& t) { return add(t[0], Tensor::full({}, 2.5, DType::F64)); }, 1e-12);
        check_op(
            mesh, {x}, layout, [](const auto& t) { return sub(t[0], 2.5); },
            [](const auto& t) { return sub(t[0], Tensor::full({}, 2.5, DType::F64)); }, 1e-12);
        check_op(
            mesh, {x}, layout, [](const auto& t) { return mul(t[0], -3.0); },
            [](const auto& t) { return mul(t[0], Tensor::full({}, -3.0, DType::F64)); }, 1e-12);
        check_op(
            mesh, {x}, layout, [](const auto& t) { return div(t[0], 3.0); },
            [](const auto& t) { return div(t[0], Tensor::full({}, 3.0, DType::F64)); }, 1e-12);
        for (DType to : {DType::F32, DType::BF16, DType::I64}) {
          check_op(
              mesh, {x}, layout, [to](const auto& t) { return cast(t[0], to); },
              [to](const auto& t) { return t[0].to(to); }, to == DType::I64 ? 0 : 1e-2);
        }
      }
    }
  }
}

TEST_CASE("elementwise output placements follow the rule table", "[ops][elementwise][rules]") {
  for (const DeviceMesh& mesh : op_meshes()) {
    if (mesh.ndim() != 1) continue;
    Tensor a = integer_valued({8, 6}, DType::F64, 1), b = integer_valued({8, 6}, DType::F64, 2);
    Tensor row = integer_valued({6}, DType::F64, 3);
    auto placed = [&](const Tensor& t, Placement p) { return DTensor::distribute(t, mesh, {p}); };
    // Matching shards stay sharded; a replicated operand is sliced locally (no communication).
    CHECK(add(placed(a, Shard(0)), placed(b, Shard(0))).placements() == Placements{Shard(0)});
    CHECK(mul(placed(a, Shard(1)), placed(row, Shard(0))).placements() == Placements{Shard(1)});
    // (On one rank every layout is the same data and R + R ties with slicing; the rule keeps R.)
    if (mesh.size() > 1) {
      CHECK(add(placed(a, Shard(1)), placed(b, Replicate())).placements() == Placements{Shard(1)});
    }
    // Partial stays partial where that is exact.
    CHECK(add(placed(a, Partial()), placed(b, Partial())).placements() == Placements{Partial()});
    CHECK(mul(placed(a, Partial()), placed(b, Replicate())).placements() == Placements{Partial()});
    CHECK(mul(placed(a, Partial()), 2.0).placements() == Placements{Partial()});
    CHECK(neg(placed(a, Partial(ReduceOp::Max))).placements() == Placements{Partial(ReduceOp::Min)});
    CHECK(maximum(placed(a, Partial(ReduceOp::Max)), placed(b, Partial(ReduceOp::Max))).placements() ==
          Placements{Partial(ReduceOp::Max)});
    // Nonlinear ops and a sum plus a scalar reduce the partial value first.
    CHECK_FALSE(relu(placed(a, Partial())).placements()[0].is_partial());
    CHECK_FALSE(add(placed(a, Partial()), 1.0).placements()[0].is_partial());
    CHECK(add(placed(a, Partial(ReduceOp::Avg)), 1.0).placements() == Placements{Partial(ReduceOp::Avg)});
  }
}
