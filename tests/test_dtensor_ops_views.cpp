// View ops (reshape, view, flatten, transpose, permute, narrow) and joining / splitting ops (cat,
// stack, chunk, split) on DTensors against the same ops on the full tensors, the rule table's
// output placements, reshapes that map through without communication only where shards are even,
// nested sharding on the 2x2 mesh, and typed errors for bad inputs.
#include "dtensor_ops_check.hpp"

#include "collectives/comm_recorder.hpp"
#include "placements/sharding.hpp"
#include "tests/skip.hpp"

using namespace dtensor;
using namespace dtensor::testing;

namespace {

// The local block must be the one the output placements describe (torch.chunk arithmetic).
void check_local_block(const DTensor& t) {
  Block block = local_block(t.shape(), t.mesh().shape(), t.mesh().coordinate(), t.placements());
  INFO("local block of " << shape_str(t.shape()) << " as " << placements_str(t.placements()));
  CHECK(t.to_local().shape() == block.shape);
}

// Checks a single-output op like check_op, plus the local block of the result.
void check_one(const DeviceMesh& mesh, const Tensor& full, const Placements& layout,
               const std::function<DTensor(const DTensor&)>& op,
               const std::function<Tensor(const Tensor&)>& reference) {
  DTensor result = check_op(
      mesh, {full}, {layout}, [&](const std::vector<DTensor>& x) { return op(x[0]); },
      [&](const std::vector<Tensor>& x) { return reference(x[0]); });
  check_local_block(result);
}

// Compares every piece of a chunk / split with the pieces of the full tensor.
void check_pieces(const std::vector<DTensor>& got, const std::vector<Tensor>& expected) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("piece " << i << " as " << placements_str(got[i].placements()));
    Tensor full = got[i].full_tensor();
    REQUIRE(full.shape() == expected[i].shape());
    CHECK(equal(full, expected[i].contiguous()));
    check_local_block(got[i]);
  }
}

// Bytes the collectives of `f` moved.
uint64_t bytes_moved(const std::function<void()>& f) {
  CommRecorder recorder;
  f();
  uint64_t moved = 0;
  for (const auto& call : recorder.calls()) moved += call.bytes;
  return moved + recorder.calls().size();  // a zero-byte collective still counts
}

// Input shapes with the reshape targets tried on each: even, uneven, smaller than the mesh, size-1.
const std::vector<std::pair<Shape, std::vector<Shape>>>& reshape_cases() {
  static const std::vector<std::pair<Shape, std::vector<Shape>>> cases = {
      {{12, 4}, {{48}, {4, 3, 4}, {2, 6, 4}, {6, -1}, {12, 2, 2}, {3, 16}}},
      {{7, 5}, {{35}, {5, 7}, {7, 5, 1}}},
      {{3, 2}, {{6}, {2, 3}, {1, 6, 1}}},
      {{2, 3, 4}, {{6, 4}, {2, 12}, {24}, {4, 6}, {2, 3, 2, 2}}},
      {{5, 1, 3}, {{15}, {5, 3}, {1, 5, 3}}},
  };
  return cases;
}

}  // namespace

TEST_CASE("reshape, view and flatten equal the full-tensor op for random placements", "[ops][views]") {
  std::mt19937 rng(21);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const auto& [shape, targets] : reshape_cases()) {
      Tensor a = integer_valued(shape, DType::F64, 1);
      for (int draw = 0; draw < 6; ++draw) {
        Placements layout = random_placements(rng, mesh, int64_t(shape.size()), true);
        for (const Shape& target : targets) {
          INFO("reshape " << shape_str(shape) << " -> " << shape_str(target));
          check_one(
              mesh, a, layout, [&](const DTensor& x) { return reshape(x, target); },
              [&](const Tensor& x) { return x.reshape(target); });
          check_one(
              mesh, a, layout, [&](const DTensor& x) { return view(x, target); },
              [&](const Tensor& x) { return x.reshape(target); });
        }
        INFO("flatten " << shape_str(shape));
        check_one(
            mesh, a, layout, [](const DTensor& x) { return flatten(x); }, [](const Tensor& x) { return x.flatten(); });
        check_one(
            mesh, a, layout, [](const DTensor& x) { return flatten(x, 0, 1); },
            [](const Tensor& x) { return x.flatten(0, 1); });
        check_one(
            mesh, a, layout, [](const DTensor& x) { return flatten(x, -2, -1); },
            [](const Tensor& x) { return x.flatten(-2, -1); });
      }
    }
  }
}

TEST_CASE("transpose, permute and narrow equal the full-tensor op for random placements", "[ops][views]") {
  std::mt19937 rng(22);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const Shape& shape : std::vector<Shape>{{8, 4}, {7, 5}, {3, 2}, {2, 3, 5}, {5, 1, 3}}) {
      Tensor a = integer_valued(shape, DType::F32, 2);
      const int64_t nd = int64_t(shape.size());
      std::vector<int64_t> reversed;
      for (int64_t d = nd; d-- > 0;) reversed.push_back(d);
      for (int draw = 0; draw < 6; ++draw) {
        Placements layout = random_placements(rng, mesh, nd, true);
        INFO(shape_str(shape));
        check_one(
            mesh, a, layout, [](const DTensor& x) { return transpose(x, 0, -1); },
            [](const Tensor& x) { return x.transpose(0, -1); });
        check_one(
            mesh, a, layout, [&](const DTensor& x) { return permute(x, reversed); },
            [&](const Tensor& x) { return x.permute(reversed); });
        for (int64_t d = 0; d < nd; ++d) {
          const int64_t n = shape[size_t(d)];
          // A middle slice, the whole dim, and an empty slice at the end.
          for (auto [start, length] : std::vector<std::pair<int64_t, int64_t>>{{1, n - 2}, {0, n}, {n, 0}}) {
            if (length < 0) continue;
            INFO("narrow dim " << d << " start " << start << " length " << length);
            check_one(
                mesh, a, layout, [&](const DTensor& x) { return narrow(x, d, start, length); },
                [&](const Tensor& x) { return x.narrow(d, start, length); });
          }
        }
      }
    }
  }
}

TEST_CASE("cat, stack, chunk and split equal the full-tensor op for random placements", "[ops][concat]") {
  std::mt19937 rng(23);
  struct CatCase {
    std::vector<Shape> shapes;
    int64_t dim;
  };
  const std::vector<CatCase> cat_cases = {{{{4, 3}, {2, 3}}, 0},
                                          {{{3, 5}, {3, 2}}, 1},
                                          {{{6, 4}, {6, 4}, {6, 4}}, -1},
                                          {{{1, 2}, {5, 2}, {2, 2}}, 0},
                                          {{{2, 3, 4}, {2, 1, 4}}, 1}};
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const CatCase& c : cat_cases) {
      std::vector<Tensor> fulls;
      for (size_t i = 0; i < c.shapes.size(); ++i) fulls.push_back(integer_valued(c.shapes[i], DType::F64, 3 + i));
      const int64_t nd = int64_t(c.shapes[0].size());
      for (int draw = 0; draw < 8; ++draw) {
        // Half the draws give every input the same layout (the rules that keep shards), half differ.
        std::vector<Placements> layouts;
        Placements shared = random_placements(rng, mesh, nd, true);
        for (size_t i = 0; i < fulls.size(); ++i) {
          layouts.push_back(draw % 2 == 0 ? shared : random_placements(rng, mesh, nd, true));
        }
        DTensor joined = check_op(
            mesh, fulls, layouts, [&](const auto& x) { return cat(x, c.dim); },
            [&](const auto& x) { return cat(x, c.dim); });
        check_local_block(joined);
      }
      bool same_shapes =
          std::all_of(c.shapes.begin(), c.shapes.end(), [&](const Shape& s) { return s == c.shapes[0]; });
      if (!same_shapes) continue;
      for (int64_t dim = -nd - 1; dim <= nd; ++dim) {
        std::vector<Placements> layouts(fulls.size(), random_placements(rng, mesh, nd, true));
        if (dim % 2 != 0) layouts[0] = random_placements(rng, mesh, nd, true);
        DTensor stacked = check_op(
            mesh, fulls, layouts, [&](const auto& x) { return stack(x, dim); },
            [&](const auto& x) {
              std::vector<Tensor> parts;
              for (const Tensor& t : x) parts.push_back(t.unsqueeze(dim));
              return cat(parts, dim);
            });
        check_local_block(stacked);
      }
    }
    for (const Shape& shape : std::vector<Shape>{{7, 5}, {8, 4}, {3, 2}, {2, 3, 5}}) {
      Tensor a = integer_valued(shape, DType::F32, 4);
      for (int draw = 0; draw < 6; ++draw) {
        Placements layout = random_placements(rng, mesh, int64_t(shape.size()), true);
        DTensor x = DTensor::distribute(a, mesh, layout);
        INFO(shape_str(shape) << " as " << placements_str(layout));
        for (int64_t dim = 0; dim < int64_t(shape.size()); ++dim) {
          const int64_t n = shape[size_t(dim)];
          for (int64_t chunks : {int64_t(1), int64_t(2), int64_t(3), int64_t(4), n + 2}) {
            INFO("chunk " << chunks << " dim " << dim);
            check_pieces(chunk(x, chunks, dim), chunk(a, chunks, dim));
          }
          const std::vector<int64_t> sizes = {n / 2, 0, n - n / 2};
          INFO("split " << shape_str(sizes) << " dim " << dim);
          check_pieces(split(x, sizes, dim - int64_t(shape.size())), split(a, sizes, dim));
        }
      }
    }
  }
}

TEST_CASE("view and concat output placements follow the rule table", "[ops][views][rules]") {
  DeviceMesh mesh = op_meshes()[0];
  const int64_t n = mesh.size();
  auto placed = [&](const Shape& s, Placement p) {
    return DTensor::distribute(integer_valued(s, DType::F64, 1), mesh, {p});
  };
  auto no_comm = [](const std::function<void()>& f) { return bytes_moved(f) == 0; };

  DTensor s0 = placed({12, 4}, Shard(0));
  DTensor z;
  CHECK(no_comm([&] { z = transpose(s0, 0, 1); }));
  CHECK(z.placements() == Placements{Shard(1)});
  DTensor s2 = placed({2, 3, 4}, Shard(2)), p = placed({4, 6}, Partial());
  CHECK(no_comm([&] { z = permute(s2, {2, 0, 1}); }));
  CHECK(z.placements() == Placements{Shard(0)});
  CHECK(no_comm([&] { z = transpose(p, 0, 1); }));
  CHECK(z.placements() == Placements{Partial()});

  // narrow keeps shards on other dims; a narrowed sharded dim is gathered.
  CHECK(no_comm([&] { z = narrow(s0, 1, 1, 2); }));
  CHECK(z.placements() == Placements{Shard(0)});
  // (1-D, so that no cheaper shard of another dim competes with R.)
  DTensor row = placed({12}, Shard(0));
  z = narrow(row, 0, 3, 5);
  CHECK(z.placements() == Placements{Replicate()});
  CHECK(equal(z.full_tensor(), row.full_tensor().narrow(0, 3, 5).contiguous()));

  // An even flatten of S(0) moves nothing and keeps S(0) (12 and 48 divide by 1..4).
  CHECK(no_comm([&] { z = flatten(s0); }));
  CHECK(z.placements() == Placements{Shard(0)});
  // Uneven rows must be gathered (7 rows over 2..4 ranks).
  if (n > 1) {
    DTensor uneven = placed({7, 4}, Shard(0));
    CHECK_FALSE(no_comm([&] { z = flatten(uneven); }));
    CHECK(equal(z.full_tensor(), uneven.full_tensor().flatten()));
  }
  // [12, 4] -> [3, 4, 4]: 12 rows split evenly, but the leading output dim 3 only over 1 or 3 ranks.
  CHECK(no_comm([&] { z = reshape(s0, {3, 4, 4}); }) == (3 % n == 0));
  CHECK((z.placements() == Placements{Shard(0)}) == (3 % n == 0));
  // S(1) does not lead its group in [12, 4] -> [48]: it moves (to R, or to S(0) if that is cheaper).
  z = reshape(placed({12, 4}, Shard(1)), {48});
  CHECK((z.placements() == Placements{Replicate()} || z.placements() == Placements{Shard(0)}));
  CHECK(equal(z.full_tensor(), integer_valued({12, 4}, DType::F64, 1).reshape({48})));
  // The target shape is part of the decision: the same input reshaped twice differently.
  CHECK(reshape(s0, {48}).shape() == Shape{48});
  CHECK(reshape(s0, {6, 8}).shape() == Shape{6, 8});
  CHECK(permute(placed({2, 2, 2}, Shard(0)), {1, 0, 2}).placements() == Placements{Shard(1)});
  CHECK(permute(placed({2, 2, 2}, Shard(0)), {1, 2, 0}).placements() == Placements{Shard(2)});
  CHECK(no_comm([&] { z = reshape(p, {2, 12}); }));
  CHECK(z.placements() == Placements{Partial()});

  // cat keeps a shard on another dim; the cat dim is gathered.
  DTensor a1 = placed({5, 4}, Shard(1)), b1 = placed({3, 4}, Shard(1));
  CHECK(no_comm([&] { z = cat({a1, b1}, 0); }));
  CHECK(z.placements() == Placements{Shard(1)});
  CHECK(cat({placed({4}, Shard(0)), placed({4}, Shard(0))}, 0).placements() == Placements{Replicate()});
  CHECK(no_comm([&] { z = cat({p, p}, 1); }));
  CHECK(z.placements() == Placements{Partial()});
  // stack shifts the shard dim at and after the new dim.
  DTensor c1 = placed({4, 6}, Shard(1)), d1 = placed({4, 6}, Shard(1));
  CHECK(no_comm([&] { z = stack({c1, d1}, 0); }));
  CHECK(z.placements() == Placements{Shard(2)});
  CHECK(stack({c1, d1}, 2).placements() == Placements{Shard(1)});
  // chunk / split pieces keep other shards and Partial; a split sharded dim is gathered.
  std::vector<DTensor> pieces;
  CHECK(no_comm([&] { pieces = chunk(c1, 3, 0); }));
  for (const DTensor& p : pieces) CHECK(p.placements() == Placements{Shard(1)});
  CHECK(no_comm([&] { pieces = split(p, {1, 3}, 0); }));
  for (const DTensor& p : pieces) CHECK(p.placements() == Placements{Partial()});
  for (const DTensor& p : chunk(row, 2, 0)) CHECK(p.placements() == Placements{Replicate()});
}

TEST_CASE("views map nested shards of one dim on the 2x2 mesh", "[ops][views][mesh2d]") {
  if (dtensor::world().size() != 4) SKIP_TEST("the 2x2 mesh needs 4 ranks");
  DeviceMesh mesh = DeviceMesh::from_world({2, 2});
  auto placed = [&](const Shape& s, Placements p) {
    return DTensor::distribute(integer_valued(s, DType::F64, 7), mesh, p);
  };
  DTensor z;
  // Rows split over both mesh dims (k = 4): [8, 3] -> [24] is even and maps through.
  DTensor even = placed({8, 3}, {Shard(0), Shard(0)});
  CHECK(bytes_moved([&] { z = flatten(even); }) == 0);
  CHECK(z.placements() == Placements{Shard(0), Shard(0)});
  CHECK(equal(z.full_tensor(), even.full_tensor().flatten()));
  check_local_block(z);
  // [6, 4]: 6 rows over 4 pieces (2, 2, 2, 0) are not pieces of 24: something moves.
  DTensor uneven = placed({6, 4}, {Shard(0), Shard(0)});
  CHECK(bytes_moved([&] { z = flatten(uneven); }) > 0);
  CHECK(equal(z.full_tensor(), uneven.full_tensor().flatten()));
  check_local_block(z);
  // 6 columns split over one mesh dim map into [4, 2, 3]; over both (k = 4) they cannot.
  DTensor columns = placed({4, 6}, {Replicate(), Shard(1)});
  CHECK(bytes_moved([&] { z = reshape(columns, {4, 2, 3}); }) == 0);
  CHECK(z.placements() == Placements{Replicate(), Shard(1)});
  z = reshape(placed({4, 6}, {Shard(1), Shard(1)}), {4, 2, 3});
  CHECK(z.placements() != Placements{Shard(1), Shard(1)});
  CHECK(equal(z.full_tensor(), integer_valued({4, 6}, DType::F64, 7).reshape({4, 2, 3})));
  // transpose and narrow per mesh dim.
  CHECK(transpose(placed({4, 6}, {Shard(0), Shard(1)}), 0, 1).placements() == Placements{Shard(1), Shard(0)});
  // The narrowed dim cannot stay split on mesh dim 1 (R, or S(0) nested if that is cheaper).
  z = narrow(placed({4, 6}, {Shard(0), Shard(1)}), 1, 1, 4);
  CHECK(z.placements()[0] == Shard(0));
  CHECK_FALSE(z.placements()[1].is_shard(1));
  CHECK(equal(z.full_tensor(), integer_valued({4, 6}, DType::F64, 7).narrow(1, 1, 4).contiguous()));
  CHECK(stack({placed({4, 6}, {Shard(0), Partial()}), placed({4, 6}, {Shard(0), Partial()})}, 1).placements() ==
        Placements{Shard(0), Partial()});
}

TEST_CASE("bad inputs to view and concat ops raise typed errors naming the op", "[ops][views][errors]") {
  DeviceMesh mesh = op_meshes()[0];
  auto placed = [&](const Shape& s, Placement p, DType dtype = DType::F32) {
    return DTensor::distribute(integer_valued(s, dtype, 1), mesh, {p});
  };
  DTensor a = placed({4, 6}, Shard(0));
  auto throws = [](const std::function<void()>& f, const char* op) { CHECK_THROWS_WITH(f(), Catch::Contains(op)); };
  CHECK_THROWS_AS(transpose(a, 0, 2), ShapeError);
  throws([&] { transpose(a, 0, 2); }, "transpose");
  CHECK_THROWS_AS(permute(a, {0}), ShapeError);
  CHECK_THROWS_AS(permute(a, {1, 1}), ShapeError);
  throws([&] { permute(a, {0, 0}); }, "permute");
  CHECK_THROWS_AS(narrow(a, 2, 0, 1), ShapeError);
  CHECK_THROWS_AS(narrow(a, 1, 4, 3), ShapeError);
  throws([&] { narrow(a, 1, 4, 3); }, "narrow");
  CHECK_THROWS_AS(reshape(a, {5, 5}), ShapeError);
  throws([&] { reshape(a, {5, 5}); }, "reshape");
  throws([&] { view(a, {7, -1}); }, "view");
  CHECK_THROWS_AS(reshape(a, {-1, -1}), ShapeError);
  CHECK_THROWS_AS(flatten(a, 1, 0), ShapeError);
  throws([&] { flatten(a, 0, 3); }, "flatten");
  CHECK_THROWS_AS(split(a, {2, 3}, 0), ShapeError);
  throws([&] { split(a, {2, 3}, 0); }, "split");
  CHECK_THROWS_AS(chunk(a, 0, 0), ValueError);
  throws([&] { chunk(a, 2, 5); }, "chunk");
  CHECK_THROWS_AS(cat({a, placed({4, 6, 1}, Shard(0))}, 0), ShapeError);
  throws([&] { cat({a, placed({4, 6, 1}, Shard(0))}, 0); }, "cat");
  CHECK_THROWS_AS(cat({a, placed({4, 5}, Shard(0))}, 0), ShapeError);
  throws([&] { cat({a, placed({4, 5}, Shard(0))}, 0); }, "cat");
  CHECK_THROWS_AS(cat({a, placed({4, 6}, Shard(0), DType::F64)}, 0), DTypeError);
  CHECK_THROWS_AS(cat(std::vector<DTensor>{}, 0), ValueError);
  CHECK_THROWS_AS(cat({a}, 2), ShapeError);
  CHECK_THROWS_AS(stack({a, placed({4, 5}, Shard(0))}, 0), ShapeError);
  throws([&] { stack({a, placed({4, 5}, Shard(0))}, 0); }, "stack");
  if (mesh.size() > 1) {
    NoImplicitRedistribute strict;
    CHECK_THROWS_AS(narrow(a, 0, 1, 2), ValueError);
    throws([&] { narrow(a, 0, 1, 2); }, "narrow");
    CHECK_NOTHROW(narrow(a, 1, 1, 2));
  }
  // Inputs on different meshes.
  if (dtensor::world().size() > 1) {
    std::vector<int> reversed;
    for (int r = dtensor::world().size(); r-- > 0;) reversed.push_back(r);
    DeviceMesh flipped = DeviceMesh::from_ranks(dtensor::world(), reversed, {int64_t(reversed.size())});
    DTensor elsewhere = DTensor::distribute(integer_valued({4, 6}, DType::F32, 1), flipped, {Replicate()});
    CHECK_THROWS_AS(cat({a, elsewhere}, 0), MeshError);
    throws([&] { cat({a, elsewhere}, 0); }, "cat");
    CHECK_THROWS_AS(stack({a, elsewhere}, 0), MeshError);
  }
}
