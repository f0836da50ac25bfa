// Test helpers for DTensor ops: meshes to run on, random placements, and the check that an op on
// DTensors equals the same op on the full tensors in one process.
#pragma once

#include <catch2/catch.hpp>

#include "collectives/runtime.hpp"
#include "dtensor/ops.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <functional>
#include <random>

namespace dtensor::testing {

// The 1-D mesh over the world, and the 2x2 mesh when the world has 4 ranks.
inline std::vector<DeviceMesh> op_meshes() {
  const int n = dtensor::world().size();
  std::vector<DeviceMesh> meshes = {DeviceMesh::from_world({n})};
  if (n == 4) meshes.push_back(DeviceMesh::from_world({2, 2}));
  return meshes;
}

// Small integers stored as `dtype`: sums and products of them are exact in f64 (and in f32 while
// they stay below 2^24), so results compare exactly whatever order partial sums are added in.
inline Tensor integer_valued(const Shape& shape, DType dtype, uint64_t seed, int64_t low = -4, int64_t high = 5) {
  RandomOptions options{.seed = seed, .distribution = Distribution::Uniform, .a = double(low), .b = double(high)};
  return random(shape, DType::I64, options).to(dtype);
}

// R, every S(d) of an ndim-dim tensor, and P(sum) when `partial`.
inline std::vector<Placement> layout_choices(int64_t ndim, bool partial) {
  std::vector<Placement> choices = {Replicate()};
  for (int64_t d = 0; d < ndim; ++d) choices.push_back(Shard(d));
  if (partial) choices.push_back(Partial());
  return choices;
}

// One random choice per mesh dim. Every rank draws the same list from an equally seeded rng.
inline Placements random_placements(std::mt19937& rng, const DeviceMesh& mesh, int64_t ndim, bool partial) {
  std::vector<Placement> choices = layout_choices(ndim, partial);
  Placements out;
  for (int64_t m = 0; m < mesh.ndim(); ++m) out.push_back(choices[rng() % choices.size()]);
  return out;
}

inline std::string describe(const std::vector<Placements>& layouts) {
  std::string out;
  for (const Placements& p : layouts) out += placements_str(p) + " ";
  return out;
}

// Distributes `fulls` with `layouts`, runs `op` and checks result.full_tensor() against
// `reference(fulls)`: exactly when tol is 0, else within tol (absolute and relative). Returns
// the result so callers can check its placements.
inline DTensor check_op(const DeviceMesh& mesh, const std::vector<Tensor>& fulls,
                        const std::vector<Placements>& layouts,
                        const std::function<DTensor(const std::vector<DTensor>&)>& op,
                        const std::function<Tensor(const std::vector<Tensor>&)>& reference, double tol = 0) {
  std::vector<DTensor> inputs;
  for (size_t i = 0; i < fulls.size(); ++i) inputs.push_back(DTensor::distribute(fulls[i], mesh, layouts[i]));
  DTensor result = op(inputs);
  Tensor expected = reference(fulls);
  Tensor got = result.full_tensor();
  INFO("mesh " << mesh.to_string() << " inputs " << describe(layouts) << " -> " << placements_str(result.placements()));
  REQUIRE(got.shape() == expected.shape());
  REQUIRE(got.dtype() == expected.dtype());
  if (tol == 0) {
    CHECK(equal(got, expected));
  } else {
    CHECK(allclose(got, expected, tol, tol));
  }
  return result;
}

}  // namespace dtensor::testing
