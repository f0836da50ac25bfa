// matmul, bmm and linear on DTensors against the full-tensor products, the rule table's output
// placements, and the cost-based choice between valid rewrites seen through the comm recorder.
#include "dtensor_ops_check.hpp"

#include "collectives/comm_recorder.hpp"
#include "tests/skip.hpp"

using namespace dtensor;
using namespace dtensor::testing;

TEST_CASE("matmul and bmm equal the full product for random placements", "[ops][matmul]") {
  std::mt19937 rng(5);
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{8, 6}, {6, 4}}, {{7, 5}, {5, 3}}, {{3, 2}, {2, 3}}, {{2, 5, 6}, {6, 3}}, {{3, 4, 5}, {3, 5, 2}}};
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const auto& [sa, sb] : shapes) {
      Tensor a = integer_valued(sa, DType::F64, 1), b = integer_valued(sb, DType::F64, 2);
      for (int draw = 0; draw < 10; ++draw) {
        std::vector<Placements> layouts = {random_placements(rng, mesh, int64_t(sa.size()), true),
                                           random_placements(rng, mesh, int64_t(sb.size()), true)};
        check_op(
            mesh, {a, b}, layouts, [](const auto& x) { return matmul(x[0], x[1]); },
            [](const auto& x) { return matmul(x[0], x[1]); });
        if (sa.size() == 3 && sb.size() == 3) {
          check_op(
              mesh, {a, b}, layouts, [](const auto& x) { return bmm(x[0], x[1]); },
              [](const auto& x) { return bmm(x[0], x[1]); });
        }
      }
    }
  }
}

TEST_CASE("linear with and without bias equals the full computation", "[ops][matmul]") {
  std::mt19937 rng(8);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const auto& [sx, out] : std::vector<std::pair<Shape, int64_t>>{{{5, 6}, 7}, {{2, 3, 8}, 4}, {{6}, 5}}) {
      const int64_t in = sx.back();
      Tensor x = integer_valued(sx, DType::F32, 3), w = integer_valued({out, in}, DType::F32, 4);
      Tensor bias = integer_valued({out}, DType::F32, 5);
      for (int draw = 0; draw < 10; ++draw) {
        std::vector<Placements> layouts = {random_placements(rng, mesh, int64_t(sx.size()), true),
                                           random_placements(rng, mesh, 2, true),
                                           random_placements(rng, mesh, 1, true)};
        check_op(
            mesh, {x, w, bias}, layouts, [](const auto& t) { return linear(t[0], t[1], t[2]); },
            [](const auto& t) { return linear(t[0], t[1], t[2]); });
        check_op(
            mesh, {x, w}, {layouts[0], layouts[1]}, [](const auto& t) { return linear(t[0], t[1]); },
            [](const auto& t) { return linear(t[0], t[1]); });
      }
    }
  }
}

// |got - want| <= tol * sum |a||b| element by element: got is in a 16-bit or f32 dtype, want and
// the scale in f64. Partial sums rounded on each rank and again when reduced stay within it.
void check_within_scale(const Tensor& got, const Tensor& want, const Tensor& scale, double tol) {
  REQUIRE(got.shape() == want.shape());
  const std::vector<double> g = got.to(DType::F64).contiguous().to_vector<double>();
  const std::vector<double> w = want.contiguous().to_vector<double>(), s = scale.contiguous().to_vector<double>();
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) bad += std::abs(g[i] - w[i]) > tol * s[i] + 1e-12;
  CHECK(bad == 0);
}

TEST_CASE("matmul, bmm and linear in f32, bf16 and f16 on odd shapes equal the f64 product", "[ops][matmul][dtypes]") {
  std::mt19937 rng(11);
  // 1 x K, K not a multiple of 16, uneven shards everywhere.
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{1, 37}, {37, 5}}, {{7, 37}, {37, 9}}, {{3, 5, 19}, {3, 19, 6}}};
  const std::vector<std::pair<DType, double>> dtypes = {{DType::F32, 1e-5}, {DType::BF16, 2.5e-2}, {DType::F16, 4e-3}};
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const auto& [dt, tol] : dtypes) {
      for (const auto& [sa, sb] : shapes) {
        // Values m/8 are exact in every dtype; the reference multiplies the same values in f64.
        const Tensor a = mul(integer_valued(sa, DType::F64, 1, -16, 17), 0.125).to(dt);
        const Tensor b = mul(integer_valued(sb, DType::F64, 2, -16, 17), 0.125).to(dt);
        const Tensor a64 = a.to(DType::F64), b64 = b.to(DType::F64);
        const Tensor want = matmul(a64, b64), scale = matmul(abs(a64), abs(b64));
        const Tensor wt = b.transpose(-1, -2).contiguous();  // linear's [out, in] weight
        for (int draw = 0; draw < 6; ++draw) {
          INFO(dtype_name(dt) << " " << shape_str(sa) << " x " << shape_str(sb) << " mesh " << mesh.to_string());
          const Placements pa = random_placements(rng, mesh, int64_t(sa.size()), true);
          const Placements pb = random_placements(rng, mesh, int64_t(sb.size()), true);
          const DTensor x = DTensor::distribute(a, mesh, pa), y = DTensor::distribute(b, mesh, pb);
          check_within_scale(matmul(x, y).full_tensor(), want, scale, tol);
          if (sa.size() == 3) check_within_scale(bmm(x, y).full_tensor(), want, scale, tol);
          if (sb.size() == 2) {
            const DTensor w = DTensor::distribute(wt, mesh, random_placements(rng, mesh, 2, true));
            check_within_scale(linear(x, w).full_tensor(), want, scale, tol);
          }
        }
      }
    }
  }
}

TEST_CASE("matmul output placements follow the rule table without communication", "[ops][matmul][rules]") {
  DeviceMesh mesh = op_meshes()[0];
  Tensor a = integer_valued({8, 6}, DType::F64, 1), b = integer_valued({6, 4}, DType::F64, 2);
  auto placed = [&](const Tensor& t, Placement p) { return DTensor::distribute(t, mesh, {p}); };
  struct Row {
    Placement a, b, out;
  };
  for (const Row& r : std::vector<Row>{{Shard(1), Shard(0), Partial()},
                                       {Shard(0), Replicate(), Shard(0)},
                                       {Replicate(), Shard(1), Shard(1)},
                                       {Replicate(), Replicate(), Replicate()},
                                       {Partial(), Replicate(), Partial()}}) {
    DTensor x = placed(a, r.a), y = placed(b, r.b);
    CommRecorder recorder;
    DTensor z = matmul(x, y);
    CHECK(recorder.calls().empty());
    CHECK(z.placements() == Placements{r.out});
  }
  // Colwise and rowwise linear: weight rows give output columns, weight columns a partial sum.
  Tensor w = integer_valued({4, 6}, DType::F64, 3), bias = integer_valued({4}, DType::F64, 4);
  CHECK(linear(placed(a, Replicate()), placed(w, Shard(0)), placed(bias, Shard(0))).placements() ==
        Placements{Shard(1)});
  CHECK(linear(placed(a, Shard(1)), placed(w, Shard(1))).placements() == Placements{Partial()});
  // bmm keeps a shared batch split.
  Tensor p = integer_valued({4, 3, 5}, DType::F64, 5), q = integer_valued({4, 5, 2}, DType::F64, 6);
  CHECK(bmm(placed(p, Shard(0)), placed(q, Shard(0))).placements() == Placements{Shard(0)});
}

TEST_CASE("S(0) x S(0) matmul runs the cheaper rewrite", "[ops][matmul][cost]") {
  DeviceMesh mesh = op_meshes()[0];
  if (mesh.size() == 1) SKIP_TEST("one rank moves no bytes");
  // Returns the bytes the matmul moved (recorded before anything else communicates) and the
  // result's placements.
  auto run = [&](const Shape& sa, const Shape& sb) {
    DTensor x = DTensor::distribute(integer_valued(sa, DType::F32, 1), mesh, {Shard(0)});
    DTensor y = DTensor::distribute(integer_valued(sb, DType::F32, 2), mesh, {Shard(0)});
    int64_t moved = 0;
    DTensor z;
    {
      CommRecorder recorder;
      z = matmul(x, y);
      for (const auto& call : recorder.calls()) moved += call.bytes;
    }
    CHECK(equal(z.full_tensor(), matmul(x.full_tensor(), y.full_tensor())));
    return std::make_pair(moved, z.placements());
  };
  // A short, wide a against a big b: a is moved to S(1) (its 8 KiB), b (1 MiB) stays; P(sum).
  auto [small_a, p1] = run({8, 256}, {256, 1024});
  CHECK(small_a > 0);
  CHECK(small_a <= 8 * 256 * 4);
  CHECK(p1 == Placements{Partial()});
  // A tall a against a small b: b (8 KiB) is gathered, the rows of a stay where they are.
  auto [small_b, p2] = run({1024, 256}, {256, 8});
  CHECK(small_b > 0);
  CHECK(small_b <= 256 * 8 * 4);
  CHECK(p2 == Placements{Shard(0)});
}

TEST_CASE("bad inputs to ops raise typed errors naming the op", "[ops][errors]") {
  DeviceMesh mesh = op_meshes()[0];
  auto placed = [&](const Shape& s, Placement p) {
    return DTensor::distribute(integer_valued(s, DType::F32, 1), mesh, {p});
  };
  CHECK_THROWS_AS(add(placed({3, 4}, Shard(0)), placed({5}, Replicate())), ShapeError);
  CHECK_THROWS_WITH(add(placed({3, 4}, Shard(0)), placed({5}, Replicate())), Catch::Contains("add"));
  CHECK_THROWS_AS(matmul(placed({3, 4}, Replicate()), placed({5, 2}, Replicate())), ShapeError);
  CHECK_THROWS_WITH(matmul(placed({3, 4}, Replicate()), placed({5, 2}, Replicate())), Catch::Contains("matmul"));
  CHECK_THROWS_AS(linear(placed({3, 4}, Replicate()), placed({2, 5}, Replicate())), ShapeError);
  DTensor i64 = DTensor::distribute(integer_valued({3, 4}, DType::I64, 1), mesh, {Replicate()});
  CHECK_THROWS_AS(add(placed({3, 4}, Replicate()), i64), DTypeError);
  if (mesh.size() > 1) {
    // Placements no rule accepts as they are, while implicit redistributes are refused.
    NoImplicitRedistribute strict;
    CHECK_THROWS_AS(add(placed({4, 4}, Shard(0)), placed({4, 4}, Shard(1))), ValueError);
    CHECK_THROWS_WITH(add(placed({4, 4}, Shard(0)), placed({4, 4}, Shard(1))),
                      Catch::Contains("add") && Catch::Contains("(S(0)), (S(1))"));
    CHECK_NOTHROW(add(placed({4, 4}, Shard(0)), placed({4, 4}, Shard(0))));
  }
  // Inputs on different meshes.
  if (dtensor::world().size() > 1) {
    std::vector<int> reversed;
    for (int r = dtensor::world().size(); r-- > 0;) reversed.push_back(r);
    DeviceMesh flipped = DeviceMesh::from_ranks(dtensor::world(), reversed, {int64_t(reversed.size())});
    DTensor elsewhere = DTensor::distribute(integer_valued({3, 4}, DType::F32, 1), flipped, {Replicate()});
    CHECK_THROWS_AS(add(placed({3, 4}, Replicate()), elsewhere), MeshError);
  }
}
