// The DTensor embedding's weight gradient and the DTensor cross-entropy against the local autograd
// on the full tensors in one process (itself gradchecked in the autograd_loss suite), under every
// or random placements (uneven vocab and rows, P(sum)), with gradients in the leaves' placements;
// tied embeddings; the collectives each costs (CommRecorder); a bad label raised on every rank.
#include "autograd_dtensor_check.hpp"

#include "collectives/comm_recorder.hpp"

#include <algorithm>
#include <cmath>

using namespace dtensor;
using namespace dtensor::testing;
using Catch::Contains;

namespace {

constexpr int64_t kIgnore = -100;

// Labels in [0, vocab) with every third one ignored.
Tensor random_labels(const Shape& shape, int64_t vocab, uint64_t seed) {
  Tensor labels = integer_valued(shape, DType::I64, seed, 0, vocab);
  std::vector<int64_t> values = labels.to_vector<int64_t>();
  for (size_t i = 1; i < values.size(); i += 3) values[i] = kIgnore;
  return Tensor::from_vector(values, shape);
}

// The loss and its gradient under `layout` against the local op on the full logits; the gradient
// must come back in the logits' placements.
void check_cross_entropy(const DeviceMesh& mesh, const Tensor& full, const Tensor& labels, const Placements& layout,
                         double tol = 1e-12) {
  INFO("mesh " << mesh.to_string() << " logits " << placements_str(layout) << " " << shape_str(full.shape()));
  DTensor logits = DTensor::distribute(full, mesh, layout);
  ag::set_requires_grad(logits);
  DTensor loss = ag::cross_entropy(logits, labels);
  CHECK(loss.shape() == Shape{});
  CHECK(loss.placements() == Placements(size_t(mesh.ndim()), Replicate()));
  Tensor leaf = full.clone();
  ag::set_requires_grad(leaf);
  Tensor expected = ag::cross_entropy(leaf, labels);
  CHECK(allclose(loss.to_local(), expected, tol, tol));
  ag::backward(loss);
  ag::backward(expected);
  DTensor g = ag::grad(logits);
  REQUIRE(g.to_local().defined());
  CHECK(g.placements() == logits.placements());
  CHECK(allclose(g.full_tensor(), ag::grad(leaf), tol, tol));
}

// Every placement of logits of `ndim` dims on a mesh dim, Partial included.
std::vector<Placements> all_layouts(const DeviceMesh& mesh, int64_t ndim, std::mt19937& rng, int draws) {
  if (mesh.ndim() > 1) {
    std::vector<Placements> layouts;
    for (int draw = 0; draw < draws; ++draw) layouts.push_back(random_placements(rng, mesh, ndim, true));
    layouts.push_back({Shard(0), Shard(ndim - 1)});  // rows over dp, vocab over tp
    return layouts;
  }
  std::vector<Placements> layouts;
  for (const Placement& p : layout_choices(ndim, true)) layouts.push_back({p});
  return layouts;
}

int64_t calls_on(const CommRecorder& recorder, const Communicator& group) {
  return std::count_if(recorder.calls().begin(), recorder.calls().end(),
                       [&](const CommRecorder::Call& call) { return call.group == group.id(); });
}

}  // namespace

TEST_CASE("cross_entropy of DTensor logits equals the full computation's, gradient in their placements",
          "[autograd][dtensor][loss]") {
  std::mt19937 rng(200);
  // Vocab 11 and 9 split unevenly over 2, 3 and 4 ranks; 7 rows likewise.
  const std::vector<Shape> shapes = {{7, 11}, {2, 3, 9}, {3, 2}};
  uint64_t seed = 201;
  for (const Shape& shape : shapes) {
    Tensor full = f64(shape, seed);
    Tensor labels = random_labels(Shape(shape.begin(), shape.end() - 1), shape.back(), seed + 1);
    seed += 2;
    for (const DeviceMesh& mesh : op_meshes()) {
      for (const Placements& layout : all_layouts(mesh, int64_t(shape.size()), rng, 8)) {
        check_cross_entropy(mesh, full, labels, layout);
      }
    }
  }
}

TEST_CASE("cross_entropy of a Partial seed gradient and 16-bit logits", "[autograd][dtensor][loss]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  Tensor full = f64({6, 10}, 210);
  Tensor labels = random_labels({6}, 10, 211);
  SECTION("a P(sum) seed is reduced once, then the backward is local") {
    DTensor logits = DTensor::distribute(full, mesh, {Shard(1)});
    ag::set_requires_grad(logits);
    DTensor loss = ag::cross_entropy(logits, labels);
    Tensor leaf = full.clone();
    ag::set_requires_grad(leaf);
    ag::backward(ag::mul(ag::cross_entropy(leaf, labels), 3.0));
    DTensor seed = DTensor::distribute(Tensor::full({}, 3.0, DType::F64), mesh, {Partial()});
    ag::backward(loss, seed);
    CHECK(allclose(ag::grad(logits).full_tensor(), ag::grad(leaf), 1e-12, 1e-12));
  }
  SECTION("bf16 logits: the loss in bf16, computed in f32") {
    Tensor low = full.to(DType::BF16);
    DTensor logits = DTensor::distribute(low, mesh, {Shard(1)});
    ag::set_requires_grad(logits);
    DTensor loss = ag::cross_entropy(logits, labels);
    CHECK(loss.dtype() == DType::BF16);
    Tensor expected = ag::cross_entropy(low.to(DType::F64), labels);
    CHECK(std::abs(loss.to_local().item<double>() - expected.item<double>()) < 2e-2);
    ag::backward(loss);
    CHECK(ag::grad(logits).dtype() == DType::BF16);
  }
}

TEST_CASE("cross_entropy with every token ignored is NaN on every rank", "[autograd][dtensor][loss]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  DTensor logits = DTensor::distribute(f64({3, 5}, 220), mesh, {Shard(1)});
  ag::set_requires_grad(logits);
  DTensor loss = ag::cross_entropy(logits, Tensor::full({3}, double(kIgnore), DType::I64));
  CHECK(std::isnan(loss.to_local().item<double>()));
  ag::backward(loss);
  CHECK(equal(ag::grad(logits).full_tensor(), Tensor::zeros({3, 5}, DType::F64)));
}

TEST_CASE("vocab-parallel cross_entropy: three all-reduces forward over the vocab dim, none backward",
          "[autograd][dtensor][loss][collectives]") {
  Tensor full = f64({5, 11}, 230);
  Tensor labels = random_labels({5}, 11, 231);
  SECTION("1-D mesh, vocab sharded") {
    DeviceMesh mesh = DeviceMesh::from_world({world().size()});
    DTensor logits = DTensor::distribute(full, mesh, {Shard(-1)});
    ag::set_requires_grad(logits);
    CommRecorder forward;
    DTensor loss = ag::cross_entropy(logits, labels);
    INFO(forward.summary());
    CHECK(forward.calls().size() == expected_count(mesh, 3));
    CHECK(forward.count(CollectiveKind::AllReduce) == expected_count(mesh, 3));
    CommRecorder backward;
    ag::backward(loss);
    CHECK(backward.calls().empty());
  }
  if (world().size() == 4) {
    SECTION("2x2 mesh, rows over dp and vocab over tp: three on tp, one on dp") {
      DeviceMesh mesh = DeviceMesh::from_world({2, 2});
      DTensor logits = DTensor::distribute(full, mesh, {Shard(0), Shard(1)});
      ag::set_requires_grad(logits);
      CommRecorder forward;
      DTensor loss = ag::cross_entropy(logits, labels);
      INFO(forward.summary());
      CHECK(forward.calls().size() == 4);
      CHECK(calls_on(forward, mesh.comm(1)) == 3);
      CHECK(calls_on(forward, mesh.comm(0)) == 1);
      CommRecorder backward;
      ag::backward(loss);
      CHECK(backward.calls().empty());
    }
  }
}

TEST_CASE("cross_entropy raises a bad label on every rank, naming it", "[autograd][dtensor][loss][errors]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  DTensor logits = DTensor::distribute(f64({4, 7}, 240), mesh, {Shard(1)});
  Tensor labels = Tensor::from_vector<int64_t>({0, 6, 7, 1}, {4});
  CHECK_THROWS_AS(ag::cross_entropy(logits, labels), ValueError);
  CHECK_THROWS_WITH(ag::cross_entropy(logits, labels), Contains("labels at flat position 2 is 7"));
  CHECK_THROWS_AS(ag::cross_entropy(logits, Tensor::from_vector<int64_t>({0, 1}, {2})), ShapeError);
  // The collectives still line up: a good call after the errors completes on every rank.
  CHECK(ag::cross_entropy(logits, Tensor::from_vector<int64_t>({0, 6, 5, 1}, {4})).to_local().defined());
}

TEST_CASE("embedding's weight gradient in the weight's placements equals the full computation's",
          "[autograd][dtensor][embedding]") {
  std::mt19937 rng(250);
  Tensor weight = f64({7, 5}, 251);  // vocab 7 and hidden 5: uneven over 2, 3 and 4 ranks
  Tensor ids = integer_valued({3, 4}, DType::I64, 252, 0, 7);
  const std::vector<Placement> weight_choices = {Replicate(), Shard(0), Shard(1), Partial()};
  const std::vector<Placement> ids_choices = {Replicate(), Shard(0), Shard(1)};
  auto dfn = [](const auto& x) { return ag::embedding(x[0], x[1]); };
  auto lfn = [](const auto& x) { return ag::embedding(x[0], x[1]); };
  require_gradchecked(lfn, {weight, ids});
  for (const DeviceMesh& mesh : op_meshes()) {
    for (int draw = 0; draw < 12; ++draw) {
      Placements w, i;
      for (int64_t m = 0; m < mesh.ndim(); ++m) {
        // Every (weight, ids) pair on a 1-D mesh; random pairs on the 2x2 one.
        w.push_back(weight_choices[mesh.ndim() == 1 ? size_t(draw) / 3 : rng() % 4]);
        i.push_back(ids_choices[mesh.ndim() == 1 ? size_t(draw) % 3 : rng() % 3]);
      }
      check_gradients(mesh, {weight, ids}, {w, i}, dfn, lfn, rng);
    }
  }
}

TEST_CASE("embedding's backward scatters locally: no gather of the weight", "[autograd][dtensor][embedding]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  Tensor ids_full = integer_valued({4, 3}, DType::I64, 260, 0, 9);
  struct Case {
    Placement weight, ids;
    uint64_t all_reduces;  // in backward: only a P(sum) gradient reduced at a replicated leaf
  };
  const std::vector<Case> cases = {{Shard(0), Replicate(), 0},
                                   {Shard(1), Replicate(), 0},
                                   {Replicate(), Shard(0), 1},
                                   {Replicate(), Replicate(), 0}};
  for (const Case& c : cases) {
    INFO("weight " << c.weight.to_string() << " ids " << c.ids.to_string());
    DTensor weight = DTensor::distribute(f64({9, 6}, 261), mesh, {c.weight});
    ag::set_requires_grad(weight);
    DTensor out = ag::embedding(weight, DTensor::distribute(ids_full, mesh, {c.ids}));
    DTensor loss = ag::sum(out);
    CommRecorder recorder;
    ag::backward(loss);
    INFO(recorder.summary());
    CHECK(recorder.calls().size() == expected_count(mesh, c.all_reduces));
    CHECK(recorder.count(CollectiveKind::AllReduce) == expected_count(mesh, c.all_reduces));
    CHECK(ag::grad(weight).placements() == Placements{c.weight});
  }
}

TEST_CASE("tied embeddings: the lookup's and the head's gradients add into one", "[autograd][dtensor][embedding]") {
  Tensor weight_full = f64({11, 6}, 270);
  Tensor ids_full = integer_valued({8}, DType::I64, 271, 0, 11);
  Tensor labels = random_labels({8}, 11, 272);
  auto local_loss = [&](const std::vector<Tensor>& x) {
    return ag::cross_entropy(ag::linear(ag::embedding(x[0], ids_full), x[0]), labels);
  };
  require_gradchecked(local_loss, {weight_full});
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const Placement& p : std::vector<Placement>{Shard(0), Shard(1), Replicate()}) {
      INFO("mesh " << mesh.to_string() << " weight " << p.to_string());
      Placements layout(size_t(mesh.ndim()), p);
      DTensor weight = DTensor::distribute(weight_full, mesh, layout);
      ag::set_requires_grad(weight);
      DTensor ids = DTensor::distribute(ids_full, mesh, Placements(size_t(mesh.ndim()), Replicate()));
      DTensor loss = ag::cross_entropy(ag::linear(ag::embedding(weight, ids), weight), labels);
      ag::backward(loss);
      Tensor leaf = weight_full.clone();
      ag::set_requires_grad(leaf);
      Tensor expected = local_loss({leaf});
      ag::backward(expected);
      CHECK(allclose(loss.to_local(), expected, 1e-12, 1e-12));
      CHECK(ag::grad(weight).placements() == layout);
      CHECK(allclose(ag::grad(weight).full_tensor(), ag::grad(leaf), 1e-10, 1e-10));
    }
  }
}
