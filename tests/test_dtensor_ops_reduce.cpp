// Reductions on DTensors (sum, mean, amax, amin, argmax) against the same reduction of the full
// tensor, over random placements (P(sum), and P(max)/P(min) for amax/amin) on the 1-D world mesh
// and the 2x2 mesh; the rule table's output placements without communication; PartialResult;
// typed errors naming the op.
#include "dtensor_ops_check.hpp"

#include "collectives/comm_recorder.hpp"

using namespace dtensor;
using namespace dtensor::testing;

namespace {

using DReduce = DTensor (*)(const DTensor&, const std::vector<int64_t>&, bool, PartialResult);
using Reduce = Tensor (*)(const Tensor&, const std::vector<int64_t>&, bool);

struct ReduceCase {
  const char* name;
  DReduce op;
  Reduce reference;
  ReduceOp partial;  // the Partial input the op keeps partial (besides P(sum) for sum/mean)
};

const std::vector<ReduceCase>& reduce_cases() {
  static const std::vector<ReduceCase> cases = {{"sum", dtensor::sum, dtensor::sum, ReduceOp::Avg},
                                                {"mean", dtensor::mean, dtensor::mean, ReduceOp::Avg},
                                                {"amax", dtensor::amax, dtensor::amax, ReduceOp::Max},
                                                {"amin", dtensor::amin, dtensor::amin, ReduceOp::Min}};
  return cases;
}

// Shapes that divide, do not divide and are smaller than the mesh (empty shards), with dims to
// reduce over (empty: all), negative and unordered ones included.
struct ShapeDims {
  Shape shape;
  std::vector<std::vector<int64_t>> dims;
};
const std::vector<ShapeDims>& shape_dims() {
  static const std::vector<ShapeDims> cases = {
      {{8, 4}, {{}, {0}, {1}, {1, 0}}},
      {{7, 5}, {{0}, {-1}, {0, 1}}},
      {{3, 2}, {{0}, {1}, {}}},
      {{2, 5, 3}, {{1}, {0, 2}, {-1, 1}}},
  };
  return cases;
}

// Random placements that may hold P(sum) or the given extra Partial.
Placements random_layout(std::mt19937& rng, const DeviceMesh& mesh, int64_t ndim, ReduceOp extra) {
  std::vector<Placement> choices = layout_choices(ndim, true);
  choices.push_back(Partial(extra));
  Placements out;
  for (int64_t m = 0; m < mesh.ndim(); ++m) out.push_back(choices[rng() % choices.size()]);
  return out;
}

}  // namespace

TEST_CASE("sum, mean, amax and amin equal the full reduction for random placements", "[ops][reduce]") {
  std::mt19937 rng(21);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const ShapeDims& sd : shape_dims()) {
      for (const ReduceCase& c : reduce_cases()) {
        // mean takes floating dtypes only; integers sum and compare exactly too.
        for (DType dtype : {DType::F64, DType::F32, DType::I64}) {
          if (dtype == DType::I64 && std::string_view(c.name) == "mean") continue;
          Tensor x = integer_valued(sd.shape, dtype, 3);
          // mean over a sharded dim is a sum of (local sum / count): exact up to the division.
          const double tol = std::string_view(c.name) == "mean" ? (dtype == DType::F64 ? 1e-12 : 1e-5) : 0;
          for (const auto& dims : sd.dims) {
            for (bool keepdim : {false, true}) {
              // (P(avg) holds floating values only.)
              const ReduceOp extra = dtype == DType::I64 && c.partial == ReduceOp::Avg ? ReduceOp::Sum : c.partial;
              std::vector<Placements> layout = {random_layout(rng, mesh, int64_t(sd.shape.size()), extra)};
              INFO(c.name << " " << shape_str(sd.shape) << " " << dtype_name(dtype) << " dims " << dims.size()
                          << " keepdim " << keepdim);
              for (PartialResult mode : {PartialResult::Keep, PartialResult::Reduce}) {
                DTensor out = check_op(
                    mesh, {x}, layout, [&](const auto& t) { return c.op(t[0], dims, keepdim, mode); },
                    [&](const auto& t) { return c.reference(t[0], dims, keepdim); }, tol);
                if (mode == PartialResult::Reduce) {
                  for (const Placement& p : out.placements()) CHECK_FALSE(p.is_partial());
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("amax and amin of P(max) and P(min) inputs whose ranks hold different subsets", "[ops][reduce]") {
  for (const DeviceMesh& mesh : op_meshes()) {
    if (mesh.ndim() != 1) continue;
    const int64_t k = mesh.size(), me = mesh.coordinate()[0];
    for (const Shape& shape : {Shape{6, 4}, Shape{5, 3}}) {
      Tensor x = integer_valued(shape, DType::F64, 7);
      // Rank r holds element i exactly when i % k == r, a smaller (larger) value elsewhere.
      std::vector<uint8_t> mine(size_t(shape_numel(shape)));
      for (size_t i = 0; i < mine.size(); ++i) mine[i] = int64_t(i) % k == me ? 1 : 0;
      Tensor mask = Tensor::from_vector(mine, shape);
      DTensor as_max = DTensor::from_local(where(mask, x, add(x, -3.0)), mesh, {Partial(ReduceOp::Max)}, shape);
      DTensor as_min = DTensor::from_local(where(mask, x, add(x, 3.0)), mesh, {Partial(ReduceOp::Min)}, shape);
      for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{}, {0}, {1}}) {
        DTensor m = amax(as_max, dims);
        CHECK(m.placements() == Placements{Partial(ReduceOp::Max)});
        CHECK(equal(m.full_tensor(), amax(x, dims)));
        DTensor n = amin(as_min, dims);
        CHECK(n.placements() == Placements{Partial(ReduceOp::Min)});
        CHECK(equal(n.full_tensor(), amin(x, dims)));
        // The other extreme of a partial max is not partial: it is reduced first.
        CHECK(equal(amin(as_max, dims).full_tensor(), amin(x, dims)));
        CHECK(equal(sum(as_max, dims).full_tensor(), sum(x, dims)));
      }
    }
  }
}

TEST_CASE("argmax equals the full argmax for random placements", "[ops][reduce]") {
  std::mt19937 rng(22);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const Shape& shape : {Shape{8, 4}, Shape{7, 5}, Shape{3, 2}, Shape{2, 5, 3}}) {
      // Many ties: the first maximum must win whatever the sharding of the other dims.
      Tensor x = integer_valued(shape, DType::F32, 4, -2, 3);
      for (int64_t dim = -1; dim < int64_t(shape.size()); ++dim) {
        for (bool keepdim : {false, true}) {
          std::vector<Placements> layout = {random_placements(rng, mesh, int64_t(shape.size()), true)};
          check_op(
              mesh, {x}, layout, [&](const auto& t) { return argmax(t[0], dim, keepdim); },
              [&](const auto& t) { return argmax(t[0], dim, keepdim); });
        }
      }
    }
  }
}

TEST_CASE("reduction output placements follow the rule table without communication", "[ops][reduce][rules]") {
  for (const DeviceMesh& mesh : op_meshes()) {
    // On one rank every layout is the same data and moving it costs nothing: the rule may differ.
    if (mesh.size() == 1) continue;
    Tensor x = integer_valued({8, 6}, DType::F64, 1);
    const Placements rest(size_t(mesh.ndim() - 1), Replicate());
    auto placed = [&](Placement p) {
      Placements all = {p};
      all.insert(all.end(), rest.begin(), rest.end());
      return DTensor::distribute(x, mesh, all);
    };
    auto expect = [&](Placement p) {
      Placements all = {p};
      all.insert(all.end(), rest.begin(), rest.end());
      return all;
    };
    struct Row {
      const char* what;
      Placement in;
      std::function<DTensor(const DTensor&)> op;
      Placement out;
    };
    const Placement pmax = Partial(ReduceOp::Max), pmin = Partial(ReduceOp::Min);
    const std::vector<Row> rows = {
        {"sum S(0) over 0", Shard(0), [](const DTensor& t) { return sum(t, {0}); }, Partial()},
        {"sum S(0) over 1", Shard(0), [](const DTensor& t) { return sum(t, {1}); }, Shard(0)},
        {"sum S(1) over 0", Shard(1), [](const DTensor& t) { return sum(t, {0}); }, Shard(0)},
        {"sum S(1) over 0 keepdim", Shard(1), [](const DTensor& t) { return sum(t, {0}, true); }, Shard(1)},
        {"sum over all", Shard(1), [](const DTensor& t) { return sum(t); }, Partial()},
        {"mean S(0) over 0", Shard(0), [](const DTensor& t) { return mean(t, {0}); }, Partial()},
        {"mean P(avg)", Partial(ReduceOp::Avg), [](const DTensor& t) { return mean(t, {1}); }, Partial(ReduceOp::Avg)},
        {"sum P(sum)", Partial(), [](const DTensor& t) { return sum(t, {1}); }, Partial()},
        {"amax S(0) over 0", Shard(0), [](const DTensor& t) { return amax(t, {0}); }, pmax},
        {"amin S(1) over -1", Shard(1), [](const DTensor& t) { return amin(t, {-1}); }, pmin},
        {"amax P(max)", pmax, [](const DTensor& t) { return amax(t, {0}); }, pmax},
        {"amin P(min)", pmin, [](const DTensor& t) { return amin(t, {}); }, pmin},
        {"argmax S(1) over 0", Shard(1), [](const DTensor& t) { return argmax(t, 0); }, Shard(0)},
        {"argmax R", Replicate(), [](const DTensor& t) { return argmax(t, 1, true); }, Replicate()},
    };
    for (const Row& r : rows) {
      INFO(r.what << " on " << mesh.to_string());
      const DTensor input = placed(r.in);
      DTensor z;
      {
        CommRecorder recorder;
        z = r.op(input);
        CHECK(recorder.calls().empty());
      }
      CHECK(z.placements() == expect(r.out));
    }
    // Reduce completes the partial result: an all-reduce, and Replicate.
    const DTensor rows_split = placed(Shard(0));
    CommRecorder recorder;
    DTensor done = sum(rows_split, {0}, false, PartialResult::Reduce);
    CHECK(recorder.count(CollectiveKind::AllReduce) == 1);
    CHECK(done.placements() == expect(Replicate()));
    CHECK(equal(done.to_local(), sum(x, {0})));
    CHECK(amax(placed(Shard(0)), {0}, false, PartialResult::Reduce).placements() == expect(Replicate()));
  }
}

TEST_CASE("bad reduction arguments raise typed errors naming the op", "[ops][reduce][errors]") {
  for (const DeviceMesh& mesh : op_meshes()) {
    Placements layout(size_t(mesh.ndim()), Replicate());
    layout[0] = Shard(0);
    DTensor x = DTensor::distribute(integer_valued({5, 3}, DType::F32, 1), mesh, layout);
    CHECK_THROWS_AS(sum(x, {2}), ShapeError);
    CHECK_THROWS_WITH(sum(x, {2}), Catch::Contains("sum"));
    CHECK_THROWS_WITH(mean(x, {-3}), Catch::Contains("mean"));
    CHECK_THROWS_AS(amax(x, {0, 0}), ShapeError);
    CHECK_THROWS_WITH(amax(x, {0, 0}), Catch::Contains("amax"));
    CHECK_THROWS_AS(amin(x, {1, -1}), ShapeError);
    CHECK_THROWS_WITH(amin(x, {1, -1}), Catch::Contains("amin"));
    CHECK_THROWS_AS(argmax(x, 2), ShapeError);
    CHECK_THROWS_WITH(argmax(x, -3), Catch::Contains("argmax"));
    // Integer mean is refused as by the local op; a max over an empty dim has no value.
    DTensor ints = DTensor::distribute(integer_valued({5, 3}, DType::I64, 1), mesh, layout);
    CHECK_THROWS_AS(mean(ints, {0}), DTypeError);
    CHECK_THROWS_WITH(mean(ints, {0}), Catch::Contains("mean"));
    DTensor empty = DTensor::distribute(Tensor::zeros({0, 3}, DType::F32), mesh, layout);
    CHECK_THROWS_AS(amax(empty, {0}), ShapeError);
    CHECK_THROWS_AS(argmax(empty, 0), ShapeError);
    // The error is not cached as a decision: the same call throws again, a valid one still runs.
    CHECK_THROWS_AS(sum(x, {2}), ShapeError);
    CHECK(equal(sum(x, {1}).full_tensor(), sum(x.full_tensor(), {1})));
    CHECK(equal(sum(empty, {0}).full_tensor(), Tensor::zeros({3}, DType::F32)));
  }
}
