// DTensors whose blocks live on a GPU: distribute, the ops of dtensor/ops.hpp and redistribute
// give the same full tensor as the same computation on the CPU. On several ranks sharing one
// GPU the collectives go through MPI with host staging (collectives/device_staging.hpp).
#include "dtensor_ops_check.hpp"
#include "gpu_test_util.hpp"

using namespace dtensor::testing;

namespace {

// Distributes CUDA copies of `fulls` with `layouts`, runs `op`, and checks that the result lives
// on the GPU and that its full tensor equals `reference` on the CPU tensors. The inputs hold
// small integers, so f32 sums and products are exact in any order: the comparison is exact
// unless a tolerance is given (for ops that divide or take roots).
void check_on_gpu(const DeviceMesh& mesh, const std::vector<Tensor>& fulls, const std::vector<Placements>& layouts,
                  const std::function<DTensor(const std::vector<DTensor>&)>& op,
                  const std::function<Tensor(const std::vector<Tensor>&)>& reference, double tol = 0) {
  std::vector<DTensor> inputs;
  for (size_t i = 0; i < fulls.size(); ++i) {
    inputs.push_back(DTensor::distribute(fulls[i].to(kGpu), mesh, layouts[i]));
    REQUIRE(inputs.back().to_local().device() == kGpu);
  }
  DTensor result = op(inputs);
  INFO("mesh " << mesh.to_string() << " inputs " << describe(layouts) << " -> " << placements_str(result.placements()));
  REQUIRE(result.to_local().device() == kGpu);
  Tensor got = result.full_tensor();
  REQUIRE(got.device() == kGpu);
  Tensor expected = reference(fulls);
  REQUIRE(got.shape() == expected.shape());
  if (tol == 0) {
    CHECK(equal(got.to(Device::cpu()), expected));
  } else {
    CHECK(allclose(got.to(Device::cpu()), expected, tol, tol));
  }
}

using Ops = std::vector<DTensor>;
using Fulls = std::vector<Tensor>;

}  // namespace

TEST_CASE("distribute and redistribute keep CUDA blocks and their values", "[gpu][dtensor]") {
  std::mt19937 rng(21);
  for (const DeviceMesh& mesh : op_meshes()) {
    const Tensor full = integer_valued({7, 10}, DType::F32, 31);
    for (int draw = 0; draw < 12; ++draw) {
      const Placements from = random_placements(rng, mesh, 2, true);
      const Placements to = random_placements(rng, mesh, 2, true);
      INFO(placements_str(from) << " -> " << placements_str(to));
      DTensor x = DTensor::distribute(full.to(kGpu), mesh, from);
      DTensor y = x.redistribute(to);
      REQUIRE(y.to_local().device() == kGpu);
      CHECK(equal(y.full_tensor().to(Device::cpu()), full));
    }
  }
}

TEST_CASE("elementwise ops, relu and sum on CUDA DTensors equal the CPU result", "[gpu][dtensor]") {
  std::mt19937 rng(22);
  for (const DeviceMesh& mesh : op_meshes()) {
    const Tensor a = integer_valued({6, 9}, DType::F32, 1), b = integer_valued({6, 9}, DType::F32, 2);
    const Tensor row = integer_valued({9}, DType::F32, 3);
    for (int draw = 0; draw < 6; ++draw) {
      const std::vector<Placements> layouts = {random_placements(rng, mesh, 2, true),
                                               random_placements(rng, mesh, 2, true)};
      check_on_gpu(
          mesh, {a, b}, layouts, [](const Ops& x) { return add(x[0], x[1]); },
          [](const Fulls& x) { return add(x[0], x[1]); });
      check_on_gpu(
          mesh, {a, b}, layouts, [](const Ops& x) { return mul(x[0], x[1]); },
          [](const Fulls& x) { return mul(x[0], x[1]); });
      check_on_gpu(
          mesh, {a, b}, layouts, [](const Ops& x) { return sub(relu(x[0]), x[1]); },
          [](const Fulls& x) { return sub(relu(x[0]), x[1]); });
      check_on_gpu(
          mesh, {a}, {layouts[0]}, [](const Ops& x) { return sum(x[0], {1}, false, PartialResult::Reduce); },
          [](const Fulls& x) { return sum(x[0], {1}); });
      // Broadcasting a row against a matrix.
      check_on_gpu(
          mesh, {a, row}, {layouts[0], random_placements(rng, mesh, 1, true)},
          [](const Ops& x) { return maximum(x[0], x[1]); }, [](const Fulls& x) { return maximum(x[0], x[1]); });
    }
  }
}

TEST_CASE("matmul and linear on CUDA DTensors equal the CPU result", "[gpu][dtensor]") {
  std::mt19937 rng(23);
  for (const DeviceMesh& mesh : op_meshes()) {
    const Tensor a = integer_valued({8, 6}, DType::F32, 4), b = integer_valued({6, 5}, DType::F32, 5);
    const Tensor x = integer_valued({2, 3, 6}, DType::F32, 6), w = integer_valued({4, 6}, DType::F32, 7);
    const Tensor bias = integer_valued({4}, DType::F32, 8);
    for (int draw = 0; draw < 6; ++draw) {
      check_on_gpu(
          mesh, {a, b}, {random_placements(rng, mesh, 2, true), random_placements(rng, mesh, 2, true)},
          [](const Ops& t) { return matmul(t[0], t[1]); }, [](const Fulls& t) { return matmul(t[0], t[1]); });
      const std::vector<Placements> layouts = {random_placements(rng, mesh, 3, true),
                                               random_placements(rng, mesh, 2, true),
                                               random_placements(rng, mesh, 1, true)};
      check_on_gpu(
          mesh, {x, w, bias}, layouts, [](const Ops& t) { return linear(t[0], t[1], t[2]); },
          [](const Fulls& t) { return linear(t[0], t[1], t[2]); });
      // A small MLP: relu(linear) then a matmul, redistributions chosen by the ops.
      check_on_gpu(
          mesh, {x, w, b.narrow(1, 0, 3).narrow(0, 0, 4).contiguous()}, layouts,
          [](const Ops& t) { return matmul(relu(linear(t[0], t[1])), t[2]); },
          [](const Fulls& t) { return matmul(relu(linear(t[0], t[1])), t[2]); });
    }
  }
}

TEST_CASE("softmax, layer_norm and rms_norm on CUDA DTensors match the CPU result", "[gpu][dtensor]") {
  std::mt19937 rng(24);
  for (const DeviceMesh& mesh : op_meshes()) {
    const Tensor x = integer_valued({5, 4, 12}, DType::F32, 9);
    const Tensor weight = integer_valued({12}, DType::F32, 10, 1, 4), bias = integer_valued({12}, DType::F32, 11);
    for (int draw = 0; draw < 4; ++draw) {
      const std::vector<Placements> layouts = {random_placements(rng, mesh, 3, false),
                                               random_placements(rng, mesh, 1, false),
                                               random_placements(rng, mesh, 1, false)};
      check_on_gpu(
          mesh, {x}, {layouts[0]}, [](const Ops& t) { return softmax(t[0], -1); },
          [](const Fulls& t) { return softmax(t[0], -1); }, 1e-5);
      check_on_gpu(
          mesh, {x, weight, bias}, layouts, [](const Ops& t) { return layer_norm(t[0], t[1], t[2], 1e-5); },
          [](const Fulls& t) { return layer_norm(t[0], t[1], t[2], 1e-5); }, 1e-4);
      check_on_gpu(
          mesh, {x, weight}, {layouts[0], layouts[1]}, [](const Ops& t) { return rms_norm(t[0], t[1], 1e-6); },
          [](const Fulls& t) { return rms_norm(t[0], t[1], 1e-6); }, 1e-4);
    }
  }
}
