// Gradients of DTensors beyond single ops: leaf gradients with the leaf's placements (a Partial one
// reduced once, at the leaf), the backward of redistribute, the collectives a tensor-parallel block
// costs in backward (counted with CommRecorder), accumulation, and the bridges to local tensors.
#include "autograd_dtensor_check.hpp"

#include "collectives/comm_recorder.hpp"

using namespace dtensor;
using namespace dtensor::testing;

TEST_CASE("a norm's weight beside row-sharded input gets a P(sum) gradient, reduced once at the leaf",
          "[autograd][dtensor][partial]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  Tensor x_full = dtensor::random({5, 6}, DType::F64, {.seed = 150, .a = -2.0, .b = 2.0});
  DTensor x = DTensor::distribute(x_full, mesh, {Shard(0)});
  DTensor weight = DTensor::distribute(Tensor::full({6}, 1.0, DType::F64), mesh, {Replicate()});
  ag::set_requires_grad(weight);
  DTensor normed = ag::rms_norm(x, weight, 1e-5);
  CommRecorder recorder;
  ag::backward(ag::sum(ag::mul(normed, normed)));
  INFO(recorder.summary());
  CHECK(recorder.calls().size() == expected_count(mesh, 1));
  CHECK(recorder.count(CollectiveKind::AllReduce) == expected_count(mesh, 1));
  CHECK(ag::grad(weight).placements() == Placements{Replicate()});
}

TEST_CASE("redistribute's backward moves the gradient back to the source, Partial read as Replicate",
          "[autograd][dtensor][redistribute]") {
  std::mt19937 rng(60);
  Tensor full = f64({5, 3}, 61);
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const Placement& src : layout_choices(2, true)) {
      for (const Placement& dst : layout_choices(2, true)) {
        Placements from(size_t(mesh.ndim()), src), to(size_t(mesh.ndim()), dst);
        check_gradients(
            mesh, {full}, {from}, [&](const auto& x) { return ag::redistribute(x[0], to); },
            [](const auto& x) { return ag::mul(x[0], 1.0); }, rng);
      }
    }
  }
}

TEST_CASE("redistribute's backward runs the collective of DESIGN.md's table", "[autograd][dtensor][redistribute]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  struct Case {
    Placement src, dst, seed;
    CollectiveKind kind;  // the one collective the backward runs (none on one rank)
  };
  const std::vector<Case> cases = {
      {Replicate(), Shard(0), Shard(0), CollectiveKind::AllGather},       // R -> S: all-gather
      {Shard(0), Replicate(), Partial(), CollectiveKind::ReduceScatter},  // S -> R, gradient P: reduce-scatter
      {Partial(), Shard(0), Shard(0), CollectiveKind::AllGather},         // P -> S: all-gather
  };
  Tensor full = f64({6, 4}, 62);
  for (const Case& c : cases) {
    DTensor x = DTensor::distribute(full, mesh, {c.src});
    ag::set_requires_grad(x);
    DTensor y = ag::redistribute(x, {c.dst});
    DTensor seed = DTensor::distribute(f64({6, 4}, 63), mesh, {c.seed});
    CommRecorder recorder;
    ag::backward(y, seed);
    INFO(placements_str({c.src}) << " -> " << placements_str({c.dst}) << ": " << recorder.summary());
    CHECK(recorder.calls().size() == expected_count(mesh, 1));
    CHECK(recorder.count(c.kind) == expected_count(mesh, 1));
  }
  // S -> R with a Replicate gradient and P -> R: no communication at all.
  for (const Placement& src : {Shard(0), Partial()}) {
    DTensor x = DTensor::distribute(full, mesh, {src});
    ag::set_requires_grad(x);
    DTensor y = ag::redistribute(x, {Replicate()});
    DTensor seed = DTensor::distribute(f64({6, 4}, 64), mesh, {Replicate()});
    CommRecorder recorder;
    ag::backward(y, seed);
    CHECK(recorder.calls().empty());
    CHECK(equal(ag::grad(x).full_tensor(), seed.full_tensor()));
  }
}

namespace {
// Megatron's MLP without the nonlinearity's cost: colwise w1 (and b1), square, rowwise w2, the
// all-reduce (g), then b2 and the loss weights v. Inputs: x, w1, b1, w2, b2, v.
DTensor tensor_parallel_mlp(const std::vector<DTensor>& p, const Placements& output) {
  DTensor y = ag::linear(p[0], p[1], p[2]);
  DTensor z = ag::linear(ag::mul(y, y), p[3]);
  return ag::mul(ag::add(ag::redistribute(z, output), p[4]), p[5]);
}

Tensor local_mlp(const std::vector<Tensor>& p) {
  Tensor y = ag::linear(p[0], p[1], p[2]);
  Tensor z = ag::linear(ag::mul(y, y), p[3]);
  return ag::mul(ag::add(z, p[4]), p[5]);
}

// Runs the block on leaves laid out as `layouts`, then its backward from sum(out) under a
// CommRecorder; checks every gradient against the local reference and the leaf's placements.
// Returns the collectives the backward ran.
std::vector<CommRecorder::Call> block_backward(const DeviceMesh& mesh, const std::vector<Tensor>& fulls,
                                               const std::vector<Placements>& layouts, const Placements& output) {
  std::vector<DTensor> leaves;
  for (size_t i = 0; i < fulls.size(); ++i) {
    leaves.push_back(DTensor::distribute(fulls[i], mesh, layouts[i]));
    if (i + 1 < fulls.size()) ag::set_requires_grad(leaves.back());  // v is a constant
  }
  DTensor loss = ag::sum(tensor_parallel_mlp(leaves, output));
  CommRecorder recorder;
  ag::backward(loss);
  std::vector<CommRecorder::Call> calls = recorder.calls();
  auto local_loss = [](const std::vector<Tensor>& p) { return ag::sum(local_mlp(p)); };
  std::vector<Tensor> expected = local_gradients(local_loss, fulls, Tensor::full({}, 1.0, DType::F64));
  for (size_t i = 0; i + 1 < fulls.size(); ++i) {
    INFO("parameter " << i << " " << placements_str(layouts[i]));
    CHECK(ag::grad(leaves[i]).placements() == layouts[i]);
    CHECK(allclose(ag::grad(leaves[i]).full_tensor(), expected[i], 1e-10, 1e-10));
  }
  return calls;
}

uint64_t count(const std::vector<CommRecorder::Call>& calls, CollectiveKind kind) {
  return uint64_t(std::count_if(calls.begin(), calls.end(), [&](const auto& c) { return c.kind == kind; }));
}

// x [tokens, hidden], w1 [ffn, hidden], b1 [ffn], w2 [hidden, ffn], b2 [hidden], v [tokens, hidden];
// ffn = 7 and tokens = 5 do not divide 2, 3 or 4.
std::vector<Tensor> mlp_inputs() {
  return {f64({5, 4}, 70), f64({7, 4}, 71), f64({7}, 72), f64({4, 7}, 73), f64({4}, 74), f64({5, 4}, 75)};
}
}  // namespace

TEST_CASE("a colwise-rowwise block costs one all-reduce of the input gradient in backward, as Megatron's",
          "[autograd][dtensor][tp]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  std::vector<Tensor> fulls = mlp_inputs();
  require_gradchecked(local_mlp, fulls);
  const Placements r = {Replicate()}, col = {Shard(0)}, row = {Shard(1)};
  auto calls = block_backward(mesh, fulls, {r, col, col, row, r, r}, r);
  CHECK(calls.size() == expected_count(mesh, 1));
  CHECK(count(calls, CollectiveKind::AllReduce) == expected_count(mesh, 1));
}

TEST_CASE("a sequence-parallel block costs one all-gather and one reduce-scatter in backward",
          "[autograd][dtensor][tp]") {
  // Plus one all-reduce of b2's gradient: b2 is added to sequence-sharded rows, so its gradient
  // comes out P(sum) and its Replicate leaf reduces it once (as Megatron all-reduces the gradients
  // of its sequence-parallel parameters).
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  const Placements r = {Replicate()}, seq = {Shard(0)}, col = {Shard(0)}, row = {Shard(1)};
  std::vector<Tensor> fulls = mlp_inputs();
  // The sequence-sharded input is gathered before the block (forward all-gather), the output
  // reduce-scattered back to sequence shards; the backward runs the converse pair.
  std::vector<DTensor> leaves;
  const std::vector<Placements> layouts = {seq, col, col, row, r, seq};
  for (size_t i = 0; i < fulls.size(); ++i) {
    leaves.push_back(DTensor::distribute(fulls[i], mesh, layouts[i]));
    if (i + 1 < fulls.size()) ag::set_requires_grad(leaves.back());
  }
  std::vector<DTensor> block_inputs = leaves;
  block_inputs[0] = ag::redistribute(leaves[0], r);
  DTensor loss = ag::sum(tensor_parallel_mlp(block_inputs, seq));
  CommRecorder recorder;
  ag::backward(loss);
  INFO(recorder.summary());
  CHECK(recorder.calls().size() == expected_count(mesh, 3));
  CHECK(count(recorder.calls(), CollectiveKind::AllGather) == expected_count(mesh, 1));
  CHECK(count(recorder.calls(), CollectiveKind::ReduceScatter) == expected_count(mesh, 1));
  CHECK(count(recorder.calls(), CollectiveKind::AllReduce) == expected_count(mesh, 1));
  CHECK(recorder.bytes(CollectiveKind::AllReduce) == expected_count(mesh, 4 * sizeof(double)));  // b2 [4]
  auto local_loss = [](const std::vector<Tensor>& p) { return ag::sum(local_mlp(p)); };
  std::vector<Tensor> expected = local_gradients(local_loss, fulls, Tensor::full({}, 1.0, DType::F64));
  for (size_t i = 0; i + 1 < fulls.size(); ++i) {
    INFO("parameter " << i);
    CHECK(ag::grad(leaves[i]).placements() == layouts[i]);
    CHECK(allclose(ag::grad(leaves[i]).full_tensor(), expected[i], 1e-10, 1e-10));
  }
}

TEST_CASE("Partial gradients reaching one tensor add up Partial and are reduced once, at the leaf",
          "[autograd][dtensor][partial]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  // x feeds three colwise linears: each sends x a P(sum) gradient; the leaf (R) all-reduces once.
  DTensor x = DTensor::distribute(f64({5, 4}, 80), mesh, {Replicate()});
  ag::set_requires_grad(x);
  std::vector<DTensor> weights;
  DTensor loss;
  for (uint64_t i = 0; i < 3; ++i) {
    weights.push_back(DTensor::distribute(f64({7, 4}, 81 + i), mesh, {Shard(0)}));
    DTensor term = ag::sum(ag::linear(x, weights.back()));
    loss = i == 0 ? term : ag::add(loss, term);
  }
  CommRecorder recorder;
  ag::backward(loss);
  INFO(recorder.summary());
  CHECK(recorder.calls().size() == expected_count(mesh, 1));
  CHECK(recorder.count(CollectiveKind::AllReduce) == expected_count(mesh, 1));
  // d loss / dx = sum over rows of (w0 + w1 + w2), the same for every row of x.
  Tensor column_sums = dtensor::sum(
      dtensor::add(dtensor::add(weights[0].full_tensor(), weights[1].full_tensor()), weights[2].full_tensor()), {0},
      true);
  CHECK(ag::grad(x).placements() == Placements{Replicate()});
  CHECK(equal(ag::grad(x).full_tensor(), column_sums.expand({5, 4}).contiguous()));
}

TEST_CASE("a DTensor leaf accumulates into one buffer until zero_grad; a freed graph is an error",
          "[autograd][dtensor][engine]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  Tensor full = f64({5, 3}, 90);
  DTensor x = DTensor::distribute(full, mesh, {Shard(0)});
  ag::set_requires_grad(x);
  auto loss = [&] { return ag::sum(ag::mul(x, x)); };  // d/dx = 2x
  ag::backward(loss());
  Tensor first = ag::grad(x).to_local();
  ag::backward(loss());
  CHECK(ag::grad(x).to_local().data_ptr() == first.data_ptr());
  CHECK(equal(ag::grad(x).full_tensor(), dtensor::mul(full, 4.0)));
  ag::zero_grad(x);
  CHECK(equal(ag::grad(x).full_tensor(), dtensor::mul(full, 0.0)));

  DTensor once = loss();
  ag::backward(once);
  CHECK_THROWS_AS(ag::backward(once), AutogradError);
  DTensor kept = loss();
  ag::backward(kept, DTensor(), /*retain_graph=*/true);
  CHECK_NOTHROW(ag::backward(kept));
}

TEST_CASE("from_local, to_local and full_tensor pass gradients between local tensors and DTensors",
          "[autograd][dtensor][local]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  Tensor full = f64({5, 3}, 100), v = f64({5, 3}, 101);
  // full_tensor: every rank's loss reads the whole tensor, its gradient is v, sliced back to S(0).
  DTensor x = DTensor::distribute(full, mesh, {Shard(0)});
  ag::set_requires_grad(x);
  ag::backward(ag::sum(ag::mul(ag::full_tensor(x), v)));
  CHECK(ag::grad(x).placements() == Placements{Shard(0)});
  CHECK(equal(ag::grad(x).full_tensor(), v));
  // to_local: the local gradient is wrapped with x's placements.
  DTensor y = DTensor::distribute(full, mesh, {Shard(0)});
  ag::set_requires_grad(y);
  ag::backward(ag::sum(ag::mul(ag::to_local(y), 2.0)));
  CHECK(equal(ag::grad(y).full_tensor(), dtensor::add(dtensor::mul(full, 0.0), 2.0)));
  // from_local: a local leaf gets its block of the DTensor's gradient.
  Tensor block = DTensor::distribute(full, mesh, {Shard(0)}).to_local().clone();
  ag::set_requires_grad(block);
  DTensor z = ag::from_local(block, mesh, {Shard(0)}, full.shape());
  ag::backward(ag::sum(ag::mul(z, DTensor::distribute(v, mesh, {Replicate()}))));
  CHECK(equal(ag::grad(block), DTensor::distribute(v, mesh, {Shard(0)}).to_local()));
}

TEST_CASE("DTensor autograd errors name the argument", "[autograd][dtensor][errors]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  DTensor vec = DTensor::distribute(f64({4}, 110), mesh, {Replicate()});
  DTensor mat = DTensor::distribute(f64({4, 4}, 111), mesh, {Replicate()});
  ag::set_requires_grad(mat);
  CHECK_THROWS_AS(ag::matmul(vec, mat), ValueError);
  DTensor out = ag::mul(mat, 2.0);
  CHECK_THROWS_AS(ag::backward(out), ShapeError);  // not one element: a gradient is needed
  DTensor ids = DTensor::distribute(Tensor::full({3}, 1.0, DType::I64), mesh, {Replicate()});
  CHECK_THROWS_AS(ag::set_requires_grad(ids), DTypeError);
  CHECK_THROWS_AS(ag::set_requires_grad(out), ValueError);
}
