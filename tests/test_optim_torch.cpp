// The fixed case of tools/optim_torch_values.py against the values torch printed for it (copied
// below as literals, so the test needs no torch): three f32 steps of SGD (momentum, Nesterov,
// weight decay) and AdamW, on a plain tensor and on DTensors laid out every way on the meshes,
// clip_grad_norm_ and the warm-up cosine schedule.
#include "optim_test_util.hpp"

#include "optim/optim.hpp"

using namespace dtensor;
using namespace dtensor::testing;
using optim::NamedParameters;

namespace {

const Shape kShape = {2, 3};
const std::vector<double> kInitial = {0.5, -1.25, 2.0, 0.75, -0.5, 1.5};
const std::vector<double> kLrs = {0.1, 0.05, 0.2};

// The gradient of step k.
Tensor torch_case_grad(int k) {
  std::vector<float> values;
  for (int i = 0; i < 6; ++i) values.push_back(float(((i * 7 + k * 3) % 9 - 4) * 0.5));
  return Tensor::from_vector(values, kShape);
}

// Runs the three steps on `param` and compares the parameter and its states with torch's values.
template <typename Opt, typename Options>
void check_against_torch(nn::Value& param, const Options& options,
                         const std::vector<std::pair<std::string, std::vector<double>>>& expected) {
  INFO(param.describe());
  Opt opt(NamedParameters{{"p", &param}}, options);
  for (int k = 0; k < 3; ++k) {
    opt.set_lr(kLrs[size_t(k)]);
    give_grad(param, torch_case_grad(k));
    opt.step();
    opt.zero_grad();
  }
  for (const auto& [which, values] : expected) {
    INFO(which);
    const nn::Value& got = which == "param" ? param : opt.state("p", which);
    CHECK(got.dtype() == DType::F32);
    CHECK(allclose(got.local().to(DType::F64), block_like(param, tensor_of(values, kShape)), 5e-7,
                   5e-8));  // a few f32 ulps
  }
}

std::vector<std::optional<Placements>> layouts(const DeviceMesh& mesh) {
  std::vector<std::optional<Placements>> out = {std::nullopt};
  for (const Placements& p : placement_lists(size_t(mesh.ndim()), layout_choices(2, false), 2)) out.push_back(p);
  return out;
}

}  // namespace

TEST_CASE("SGD with Nesterov momentum and weight decay gives torch's f32 values", "[optim][torch]") {
  const std::vector<std::pair<std::string, std::vector<double>>> torch_values = {
      {"param",
       {0.9223423600196838, -1.2894903421401978, 1.49263334274292, 1.363264560699463, -0.4761043190956116,
        0.6885193586349487}},
      {"momentum_buffer",
       {-0.85228431224823, -0.5132705569267273, 1.6981213092803955, -1.2949755191802979, 0.2119278907775879,
        1.5486406087875366}},
  };
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const auto& layout : layouts(mesh)) {
      nn::Value p = make_param(tensor_of(kInitial, kShape).to(DType::F32), mesh, layout);
      check_against_torch<optim::SGD>(p, optim::SGDOptions{.momentum = 0.9, .nesterov = true, .weight_decay = 0.1},
                                      torch_values);
    }
  }
}

TEST_CASE("AdamW gives torch's f32 values", "[optim][torch]") {
  const std::vector<std::pair<std::string, std::vector<double>>> torch_values = {
      {"param",
       {0.681918740272522, -1.2933751344680786, 1.7233275175094604, 0.886173665523529, -0.3690805435180664,
        1.2680271863937378}},
      {"exp_avg",
       {-0.10700000077486038, -0.01349999476224184, 0.12050000578165054, -0.15050001442432404, 0.028499996289610863,
        0.12200000137090683}},
      {"exp_avg_sq",
       {0.24237500131130219, 0.2084062546491623, 0.2512812614440918, 0.2587812542915344, 0.21403124928474426,
        0.24049998819828033}},
  };
  for (const DeviceMesh& mesh : op_meshes()) {
    for (const auto& layout : layouts(mesh)) {
      nn::Value p = make_param(tensor_of(kInitial, kShape).to(DType::F32), mesh, layout);
      check_against_torch<optim::AdamW>(p, optim::AdamWOptions{.beta2 = 0.95, .weight_decay = 0.1}, torch_values);
    }
  }
}

TEST_CASE("clip_grad_norm and warmup_cosine_lr give torch's values", "[optim][torch]") {
  nn::Value a = make_param(Tensor::zeros(kShape, DType::F32), DeviceMesh(), std::nullopt);
  nn::Value b = make_param(Tensor::zeros({4}, DType::F32), DeviceMesh(), std::nullopt);
  give_grad(a, torch_case_grad(0));
  give_grad(b, Tensor::from_vector(std::vector<float>{1.0f, -2.0f, 3.0f, 0.5f}, {4}));
  CHECK(std::abs(optim::clip_grad_norm({{"a", &a}, {"b", &b}}, 2.0) - 5.220153331756592) <= 1e-6);
  const std::vector<double> clipped = {-0.7662608623504639,  0.5746956467628479,  0.19156521558761597,
                                       -0.19156521558761597, -0.5746956467628479, 0.7662608623504639};
  CHECK(allclose(grad_block(a).to(DType::F64), tensor_of(clipped, kShape), 5e-7, 5e-8));  // a few f32 ulps

  // LambdaLR over transformers' get_cosine_schedule_with_warmup(3 warm-up steps of 10), base lr 0.5.
  const std::vector<double> lrs = {0.0,
                                   0.16666666666666666,
                                   0.3333333333333333,
                                   0.5,
                                   0.47524221697560476,
                                   0.4058724504646834,
                                   0.3056302334890786,
                                   0.19436976651092142,
                                   0.09412754953531663,
                                   0.02475778302439524,
                                   0.0};
  for (size_t step = 0; step < lrs.size(); ++step) {
    INFO("step " << step);
    CHECK(std::abs(optim::warmup_cosine_lr(int64_t(step), 3, 10, 0.5) - lrs[step]) <= 1e-15);
  }
}
