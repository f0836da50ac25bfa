// clip_grad_norm against the norm computed by hand over the whole gradients (a replicated
// parameter counted once), with its one all_reduce counted; warmup_cosine_lr against values
// computed by hand; the optimizers' errors for bad parameters and options, on every rank.
#include "optim_test_util.hpp"

#include "collectives/comm_recorder.hpp"
#include "optim/optim.hpp"

#include <numbers>

using namespace dtensor;
using namespace dtensor::testing;
using optim::NamedParameters;

namespace {

double sum_of_squares(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += v * v;
  return sum;
}

// Throws E whose message contains every one of `parts`.
template <typename E, typename Fn>
void check_error(const Fn& fn, const std::vector<std::string>& parts) {
  bool thrown = false;
  try {
    fn();
  } catch (const E& e) {
    thrown = true;
    for (const std::string& part : parts) CHECK_THAT(e.what(), Catch::Contains(part));
  }
  CHECK(thrown);
}

}  // namespace

TEST_CASE("clip_grad_norm: the norm of the whole gradients, replicated ones counted once, one all_reduce",
          "[optim][clip]") {
  std::mt19937 rng(1610);
  const std::vector<Shape> shapes = {{5, 3}, {7}, {4}, {3, 2}, {2}};
  const std::vector<std::string> names = {"p0", "p1", "p2", "p3", "p4"};
  for (const DeviceMesh& mesh : op_meshes()) {
    for (int draw = 0; draw < 6; ++draw) {
      std::vector<nn::Value> params(shapes.size());
      std::vector<Tensor> grads;
      NamedParameters named;
      for (size_t i = 0; i < shapes.size(); ++i) {
        std::optional<Placements> placements = random_placements(rng, mesh, int64_t(shapes[i].size()), false);
        if (i == 2) placements = Placements(size_t(mesh.ndim()), Replicate());
        if (i == 3) placements.reset();  // a plain tensor, taken as replicated over the mesh
        params[i] = make_param(integer_valued(shapes[i], DType::F64, rng()), mesh, placements);
        named.push_back({names[i], &params[i]});
        grads.push_back(integer_valued(shapes[i], DType::F64, rng()));
        if (i != 4) give_grad(params[i], grads[i]);  // p4 has no gradient
      }
      double expected_sq = 0;
      for (size_t i = 0; i < 4; ++i) expected_sq += sum_of_squares(values_of(grads[i]));
      const double expected = std::sqrt(expected_sq);
      std::string layouts;
      for (const nn::Value& p : params) layouts += p.describe() + "; ";
      INFO("mesh " << mesh.to_string() << " " << layouts);

      CommRecorder recorder;
      CHECK(std::abs(optim::clip_grad_norm(named, expected * 2) - expected) <= 1e-12 * expected);
      INFO(recorder.summary());
      CHECK(recorder.calls().size() == (mesh.size() > 1 ? 1u : 0u));
      CHECK(recorder.count(CollectiveKind::AllReduce) == (mesh.size() > 1 ? 1u : 0u));
      for (size_t i = 0; i < 4; ++i) CHECK(equal(grad_block(params[i]), block_like(params[i], grads[i])));

      const double max_norm = expected * 0.9;  // clipped, by a coefficient close to 1
      CHECK(std::abs(optim::clip_grad_norm(named, max_norm) - expected) <= 1e-12 * expected);
      const double coef = max_norm / (expected + 1e-6);
      for (size_t i = 0; i < 4; ++i) {
        std::vector<double> scaled = values_of(grads[i]);
        for (double& v : scaled) v *= coef;
        CHECK(allclose(grad_block(params[i]), block_like(params[i], tensor_of(scaled, shapes[i])), 1e-12, 1e-12));
      }
    }
  }
}

TEST_CASE("clip_grad_norm over plain tensors only is local, f32 and bf16 gradients", "[optim][clip]") {
  Tensor a = integer_valued({3, 4}, DType::F32, 20), b = integer_valued({5}, DType::BF16, 21);
  nn::Value pa = make_param(Tensor::zeros({3, 4}, DType::F32), DeviceMesh(), std::nullopt);
  nn::Value pb = make_param(Tensor::zeros({5}, DType::BF16), DeviceMesh(), std::nullopt);
  give_grad(pa, a);
  give_grad(pb, b);
  const double expected = std::sqrt(sum_of_squares(values_of(a)) + sum_of_squares(values_of(b)));
  CommRecorder recorder;
  CHECK(std::abs(optim::clip_grad_norm({{"a", &pa}, {"b", &pb}}, 1.0) - expected) <= 1e-12 * expected);
  CHECK(recorder.calls().empty());
  std::vector<double> scaled = values_of(a);
  for (double& v : scaled) v *= 1.0 / (expected + 1e-6);
  CHECK(allclose(grad_block(pa).to(DType::F64), tensor_of(scaled, {3, 4}), 1e-6, 1e-7));
  scaled = values_of(b);
  for (double& v : scaled) v *= 1.0 / (expected + 1e-6);
  CHECK(allclose(grad_block(pb).to(DType::F64), tensor_of(scaled, {5}), 4e-3, 1e-6));  // bf16's rounding
}

TEST_CASE("clip_grad_norm on a 2-D mesh that is not the whole world reduces over each dim of it", "[optim][clip]") {
  if (world().size() < 3) return;
  DeviceMesh mesh = DeviceMesh::from_range(world(), 0, {1, 2});  // ranks 0 and 1 of 3 or 4
  if (!mesh.is_member()) return;
  Tensor g = integer_valued({5, 2}, DType::F64, 22), r = integer_valued({3}, DType::F64, 23);
  nn::Value w = make_param(Tensor::zeros({5, 2}, DType::F64), mesh, Placements{Replicate(), Shard(0)});
  nn::Value v = make_param(Tensor::zeros({3}, DType::F64), mesh, Placements{Replicate(), Replicate()});
  give_grad(w, g);
  give_grad(v, r);
  const double expected = std::sqrt(sum_of_squares(values_of(g)) + sum_of_squares(values_of(r)));
  CommRecorder recorder;
  CHECK(std::abs(optim::clip_grad_norm({{"w", &w}, {"v", &v}}, 1e9) - expected) <= 1e-12 * expected);
  CHECK(recorder.count(CollectiveKind::AllReduce) == 1);  // the dim of size 1 needs none
}

TEST_CASE("clip_grad_norm refuses a Partial gradient and a bad max_norm on every rank", "[optim][clip][errors]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  DTensor partial = DTensor::distribute(Tensor::full({4}, 1.0, DType::F64), mesh, {Partial()});
  ag::set_requires_grad(partial);
  ag::backward(ag::sum(partial));
  nn::Value p = partial;
  check_error<ValueError>([&] { optim::clip_grad_norm({{"partial", &p}}, 1.0); }, {"\"partial\"", "P(sum)"});
  nn::Value w = make_param(Tensor::zeros({4}, DType::F64), mesh, Placements{Shard(0)});
  for (double bad : {0.0, -1.0, std::nan("")}) {
    check_error<ValueError>([&] { optim::clip_grad_norm({{"w", &w}}, bad); }, {"max_norm"});
  }
}

TEST_CASE("warmup_cosine_lr: linear warm-up, then cosine down to min_lr, as transformers", "[optim][schedule]") {
  // base 1.0, min 0.1, 4 warm-up steps of 12: the cosine runs over steps 4..12.
  const std::vector<std::pair<int64_t, double>> expected = {
      {0, 0.0},
      {1, 0.25},
      {2, 0.5},
      {3, 0.75},
      {4, 1.0},                                      // progress 0
      {6, 0.1 + 0.9 * 0.5 * (1 + std::sqrt(0.5))},   // progress 1/4: cos = sqrt(1/2)
      {8, 0.55},                                     // progress 1/2
      {10, 0.1 + 0.9 * 0.5 * (1 - std::sqrt(0.5))},  // progress 3/4
      {12, 0.1},
      {20, 0.1},  // the end, and after it
  };
  for (const auto& [step, lr] : expected) {
    INFO("step " << step);
    CHECK(std::abs(optim::warmup_cosine_lr(step, 4, 12, 1.0, 0.1) - lr) <= 1e-15);
  }
  // No warm-up, min_lr 0 (transformers' get_cosine_schedule_with_warmup): lr at 1/3 of the way is
  // base * (1 + cos(pi / 3)) / 2 = 0.75 base.
  CHECK(optim::warmup_cosine_lr(0, 0, 9, 2e-3) == 2e-3);
  CHECK(std::abs(optim::warmup_cosine_lr(3, 0, 9, 2e-3) - 1.5e-3) <= 1e-18);
  CHECK(optim::warmup_cosine_lr(5, 5, 5, 1.0, 0.2) == 1.0);  // warm-up ends at the last step
}

TEST_CASE("warmup_cosine_lr names a bad argument", "[optim][schedule][errors]") {
  using optim::warmup_cosine_lr;
  check_error<ValueError>([] { warmup_cosine_lr(-1, 2, 10, 1.0); }, {"step"});
  check_error<ValueError>([] { warmup_cosine_lr(0, -2, 10, 1.0); }, {"warmup_steps"});
  check_error<ValueError>([] { warmup_cosine_lr(0, 2, 0, 1.0); }, {"total_steps"});
  check_error<ValueError>([] { warmup_cosine_lr(0, 12, 10, 1.0); }, {"warmup_steps", "total_steps"});
  check_error<ValueError>([] { warmup_cosine_lr(0, 2, 10, -1.0); }, {"base_lr"});
  check_error<ValueError>([] { warmup_cosine_lr(0, 2, 10, 1.0, 2.0); }, {"min_lr"});
  check_error<ValueError>([] { warmup_cosine_lr(0, 2, 10, 1.0, -0.1); }, {"min_lr"});
}

TEST_CASE("optimizers refuse parameters on two meshes, naming the parameter and both meshes, on every rank",
          "[optim][errors]") {
  const int n = world().size();
  DeviceMesh line = DeviceMesh::from_world({n}), grid = DeviceMesh::from_world({1, n});
  nn::Value a = make_param(Tensor::zeros({4}, DType::F64), line, Placements{Shard(0)});
  nn::Value b = make_param(Tensor::zeros({4}, DType::F64), grid, Placements{Replicate(), Shard(0)});
  NamedParameters named = {{"a", &a}, {"b", &b}};
  const std::vector<std::string> parts = {"\"b\"", "\"a\"", line.to_string(), grid.to_string()};
  check_error<ValueError>([&] { optim::SGD(named, {.lr = 0.1}); }, parts);
  check_error<ValueError>([&] { optim::AdamW(named, {}); }, parts);
  check_error<ValueError>([&] { optim::clip_grad_norm(named, 1.0); }, parts);
}

TEST_CASE("optimizers name a bad option, a non-floating or Partial parameter, on every rank", "[optim][errors]") {
  DeviceMesh mesh = DeviceMesh::from_world({world().size()});
  nn::Value w = make_param(Tensor::zeros({4}, DType::F32), mesh, Placements{Shard(0)});
  NamedParameters named = {{"w", &w}};
  check_error<ValueError>([&] { optim::SGD(named, {.lr = -0.1}); }, {"lr"});
  check_error<ValueError>([&] { optim::SGD(named, {.momentum = -0.9}); }, {"momentum"});
  check_error<ValueError>([&] { optim::SGD(named, {.weight_decay = -1}); }, {"weight_decay"});
  check_error<ValueError>([&] { optim::SGD(named, {.nesterov = true}); }, {"nesterov", "momentum"});
  check_error<ValueError>([&] { optim::AdamW(named, {.lr = -1e-3}); }, {"lr"});
  check_error<ValueError>([&] { optim::AdamW(named, {.beta1 = 1.0}); }, {"beta1"});
  check_error<ValueError>([&] { optim::AdamW(named, {.beta2 = -0.1}); }, {"beta2"});
  check_error<ValueError>([&] { optim::AdamW(named, {.eps = 0.0}); }, {"eps"});
  check_error<ValueError>([&] { optim::AdamW(named, {.weight_decay = -0.1}); }, {"weight_decay"});

  optim::AdamW opt(named);
  check_error<ValueError>([&] { opt.set_lr(-1); }, {"lr"});
  check_error<ValueError>([&] { opt.state("v", "exp_avg"); }, {"\"v\"", "not one of"});
  check_error<ValueError>([&] { opt.state("w", "exp_avg"); }, {"\"w\"", "no state"});

  nn::Value ids = Tensor::zeros({3}, DType::I64);
  check_error<DTypeError>([&] { optim::AdamW({{"w", &w}, {"ids", &ids}}); }, {"\"ids\"", "i64"});
  nn::Value partial = DTensor::distribute(Tensor::zeros({4}, DType::F32), mesh, {Partial()});
  check_error<ValueError>([&] { optim::SGD({{"partial", &partial}}, {}); }, {"\"partial\"", "Partial"});
  check_error<ValueError>([&] { optim::SGD({{"w", &w}, {"w", &w}}, {}); }, {"\"w\"", "twice"});
  check_error<ValueError>([&] { optim::SGD({{"null", nullptr}}, {}); }, {"\"null\""});
}
