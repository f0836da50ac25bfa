// Gradients of DTensors: every differentiable DTensor op under random placements (uneven shards and
// P(sum) included) against the local autograd on the full tensors in one process (itself
// gradchecked), leaf gradients with the leaf's placements, the backward of redistribute, and the
// collectives a tensor-parallel block costs in backward, counted with CommRecorder.
#include "dtensor_ops_check.hpp"

#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "collectives/comm_recorder.hpp"
#include "dtensor/autograd.hpp"

namespace ag = dtensor::autograd;
using namespace dtensor;
using namespace dtensor::testing;

namespace {

using LocalFn = std::function<Tensor(const std::vector<Tensor>&)>;
using DistributedFn = std::function<DTensor(const std::vector<DTensor>&)>;

// The reference: d <out, v> / d input for each input, by the local autograd on full tensors.
std::vector<Tensor> local_gradients(const LocalFn& fn, const std::vector<Tensor>& fulls, const Tensor& v) {
  std::vector<Tensor> leaves;
  for (const Tensor& full : fulls) {
    leaves.push_back(full.clone());
    if (is_floating(full.dtype())) ag::set_requires_grad(leaves.back());
  }
  ag::backward(fn(leaves), v);
  std::vector<Tensor> grads;
  for (const Tensor& leaf : leaves) grads.push_back(ag::grad(leaf));
  return grads;
}

// The local formula the reference uses is right: f64 finite differences agree with it.
void require_gradchecked(const LocalFn& fn, const std::vector<Tensor>& fulls) {
  ag::GradcheckResult result = ag::gradcheck(fn, fulls);
  INFO(result.report);
  REQUIRE(result.passed);
}

// Distributes `fulls` with `layouts` as leaves, runs `dfn`, seeds the backward with v laid out as
// `seed_layout`, and checks each leaf's gradient: the leaf's placements, the reference's values.
void check_gradients(const DeviceMesh& mesh, const std::vector<Tensor>& fulls, const std::vector<Placements>& layouts,
                     const DistributedFn& dfn, const LocalFn& lfn, std::mt19937& rng) {
  std::vector<DTensor> leaves;
  for (size_t i = 0; i < fulls.size(); ++i) {
    leaves.push_back(DTensor::distribute(fulls[i], mesh, layouts[i]));
    if (is_floating(fulls[i].dtype())) ag::set_requires_grad(leaves.back());
  }
  DTensor out = dfn(leaves);
  Tensor v = integer_valued(out.shape(), out.dtype(), rng());
  Placements seed_layout = random_placements(rng, mesh, out.dim(), /*partial=*/true);
  ag::backward(out, DTensor::distribute(v, mesh, seed_layout));
  std::vector<Tensor> expected = local_gradients(lfn, fulls, v);
  for (size_t i = 0; i < fulls.size(); ++i) {
    if (!is_floating(fulls[i].dtype())) continue;  // a condition or ids: no gradient
    INFO("mesh " << mesh.to_string() << " inputs " << describe(layouts) << " output "
                 << placements_str(out.placements()) << " seed " << placements_str(seed_layout) << " input " << i);
    DTensor g = ag::grad(leaves[i]);
    REQUIRE(g.to_local().defined());
    CHECK(g.placements() == leaves[i].placements());
    CHECK(allclose(g.full_tensor(), expected[i], 1e-10, 1e-10));
  }
}

// Random layouts for inputs of these ranks; `draws` sets of them per mesh.
void sweep_layouts(const std::vector<Tensor>& fulls, const DistributedFn& dfn, const LocalFn& lfn, uint64_t seed,
                   int draws = 6) {
  std::mt19937 rng{uint32_t(seed)};
  for (const DeviceMesh& mesh : op_meshes()) {
    for (int draw = 0; draw < draws; ++draw) {
      std::vector<Placements> layouts;
      for (const Tensor& full : fulls) layouts.push_back(random_placements(rng, mesh, full.dim(), true));
      check_gradients(mesh, fulls, layouts, dfn, lfn, rng);
    }
  }
}

// The same after gradchecking the reference.
void sweep(const std::vector<Tensor>& fulls, const DistributedFn& dfn, const LocalFn& lfn, uint64_t seed) {
  require_gradchecked(lfn, fulls);
  sweep_layouts(fulls, dfn, lfn, seed);
}

Tensor f64(const Shape& shape, uint64_t seed) { return integer_valued(shape, DType::F64, seed); }

uint64_t expected_count(const DeviceMesh& mesh, uint64_t count) { return mesh.size(0) > 1 ? count : 0; }

}  // namespace

TEST_CASE("add, sub and mul with broadcasting: gradients equal the full computation's", "[autograd][dtensor]") {
  const std::vector<std::pair<Shape, Shape>> shapes = {{{5, 3}, {5, 3}}, {{5, 3}, {3}}, {{4, 1, 3}, {2, 3}}};
  uint64_t seed = 1;
  for (const auto& [sa, sb] : shapes) {
    std::vector<Tensor> fulls = {f64(sa, seed), f64(sb, seed + 1)};
    sweep(
        fulls, [](const auto& x) { return ag::add(x[0], x[1]); }, [](const auto& x) { return ag::add(x[0], x[1]); },
        seed++);
    sweep(
        fulls, [](const auto& x) { return ag::sub(x[0], x[1]); },
        [](const auto& x) { return ag::add(x[0], ag::mul(x[1], -1.0)); }, seed++);
    sweep(
        fulls, [](const auto& x) { return ag::mul(x[0], x[1]); }, [](const auto& x) { return ag::mul(x[0], x[1]); },
        seed++);
  }
}

TEST_CASE("scalar add and mul, neg, reshape and transpose: gradients equal the full computation's",
          "[autograd][dtensor]") {
  std::vector<Tensor> fulls = {f64({5, 6}, 3)};
  sweep(
      fulls, [](const auto& x) { return ag::neg(ag::mul(ag::add(x[0], 2.0), 3.0)); },
      [](const auto& x) { return ag::mul(ag::add(x[0], 2.0), -3.0); }, 11);
  sweep(
      fulls, [](const auto& x) { return ag::transpose(x[0], 0, 1); },
      [](const auto& x) { return ag::transpose(x[0], 0, 1); }, 12);
  sweep(
      fulls,
      [](const auto& x) {
        return ag::reshape(x[0], {5, 2, 3});
      },
      [](const auto& x) {
        return ag::reshape(x[0], {5, 2, 3});
      },
      13);
}

TEST_CASE("sum and mean over dims, kept or not: gradients equal the full computation's", "[autograd][dtensor]") {
  const std::vector<std::pair<std::vector<int64_t>, bool>> reductions = {
      {{}, false}, {{0}, false}, {{1}, true}, {{0, 2}, false}, {{-1}, true}};
  std::vector<Tensor> fulls = {f64({5, 3, 2}, 4)};
  uint64_t seed = 20;
  for (const auto& [dims, keepdim] : reductions) {
    sweep(
        fulls, [dims, keepdim](const auto& x) { return ag::sum(x[0], dims, keepdim); },
        [dims, keepdim](const auto& x) { return ag::sum(x[0], dims, keepdim); }, seed++);
    sweep(
        fulls, [dims, keepdim](const auto& x) { return ag::mean(x[0], dims, keepdim); },
        [dims, keepdim](const auto& x) { return ag::mean(x[0], dims, keepdim); }, seed++);
  }
}

TEST_CASE("matmul and linear: gradients equal the full computation's", "[autograd][dtensor]") {
  const std::vector<std::pair<Shape, Shape>> products = {{{7, 5}, {5, 3}}, {{2, 5, 6}, {6, 3}}, {{3, 4, 5}, {3, 5, 2}}};
  uint64_t seed = 40;
  for (const auto& [sa, sb] : products) {
    sweep(
        {f64(sa, seed), f64(sb, seed + 1)}, [](const auto& x) { return ag::matmul(x[0], x[1]); },
        [](const auto& x) { return ag::matmul(x[0], x[1]); }, seed);
    seed += 2;
  }
  for (const Shape& sx : std::vector<Shape>{{5, 6}, {2, 3, 6}, {6}}) {
    std::vector<Tensor> fulls = {f64(sx, seed), f64({7, 6}, seed + 1), f64({7}, seed + 2)};
    sweep(
        fulls, [](const auto& x) { return ag::linear(x[0], x[1], x[2]); },
        [](const auto& x) { return ag::linear(x[0], x[1], x[2]); }, seed);
    sweep(
        {fulls[0], fulls[1]}, [](const auto& x) { return ag::linear(x[0], x[1]); },
        [](const auto& x) { return ag::linear(x[0], x[1]); }, seed + 1);
    seed += 3;
  }
}

TEST_CASE("div and bmm: gradients equal the full computation's", "[autograd][dtensor]") {
  Tensor denominator = dtensor::random({5, 3}, DType::F64, {.seed = 160, .a = 0.5, .b = 2.0});
  sweep(
      {f64({5, 3}, 161), denominator}, [](const auto& x) { return ag::div(x[0], x[1]); },
      [](const auto& x) { return ag::div(x[0], x[1]); }, 162);
  sweep(
      {f64({4, 1, 3}, 163), denominator.narrow(0, 0, 2).contiguous()},
      [](const auto& x) { return ag::div(x[0], x[1]); }, [](const auto& x) { return ag::div(x[0], x[1]); }, 164);
  sweep(
      {f64({3, 4, 5}, 165), f64({3, 5, 2}, 166)}, [](const auto& x) { return ag::bmm(x[0], x[1]); },
      [](const auto& x) { return ag::bmm(x[0], x[1]); }, 167);
}

TEST_CASE("views, joins and splits: gradients equal the full computation's", "[autograd][dtensor]") {
  std::vector<Tensor> one = {f64({5, 2, 3}, 170)};
  sweep(
      one,
      [](const auto& x) {
        return ag::view(x[0], {5, 6});
      },
      [](const auto& x) {
        return ag::view(x[0], {5, 6});
      },
      171);
  sweep(
      one, [](const auto& x) { return ag::flatten(x[0], 1, 2); }, [](const auto& x) { return ag::flatten(x[0], 1, 2); },
      172);
  sweep(
      one,
      [](const auto& x) {
        return ag::permute(x[0], {2, 0, 1});
      },
      [](const auto& x) {
        return ag::permute(x[0], {2, 0, 1});
      },
      173);
  for (int64_t dim : {0, 2}) {
    const std::vector<int64_t> sizes = dim == 0 ? std::vector<int64_t>{2, 1, 2} : std::vector<int64_t>{1, 1, 1};
    sweep(
        one, [dim](const auto& x) { return ag::narrow(x[0], dim, 1, 2); },
        [dim](const auto& x) { return ag::narrow(x[0], dim, 1, 2); }, 174 + uint64_t(dim));
    // Pieces 0 and 2 are used, piece 1 not: its part of the gradient is zero.
    sweep(
        one,
        [dim, sizes](const auto& x) {
          std::vector<DTensor> pieces = ag::split(x[0], sizes, dim);
          return ag::cat({pieces[2], ag::mul(pieces[0], 2.0)}, dim);
        },
        [dim, sizes](const auto& x) {
          std::vector<Tensor> pieces = ag::split(x[0], sizes, dim);
          return ag::cat({pieces[2], ag::mul(pieces[0], 2.0)}, dim);
        },
        178 + uint64_t(dim));
    sweep(
        one,
        [dim](const auto& x) {
          std::vector<DTensor> pieces = ag::chunk(x[0], 2, dim);
          return ag::stack({pieces[0], pieces[0]}, 0);
        },
        [dim](const auto& x) {
          std::vector<Tensor> pieces = ag::chunk(x[0], 2, dim);
          return ag::stack({pieces[0], pieces[0]}, 0);
        },
        182 + uint64_t(dim));
  }
  sweep(
      {f64({5, 3}, 190), f64({2, 3}, 191)},
      [](const auto& x) {
        return ag::cat({x[0], x[1]}, 0);
      },
      [](const auto& x) {
        return ag::cat({x[0], x[1]}, 0);
      },
      192);
}

TEST_CASE("maximum, minimum, where, amax and amin: gradients equal the full computation's, ties split",
          "[autograd][dtensor]") {
  Tensor a = dtensor::random({5, 3}, DType::F64, {.seed = 200, .a = -2.0, .b = 2.0});
  Tensor b = dtensor::random({3}, DType::F64, {.seed = 201, .a = -2.0, .b = 2.0});
  Tensor c = dtensor::random({4, 1, 3}, DType::F64, {.seed = 202, .a = -2.0, .b = 2.0});
  for (const auto& [x, y] : {std::pair{a, b}, std::pair{b, a}, std::pair{c, a}}) {
    sweep(
        {x, y}, [](const auto& t) { return ag::maximum(t[0], t[1]); },
        [](const auto& t) { return ag::maximum(t[0], t[1]); }, 203);
    sweep(
        {x, y}, [](const auto& t) { return ag::minimum(t[0], t[1]); },
        [](const auto& t) { return ag::minimum(t[0], t[1]); }, 204);
  }
  // Small integers tie often: the gradient is split between tied inputs and tied maxima, as torch.
  Tensor ties = f64({5, 3}, 205), other = f64({5, 3}, 206);
  sweep_layouts(
      {ties, other}, [](const auto& t) { return ag::maximum(t[0], t[1]); },
      [](const auto& t) { return ag::maximum(t[0], t[1]); }, 207);
  Tensor cond = dtensor::gt(a, Tensor::full({}, 0.0, DType::F64));
  sweep(
      {cond, c, b}, [](const auto& t) { return ag::where(t[0], t[1], t[2]); },
      [](const auto& t) { return ag::where(t[0], t[1], t[2]); }, 208);
  const std::vector<std::pair<std::vector<int64_t>, bool>> reductions = {{{}, false}, {{0}, false}, {{1}, true}};
  uint64_t seed = 210;
  for (const auto& [dims, keepdim] : reductions) {
    auto amax = [dims, keepdim](const auto& t) { return ag::amax(t[0], dims, keepdim); };
    auto amin = [dims, keepdim](const auto& t) { return ag::amin(t[0], dims, keepdim); };
    auto local_amax = [dims, keepdim](const auto& t) { return ag::amax(t[0], dims, keepdim); };
    auto local_amin = [dims, keepdim](const auto& t) { return ag::amin(t[0], dims, keepdim); };
    sweep({a}, amax, local_amax, seed++);
    sweep({a}, amin, local_amin, seed++);
    sweep_layouts({ties}, amax, local_amax, seed++);  // tied maxima share the gradient
    sweep_layouts({ties}, amin, local_amin, seed++);
  }
}

TEST_CASE("unary math and cast run blockwise: gradients equal the full computation's", "[autograd][dtensor]") {
  // Positive inputs for log, sqrt and rsqrt; non-integers so relu's kink at 0 is never hit.
  Tensor positive = dtensor::random({5, 3}, DType::F64, {.seed = 120, .a = 0.5, .b = 2.0});
  Tensor any = dtensor::random({5, 3}, DType::F64, {.seed = 121, .a = -2.0, .b = 2.0});
  using Unary = std::pair<DTensor (*)(const DTensor&), Tensor (*)(const Tensor&)>;
  const std::vector<Unary> on_positive = {{ag::log, ag::log}, {ag::sqrt, ag::sqrt}, {ag::rsqrt, ag::rsqrt}};
  const std::vector<Unary> on_any = {
      {ag::exp, ag::exp}, {ag::tanh, ag::tanh}, {ag::relu, ag::relu}, {ag::silu, ag::silu}, {ag::gelu, ag::gelu}};
  uint64_t seed = 122;
  for (const auto& [input, ops] : {std::pair{positive, on_positive}, std::pair{any, on_any}}) {
    for (const auto& [distributed, local] : ops) {
      sweep(
          {input}, [f = distributed](const auto& x) { return f(x[0]); }, [f = local](const auto& x) { return f(x[0]); },
          seed++);
    }
  }
  // The gradient of a cast comes back in the input's dtype: f64 -> f32 -> f64 loses nothing on
  // small integers. (f32 finite differences are too coarse to gradcheck it; the autograd suite
  // checks the local cast.)
  sweep_layouts(
      {f64({5, 3}, 130)}, [](const auto& x) { return ag::cast(ag::cast(x[0], DType::F32), DType::F64); },
      [](const auto& x) { return ag::cast(ag::cast(x[0], DType::F32), DType::F64); }, 131);
}

TEST_CASE("softmax, log_softmax and the norms: gradients equal the full computation's, weights' too",
          "[autograd][dtensor]") {
  Tensor x = dtensor::random({5, 6}, DType::F64, {.seed = 140, .a = -2.0, .b = 2.0});
  Tensor weight = dtensor::random({6}, DType::F64, {.seed = 141, .a = 0.5, .b = 1.5});
  Tensor bias = dtensor::random({6}, DType::F64, {.seed = 142, .a = -1.0, .b = 1.0});
  for (int64_t dim : {0, 1}) {
    sweep(
        {x}, [dim](const auto& a) { return ag::softmax(a[0], dim); },
        [dim](const auto& a) { return ag::softmax(a[0], dim); }, 143 + uint64_t(dim));
    sweep(
        {x}, [dim](const auto& a) { return ag::log_softmax(a[0], dim); },
        [dim](const auto& a) { return ag::log_softmax(a[0], dim); }, 145 + uint64_t(dim));
  }
  sweep(
      {x, weight, bias}, [](const auto& a) { return ag::layer_norm(a[0], a[1], a[2], 1e-5); },
      [](const auto& a) { return ag::layer_norm(a[0], a[1], a[2], 1e-5); }, 147);
  sweep(
      {x, weight}, [](const auto& a) { return ag::rms_norm(a[0], a[1], 1e-5); },
      [](const auto& a) { return ag::rms_norm(a[0], a[1], 1e-5); }, 148);
}

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
