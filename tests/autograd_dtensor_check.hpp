// The check of DTensor gradients shared by the autograd_dtensor suite: a DTensor computation's
// gradients against the local autograd on the full tensors in one process (itself gradchecked),
// under given or random placements, with each leaf gradient in its leaf's placements.
#pragma once

#include "dtensor_ops_check.hpp"

#include "autograd/gradcheck.hpp"
#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"

#include <functional>
#include <random>
#include <vector>

namespace dtensor::testing {

namespace ag = dtensor::autograd;

using LocalFn = std::function<Tensor(const std::vector<Tensor>&)>;
using DistributedFn = std::function<DTensor(const std::vector<DTensor>&)>;

// The reference: d <out, v> / d input for each input, by the local autograd on full tensors.
inline std::vector<Tensor> local_gradients(const LocalFn& fn, const std::vector<Tensor>& fulls, const Tensor& v) {
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
inline void require_gradchecked(const LocalFn& fn, const std::vector<Tensor>& fulls) {
  ag::GradcheckResult result = ag::gradcheck(fn, fulls);
  INFO(result.report);
  REQUIRE(result.passed);
}

// Distributes `fulls` with `layouts` as leaves, runs `dfn`, seeds the backward with v laid out as
// `seed_layout`, and checks each leaf's gradient: the leaf's placements, the reference's values.
inline void check_gradients(const DeviceMesh& mesh, const std::vector<Tensor>& fulls,
                            const std::vector<Placements>& layouts, const DistributedFn& dfn, const LocalFn& lfn,
                            std::mt19937& rng) {
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
inline void sweep_layouts(const std::vector<Tensor>& fulls, const DistributedFn& dfn, const LocalFn& lfn, uint64_t seed,
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
inline void sweep(const std::vector<Tensor>& fulls, const DistributedFn& dfn, const LocalFn& lfn, uint64_t seed) {
  require_gradchecked(lfn, fulls);
  sweep_layouts(fulls, dfn, lfn, seed);
}

inline Tensor f64(const Shape& shape, uint64_t seed) { return integer_valued(shape, DType::F64, seed); }

inline uint64_t expected_count(const DeviceMesh& mesh, uint64_t count) { return mesh.size(0) > 1 ? count : 0; }

}  // namespace dtensor::testing
