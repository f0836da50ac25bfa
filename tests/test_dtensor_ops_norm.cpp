// softmax, log_softmax, layer_norm, rms_norm and embedding on DTensors against the same op on
// the full tensors, over random placements on the 1-D world mesh and the 2x2 mesh; their rule
// tables; vocab-parallel embedding with uneven and empty vocab shards; typed errors.
#include "dtensor_ops_check.hpp"

#include "collectives/comm_recorder.hpp"

using namespace dtensor;
using namespace dtensor::testing;

namespace {

// All-Replicate but `first` on mesh dim 0.
Placements first_then_replicate(const DeviceMesh& mesh, Placement first) {
  Placements out(size_t(mesh.ndim()), Replicate());
  out[0] = first;
  return out;
}

Tensor ids_tensor(const Shape& shape, int64_t vocab, DType dtype, uint64_t seed) {
  return integer_valued(shape, DType::I64, seed, 0, vocab).to(dtype);
}

}  // namespace

TEST_CASE("softmax and log_softmax equal the full op for random placements", "[ops][norm]") {
  std::mt19937 rng(31);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const Shape& shape : {Shape{8, 4}, Shape{7, 5}, Shape{3, 2}, Shape{2, 5, 3}}) {
      for (DType dtype : {DType::F64, DType::F32}) {
        Tensor x = integer_valued(shape, dtype, 5);
        const double tol = dtype == DType::F64 ? 1e-12 : 1e-5;
        for (int64_t dim = -1; dim < int64_t(shape.size()); ++dim) {
          std::vector<Placements> layout = {random_placements(rng, mesh, int64_t(shape.size()), true)};
          check_op(
              mesh, {x}, layout, [&](const auto& t) { return softmax(t[0], dim); },
              [&](const auto& t) { return softmax(t[0], dim); }, tol);
          check_op(
              mesh, {x}, layout, [&](const auto& t) { return log_softmax(t[0], dim); },
              [&](const auto& t) { return log_softmax(t[0], dim); }, tol);
        }
      }
    }
  }
}

TEST_CASE("layer_norm and rms_norm equal the full op for random placements", "[ops][norm]") {
  std::mt19937 rng(32);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const Shape& shape : {Shape{8, 4}, Shape{7, 5}, Shape{3, 2}, Shape{2, 5, 3}, Shape{6}}) {
      for (DType dtype : {DType::F64, DType::F32}) {
        const int64_t h = shape.back();
        Tensor x = integer_valued(shape, dtype, 6), w = integer_valued({h}, dtype, 7),
               b = integer_valued({h}, dtype, 8);
        const double tol = dtype == DType::F64 ? 1e-12 : 1e-5;
        for (int draw = 0; draw < 4; ++draw) {
          std::vector<Placements> layouts = {random_placements(rng, mesh, int64_t(shape.size()), true),
                                             random_placements(rng, mesh, 1, true),
                                             random_placements(rng, mesh, 1, true)};
          check_op(
              mesh, {x, w, b}, layouts, [](const auto& t) { return layer_norm(t[0], t[1], t[2], 1e-5); },
              [](const auto& t) { return layer_norm(t[0], t[1], t[2], 1e-5); }, tol);
          check_op(
              mesh, {x, w}, {layouts[0], layouts[1]}, [](const auto& t) { return rms_norm(t[0], t[1], 1e-6); },
              [](const auto& t) { return rms_norm(t[0], t[1], 1e-6); }, tol);
        }
      }
    }
  }
}

TEST_CASE("embedding equals the full lookup for random placements", "[ops][embedding]") {
  std::mt19937 rng(33);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (int64_t vocab : {7, 3, 8}) {
      for (const Shape& ids_shape : {Shape{5}, Shape{2, 3}, Shape{}, Shape{4, 1}}) {
        Tensor weight = integer_valued({vocab, 5}, DType::F32, 9);
        for (DType id_type : {DType::I64, DType::I32}) {
          Tensor ids = ids_tensor(ids_shape, vocab, id_type, 10);
          for (int draw = 0; draw < 3; ++draw) {
            std::vector<Placements> layouts = {random_placements(rng, mesh, 2, true),
                                               random_placements(rng, mesh, int64_t(ids_shape.size()), false)};
            check_op(
                mesh, {weight, ids}, layouts, [](const auto& t) { return embedding(t[0], t[1]); },
                [](const auto& t) { return embedding(t[0], t[1]); });
          }
        }
      }
    }
  }
}

TEST_CASE("vocab-parallel embedding is exact for uneven and empty vocab shards", "[ops][embedding]") {
  for (const DeviceMesh& mesh : op_meshes()) {
    // V=7 over 2, 3, 4 ranks is uneven; V=3 over 4 ranks leaves a rank without rows; V=1 more so.
    for (int64_t vocab : {7, 3, 1}) {
      Tensor weight = integer_valued({vocab, 4}, DType::F64, 11);
      Tensor ids = ids_tensor({3, 5}, vocab, DType::I64, 12);
      DTensor w = DTensor::distribute(weight, mesh, Placements(size_t(mesh.ndim()), Shard(0)));
      DTensor i = DTensor::distribute(ids, mesh, Placements(size_t(mesh.ndim()), Replicate()));
      DTensor out;
      {
        CommRecorder recorder;
        out = embedding(w, i);
        CHECK(recorder.calls().empty());
      }
      INFO("vocab " << vocab << " on " << mesh.to_string());
      if (mesh.size() > 1) CHECK(out.placements() == Placements(size_t(mesh.ndim()), Partial()));
      CHECK(equal(out.full_tensor(), embedding(weight, ids)));
      if (mesh.ndim() == 2) {
        // Vocab split on one mesh dim, hidden on the other.
        DTensor wh = DTensor::distribute(weight, mesh, {Shard(0), Shard(1)});
        DTensor o2 = embedding(wh, i);
        CHECK(o2.placements() == Placements{Partial(), Shard(2)});
        CHECK(equal(o2.full_tensor(), embedding(weight, ids)));
      }
    }
  }
}

TEST_CASE("softmax, norm and embedding placements follow the rule table", "[ops][norm][rules]") {
  for (const DeviceMesh& mesh : op_meshes()) {
    if (mesh.size() == 1) continue;  // one rank: every layout costs nothing to reach
    Tensor x = integer_valued({8, 6}, DType::F64, 1), w = integer_valued({6}, DType::F64, 2);
    Tensor table = integer_valued({10, 6}, DType::F64, 3), ids = ids_tensor({8, 3}, 10, DType::I64, 4);
    auto placed = [&](const Tensor& t, Placement p) {
      return DTensor::distribute(t, mesh, first_then_replicate(mesh, p));
    };
    auto expect = [&](Placement p) { return first_then_replicate(mesh, p); };
    struct Row {
      const char* what;
      std::vector<DTensor> inputs;
      std::function<DTensor(const std::vector<DTensor>&)> op;
      Placement out;
    };
    const DTensor wr = placed(w, Replicate()), ids_r = placed(ids, Replicate());
    const std::vector<Row> rows = {
        {"softmax S(0) over 1", {placed(x, Shard(0))}, [](const auto& t) { return softmax(t[0], 1); }, Shard(0)},
        {"log_softmax S(1) over 0",
         {placed(x, Shard(1))},
         [](const auto& t) { return log_softmax(t[0], 0); },
         Shard(1)},
        {"layer_norm S(0)",
         {placed(x, Shard(0)), wr},
         [](const auto& t) { return layer_norm(t[0], t[1], t[1], 1e-5); },
         Shard(0)},
        {"rms_norm S(0)",
         {placed(x, Shard(0)), wr},
         [](const auto& t) { return rms_norm(t[0], t[1], 1e-5); },
         Shard(0)},
        {"embedding R, R",
         {placed(table, Replicate()), ids_r},
         [](const auto& t) { return embedding(t[0], t[1]); },
         Replicate()},
        {"embedding S(1), R",
         {placed(table, Shard(1)), ids_r},
         [](const auto& t) { return embedding(t[0], t[1]); },
         Shard(2)},
        {"embedding S(0), R",
         {placed(table, Shard(0)), ids_r},
         [](const auto& t) { return embedding(t[0], t[1]); },
         Partial()},
        {"embedding P(sum), R",
         {placed(table, Partial()), ids_r},
         [](const auto& t) { return embedding(t[0], t[1]); },
         Partial()},
    };
    for (const Row& r : rows) {
      INFO(r.what << " on " << mesh.to_string());
      DTensor z;
      {
        CommRecorder recorder;
        z = r.op(r.inputs);
        CHECK(recorder.calls().empty());
      }
      CHECK(z.placements() == expect(r.out));
    }
    // The normalised dim is gathered first (or the split moved to another dim); Partial inputs
    // are reduced first.
    const DTensor gathered = softmax(placed(x, Shard(1)), 1);
    for (const Placement& p : gathered.placements()) CHECK_FALSE(p.is_shard(1));
    CHECK_FALSE(rms_norm(placed(x, Partial()), placed(w, Replicate()), 1e-5).placements()[0].is_partial());
    // Sharded ids keep their split; the ranks agree on the ids' validity with one tiny
    // all-reduce per sharded mesh dim and nothing else.
    DTensor replicated_table = placed(table, Replicate()), sharded_ids = placed(ids, Shard(1));
    CommRecorder recorder;
    DTensor looked_up = embedding(replicated_table, sharded_ids);
    CHECK(recorder.calls().size() == 1);
    CHECK(recorder.count(CollectiveKind::AllReduce) == 1);
    CHECK(recorder.bytes(CollectiveKind::AllReduce) == 16);
    CHECK(looked_up.placements() == expect(Shard(1)));
  }
}

TEST_CASE("bad softmax, norm and embedding arguments raise typed errors naming the op", "[ops][norm][errors]") {
  for (const DeviceMesh& mesh : op_meshes()) {
    auto placed = [&](const Tensor& t, Placement p) {
      return DTensor::distribute(t, mesh, first_then_replicate(mesh, p));
    };
    DTensor x = placed(integer_valued({5, 4}, DType::F32, 1), Shard(0));
    DTensor w4 = placed(integer_valued({4}, DType::F32, 2), Replicate());
    DTensor w3 = placed(integer_valued({3}, DType::F32, 2), Replicate());
    CHECK_THROWS_AS(softmax(x, 2), ShapeError);
    CHECK_THROWS_WITH(softmax(x, 2), Catch::Contains("softmax"));
    CHECK_THROWS_WITH(log_softmax(x, -3), Catch::Contains("log_softmax"));
    CHECK_THROWS_AS(layer_norm(x, w3, w4, 1e-5), ShapeError);
    CHECK_THROWS_WITH(layer_norm(x, w4, w3, 1e-5), Catch::Contains("layer_norm") && Catch::Contains("bias"));
    CHECK_THROWS_AS(rms_norm(x, w3, 1e-5), ShapeError);
    CHECK_THROWS_WITH(rms_norm(x, w3, 1e-5), Catch::Contains("rms_norm") && Catch::Contains("weight"));
    DTensor xi = placed(integer_valued({5, 4}, DType::I64, 1), Shard(0));
    CHECK_THROWS_AS(softmax(xi, 1), DTypeError);

    Tensor table = integer_valued({7, 3}, DType::F32, 3);
    DTensor wt = placed(table, Shard(0));
    CHECK_THROWS_AS(embedding(placed(integer_valued({7}, DType::F32, 3), Replicate()),
                              placed(ids_tensor({4}, 7, DType::I64, 1), Replicate())),
                    ShapeError);
    CHECK_THROWS_AS(embedding(wt, placed(integer_valued({4}, DType::F32, 1), Replicate())), DTypeError);
    // One bad id, held by one rank only when the ids are sharded: every rank throws.
    for (int64_t bad : {7, -1, 100}) {
      std::vector<int64_t> values = {0, 1, 2, 3, 4, 5, 6, 6, 5, 4, 3};
      values.back() = bad;
      Tensor ids = Tensor::from_vector(values, {int64_t(values.size())});
      for (Placement p : {Shard(0), Replicate()}) {
        INFO("bad id " << bad << " ids " << p.to_string());
        CHECK_THROWS_AS(embedding(wt, placed(ids, p)), ValueError);
        CHECK_THROWS_WITH(embedding(placed(table, Replicate()), placed(ids, p)),
                          Catch::Contains("embedding") && Catch::Contains(std::to_string(bad)));
      }
    }
  }
}
