// DeviceMesh under mpirun -np 1..4: layout, per-dim communicators, slicing, flattening,
// membership and bad input.
//
// Expected ranks and coordinates come from the row-major formula written out below, never from
// the mesh itself, and every per-dim communicator is checked by communicating over it. Every rank
// runs every test case; the mesh shapes tried depend only on the world size, so all ranks take
// the same path through the collectives.
#include <catch2/catch.hpp>

#include "collectives/runtime.hpp"
#include "mesh/device_mesh.hpp"
#include "tests/skip.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <numeric>

using namespace dtensor;
using Catch::Matchers::Contains;

namespace {

int world_size() { return world().size(); }
int world_rank() { return world().rank(); }

std::vector<int> iota_ranks(int count, int first = 0) {
  std::vector<int> ranks(static_cast<size_t>(count));
  std::iota(ranks.begin(), ranks.end(), first);
  return ranks;
}

// Row-major: flat index = sum over dims of coordinate[d] * stride[d], stride[d] = prod(shape[d+1:]).
std::vector<int64_t> strides_of(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d) strides[d] = strides[d + 1] * shape[d + 1];
  return strides;
}

std::vector<int64_t> expected_coordinate(const Shape& shape, int64_t flat) {
  std::vector<int64_t> strides = strides_of(shape);
  std::vector<int64_t> coordinate;
  for (size_t d = 0; d < shape.size(); ++d) coordinate.push_back((flat / strides[d]) % shape[d]);
  return coordinate;
}

int64_t expected_flat(const Shape& shape, const std::vector<int64_t>& coordinate) {
  std::vector<int64_t> strides = strides_of(shape);
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat += coordinate[d] * strides[d];
  return flat;
}

// The ranks of `ranks` (laid out row-major in `shape`) that share `coordinate` except along `dim`.
std::vector<int64_t> expected_line(const std::vector<int>& ranks, const Shape& shape, std::vector<int64_t> coordinate,
                                   size_t dim) {
  std::vector<int64_t> line;
  for (int64_t i = 0; i < shape[dim]; ++i) {
    coordinate[dim] = i;
    line.push_back(ranks[size_t(expected_flat(shape, coordinate))]);
  }
  return line;
}

// Every way to write `n` as a product of `ndim` positive factors, in order.
std::vector<Shape> factorisations(int64_t n, size_t ndim) {
  if (ndim == 1) return {Shape{n}};
  std::vector<Shape> shapes;
  for (int64_t first = 1; first <= n; ++first) {
    if (n % first != 0) continue;
    for (Shape rest : factorisations(n / first, ndim - 1)) {
      rest.insert(rest.begin(), first);
      shapes.push_back(rest);
    }
  }
  return shapes;
}

std::vector<std::string> dim_names(size_t ndim) {
  std::vector<std::string> names;
  for (size_t d = 0; d < ndim; ++d) names.push_back(fmt::format("d{}", d));
  return names;
}

int64_t sum_over(Communicator comm, int64_t value) {
  Tensor buffer = Tensor::from_vector<int64_t>({value}, {1});
  comm.all_reduce(buffer, ReduceOp::Sum);
  return buffer.item<int64_t>();
}

std::vector<int64_t> gather_over(Communicator comm, int64_t value) {
  Tensor out = Tensor::empty({comm.size()}, DType::I64);
  comm.all_gather(Tensor::from_vector<int64_t>({value}, {1}), out);
  return out.to_vector<int64_t>();
}

int64_t sum_of(const std::vector<int64_t>& values) { return std::accumulate(values.begin(), values.end(), int64_t(0)); }

// Checks a mesh built over `ranks` of the world against the row-major formula, and each dim's
// communicator by an all_reduce and an all_gather of the world rank over it.
void check_mesh(const DeviceMesh& mesh, const std::vector<int>& ranks, const Shape& shape,
                const std::vector<std::string>& names) {
  INFO(mesh.to_string());
  CHECK(mesh.ndim() == int64_t(shape.size()));
  CHECK(mesh.size() == int64_t(ranks.size()));
  CHECK(mesh.shape() == shape);
  CHECK(mesh.ranks() == ranks);
  CHECK(mesh.device() == Device::cpu());
  std::vector<std::string> expected_names = names.empty() ? std::vector<std::string>(shape.size()) : names;
  CHECK(mesh.names() == expected_names);
  for (int64_t flat = 0; flat < int64_t(ranks.size()); ++flat) {
    CHECK(mesh.rank_at(expected_coordinate(shape, flat)) == ranks[size_t(flat)]);
  }

  auto mine = std::find(ranks.begin(), ranks.end(), world_rank());
  REQUIRE(mesh.is_member() == (mine != ranks.end()));
  if (!mesh.is_member()) {
    CHECK(mesh.coordinate().empty());
    for (size_t d = 0; d < shape.size(); ++d) CHECK_FALSE(mesh.comm(int64_t(d)).is_member());
    return;
  }
  std::vector<int64_t> coordinate = expected_coordinate(shape, mine - ranks.begin());
  CHECK(mesh.coordinate() == coordinate);
  for (size_t d = 0; d < shape.size(); ++d) {
    const auto dim = int64_t(d);
    INFO("mesh dim " << d);
    CHECK(mesh.size(dim) == shape[d]);
    CHECK(mesh.local_rank(dim) == coordinate[d]);
    if (!names.empty()) {
      CHECK(mesh.dim_index(names[d]) == dim);
      CHECK(mesh.size(names[d]) == shape[d]);
      CHECK(mesh.local_rank(names[d]) == coordinate[d]);
    }
    Communicator comm = mesh.comm(dim);
    CHECK(comm.size() == shape[d]);
    CHECK(comm.rank() == coordinate[d]);
    std::vector<int64_t> line = expected_line(ranks, shape, coordinate, d);
    CHECK(sum_over(comm, world_rank()) == sum_of(line));
    CHECK(gather_over(comm, world_rank()) == line);
  }
}

// Calls on both handles reach one set of counters only if they share one group.
bool same_group(Communicator a, Communicator b) {
  a.reset_stats();
  sum_over(b, 1);
  return a.stats().calls_of(CollectiveKind::AllReduce) == 1;
}

}  // namespace

TEST_CASE("1-D mesh over the world", "[mesh]") {
  const int n = world_size();
  check_mesh(DeviceMesh::from_world({n}, {"x"}), iota_ranks(n), {n}, {"x"});
  check_mesh(DeviceMesh::from_world({n}), iota_ranks(n), {n}, {});
}

TEST_CASE("every 1-D, 2-D and 3-D factorisation of the world", "[mesh]") {
  const int n = world_size();
  for (size_t ndim = 1; ndim <= 3; ++ndim) {
    for (const Shape& shape : factorisations(n, ndim)) {
      check_mesh(DeviceMesh::from_world(shape, dim_names(ndim)), iota_ranks(n), shape, dim_names(ndim));
    }
  }
}

TEST_CASE("2-D meshes 2x2, 1x4 and 4x1", "[mesh]") {
  const Shape shape = GENERATE(Shape{2, 2}, Shape{1, 4}, Shape{4, 1});
  if (world_size() != 4) SKIP_TEST(shape_str(shape) << " needs 4 ranks");
  check_mesh(DeviceMesh::from_world(shape, {"dp", "tp"}), iota_ranks(4), shape, {"dp", "tp"});
}

TEST_CASE("3-D mesh 2x1x2", "[mesh]") {
  if (world_size() != 4) SKIP_TEST("2x1x2 needs 4 ranks");
  check_mesh(DeviceMesh::from_world({2, 1, 2}, {"dp", "pp", "tp"}), iota_ranks(4), {2, 1, 2}, {"dp", "pp", "tp"});
}

TEST_CASE("to_string shows shape, names and ranks", "[mesh]") {
  const int n = world_size();
  std::string ranks = fmt::format("{}", fmt::join(iota_ranks(n), ", "));
  CHECK(DeviceMesh::from_world({1, n}, {"dp", "tp"}).to_string() ==
        fmt::format("DeviceMesh([1, {}], dims=(dp, tp), ranks=[{}])", n, ranks));
  CHECK(DeviceMesh::from_world({n}).to_string() == fmt::format("DeviceMesh([{}], ranks=[{}])", n, ranks));
}

TEST_CASE("slicing by names gives this rank's sub-mesh and reuses the communicators", "[mesh]") {
  const int n = world_size();
  const std::vector<std::string> names{"a", "b", "c"};
  for (const Shape& shape : factorisations(n, 3)) {
    DeviceMesh mesh = DeviceMesh::from_world(shape, names);
    const std::vector<int64_t> coordinate = expected_coordinate(shape, world_rank());
    INFO(mesh.to_string());

    for (size_t d = 0; d < 3; ++d) {
      DeviceMesh line = mesh[names[d]];
      std::vector<int64_t> expected = expected_line(iota_ranks(n), shape, coordinate, d);
      CHECK(line.shape() == Shape{shape[d]});
      CHECK(line.names() == std::vector<std::string>{names[d]});
      CHECK(std::vector<int64_t>(line.ranks().begin(), line.ranks().end()) == expected);
      CHECK(line.coordinate() == std::vector<int64_t>{coordinate[d]});
      CHECK(same_group(line.comm(0), mesh.comm(int64_t(d))));
      CHECK(gather_over(line.comm(0), world_rank()) == expected);
    }

    // The (a, c) plane through this rank: row-major over (a, c) with b fixed.
    DeviceMesh plane = mesh[{"a", "c"}];
    std::vector<int> expected_plane;
    for (int64_t i = 0; i < shape[0]; ++i) {
      for (int64_t k = 0; k < shape[2]; ++k) {
        expected_plane.push_back(int(expected_flat(shape, {i, coordinate[1], k})));
      }
    }
    CHECK(plane.shape() == Shape{shape[0], shape[2]});
    CHECK(plane.ranks() == expected_plane);
    CHECK(plane.coordinate() == std::vector<int64_t>{coordinate[0], coordinate[2]});
    CHECK(plane.rank_at(plane.coordinate()) == world_rank());
    CHECK(same_group(plane.comm("a"), mesh.comm("a")));
    CHECK(same_group(plane.comm("c"), mesh.comm("c")));

    // Naming the dims in another order transposes the sub-mesh.
    DeviceMesh transposed = mesh[{"c", "a"}];
    CHECK(transposed.shape() == Shape{shape[2], shape[0]});
    CHECK(transposed.coordinate() == std::vector<int64_t>{coordinate[2], coordinate[0]});
    for (int64_t i = 0; i < shape[0]; ++i) {
      for (int64_t k = 0; k < shape[2]; ++k) CHECK(transposed.rank_at({k, i}) == plane.rank_at({i, k}));
    }

    DeviceMesh all = mesh[names];
    CHECK(all.ranks() == iota_ranks(n));
    for (size_t d = 0; d < 3; ++d) CHECK(same_group(all.comm(int64_t(d)), mesh.comm(int64_t(d))));
  }
}

TEST_CASE("copies of a mesh share its communicators", "[mesh]") {
  const int n = world_size();
  DeviceMesh mesh = DeviceMesh::from_world({n, 1}, {"dp", "tp"});
  DeviceMesh copy = mesh;
  CHECK(same_group(copy.comm(0), mesh.comm("dp")));
  CHECK(same_group(copy.comm(1), mesh.comm("tp")));
  CHECK(same_group(mesh.comm("dp"), mesh.comm(0)));
  CHECK_FALSE(same_group(mesh.comm("dp"), mesh.comm("tp")));
}

TEST_CASE("flatten merges adjacent dims into one communicator", "[mesh]") {
  const int n = world_size();
  const std::vector<std::string> names{"a", "b", "c"};
  for (const Shape& shape : factorisations(n, 3)) {
    DeviceMesh mesh = DeviceMesh::from_world(shape, names);
    const std::vector<int64_t> coordinate = expected_coordinate(shape, world_rank());
    INFO(mesh.to_string());

    DeviceMesh bc = mesh.flatten({"b", "c"}, "bc");
    const Shape merged_shape{shape[0], shape[1] * shape[2]};
    check_mesh(bc, iota_ranks(n), merged_shape, {"a", "bc"});
    CHECK(same_group(bc.comm("a"), mesh.comm("a")));
    CHECK(bc.coordinate()[1] == coordinate[1] * shape[2] + coordinate[2]);

    DeviceMesh ab = mesh.flatten({"a", "b"}, "ab");
    check_mesh(ab, iota_ranks(n), {shape[0] * shape[1], shape[2]}, {"ab", "c"});
    CHECK(same_group(ab.comm("c"), mesh.comm("c")));

    check_mesh(mesh.flatten(names, "world"), iota_ranks(n), {n}, {"world"});

    // A single dim is only renamed and keeps its communicator.
    DeviceMesh renamed = mesh.flatten({"b"}, "pp");
    CHECK(renamed.names() == std::vector<std::string>{"a", "pp", "c"});
    CHECK(same_group(renamed.comm("pp"), mesh.comm("b")));

    // Flattening a slice merges within this rank's slice only.
    DeviceMesh slice_flat = mesh[{"b", "c"}].flatten({"b", "c"}, "bc");
    std::vector<int64_t> plane;
    for (int64_t j = 0; j < shape[1]; ++j) {
      for (int64_t k = 0; k < shape[2]; ++k) plane.push_back(expected_flat(shape, {coordinate[0], j, k}));
    }
    CHECK(slice_flat.shape() == Shape{shape[1] * shape[2]});
    CHECK(gather_over(slice_flat.comm(0), world_rank()) == plane);
  }
}

// Meshes over part of the world: members communicate, others are not members. One test case
// each, so a case that needs more ranks skips alone (a return inside a SECTION would also
// hide the SECTIONs after it from Catch).
TEST_CASE("meshes over part of the world: from_range over all ranks but the first", "[mesh]") {
  const int n = world_size();
  if (n < 2) SKIP_TEST("from_range over all ranks but the first needs 2 ranks");
  DeviceMesh mesh = DeviceMesh::from_range(world(), 1, {n - 1}, {"x"});
  check_mesh(mesh, iota_ranks(n - 1, 1), {n - 1}, {"x"});
  CHECK(mesh.is_member() == (world_rank() != 0));
}

TEST_CASE("meshes over part of the world: from_ranks over the odd ranks, listed in reverse", "[mesh]") {
  const int n = world_size();
  std::vector<int> odd;
  for (int r = n - 1; r >= 0; --r) {
    if (r % 2 == 1) odd.push_back(r);
  }
  if (odd.empty()) SKIP_TEST("from_ranks over the odd ranks needs 2 ranks");
  const int64_t count = int64_t(odd.size());
  DeviceMesh mesh = DeviceMesh::from_ranks(world(), odd, {count}, {"x"});
  check_mesh(mesh, odd, {count}, {"x"});
  CHECK(mesh.is_member() == (world_rank() % 2 == 1));
  if (!mesh.is_member()) {
    CHECK_THROWS_AS(mesh.local_rank("x"), MeshError);
    CHECK(mesh["x"].is_member() == false);
    CHECK(mesh["x"].coordinate().empty());
  }
  // Flattening is collective over the parent: non-members take part and stay non-members.
  DeviceMesh grid = DeviceMesh::from_ranks(world(), odd, {1, count}, {"a", "b"});
  check_mesh(grid.flatten({"a", "b"}, "ab"), odd, {count}, {"ab"});
}

TEST_CASE("meshes over part of the world: from_ranks 2x2 in reverse order, with a non-member flatten", "[mesh]") {
  const int n = world_size();
  if (n != 4) SKIP_TEST("from_ranks 2x2 needs 4 ranks");
  const std::vector<int> reversed{3, 2, 1, 0};
  DeviceMesh mesh = DeviceMesh::from_ranks(world(), reversed, {2, 2}, {"dp", "tp"});
  check_mesh(mesh, reversed, {2, 2}, {"dp", "tp"});
  check_mesh(mesh.flatten({"dp", "tp"}, "all"), reversed, {4}, {"all"});
}

TEST_CASE("meshes over part of the world: 2-D mesh over {1, 3}, members and non-members flattening", "[mesh]") {
  const int n = world_size();
  if (n != 4) SKIP_TEST("a mesh over ranks {1, 3} of 4 needs 4 ranks");
  DeviceMesh mesh = DeviceMesh::from_ranks(world(), {1, 3}, {1, 2}, {"dp", "tp"});
  check_mesh(mesh, {1, 3}, {1, 2}, {"dp", "tp"});
  check_mesh(mesh.flatten({"dp", "tp"}, "all"), {1, 3}, {2}, {"all"});
}

TEST_CASE("meshes over part of the world: ranks() are ranks of the parent communicator", "[mesh]") {
  const int n = world_size();
  Communicator half = world().split(world_rank() % 2, world_rank());
  DeviceMesh mesh = DeviceMesh::from_range(half, 0, {half.size()}, {"x"});
  std::vector<int64_t> same_parity;
  for (int r = world_rank() % 2; r < n; r += 2) same_parity.push_back(r);
  CHECK(mesh.ranks() == iota_ranks(half.size()));
  CHECK(mesh.coordinate() == std::vector<int64_t>{half.rank()});
  CHECK(gather_over(mesh.comm("x"), world_rank()) == same_parity);
}

TEST_CASE("bad input raises MeshError naming the value, on every rank", "[mesh][errors]") {
  const int n = world_size();

  SECTION("shape not matching the world") {
    CHECK_THROWS_WITH(DeviceMesh::from_world({n + 1}),
                      Contains(fmt::format("holds {} ranks", n + 1)) && Contains(fmt::format("world has {}", n)));
    CHECK_THROWS_AS(DeviceMesh::from_world({n, 2}), MeshError);
    CHECK_THROWS_AS(DeviceMesh::from_world({}), MeshError);
  }
  SECTION("zero-size and negative dims") {
    CHECK_THROWS_AS(DeviceMesh::from_world({0}), MeshError);
    CHECK_THROWS_WITH(DeviceMesh::from_world({n, 0}), Contains("size 0 at dim 1"));
    CHECK_THROWS_WITH(DeviceMesh::from_world({-1, -n}), Contains("size -1 at dim 0"));
    CHECK_THROWS_WITH(DeviceMesh::from_ranks(world(), {}, {0}), Contains("size 0 at dim 0"));
  }
  SECTION("names: wrong count, duplicates, empty among named") {
    CHECK_THROWS_WITH(DeviceMesh::from_world({n}, {"a", "b"}), Contains("has 2 entries; expected 1"));
    CHECK_THROWS_WITH(DeviceMesh::from_world({1, n}, {"x", "x"}), Contains("\"x\" twice"));
    CHECK_THROWS_WITH(DeviceMesh::from_world({1, n}, {"x", ""}), Contains("empty name at dim 1"));
  }
  SECTION("unknown names") {
    DeviceMesh mesh = DeviceMesh::from_world({1, n}, {"dp", "tp"});
    CHECK_THROWS_WITH(mesh["nope"], Contains("unknown dim name \"nope\""));
    CHECK_THROWS_AS((mesh[{"dp", "nope"}]), MeshError);
    CHECK_THROWS_AS(mesh.size("nope"), MeshError);
    CHECK_THROWS_AS(mesh.local_rank("nope"), MeshError);
    CHECK_THROWS_AS(mesh.comm("nope"), MeshError);
    CHECK_THROWS_AS(mesh.dim_index("nope"), MeshError);
    CHECK_THROWS_AS(mesh.flatten({"nope"}, "x"), MeshError);
    CHECK_THROWS_AS(DeviceMesh::from_world({n})["x"], MeshError);  // an unnamed mesh has no names
  }
  SECTION("duplicate names in a slice, bad flatten") {
    DeviceMesh mesh = DeviceMesh::from_world({1, n, 1}, {"a", "b", "c"});
    CHECK_THROWS_WITH((mesh[{"a", "a"}]), Contains("\"a\" twice"));
    CHECK_THROWS_AS(mesh[std::vector<std::string>{}], MeshError);
    CHECK_THROWS_WITH(mesh.flatten({"a", "c"}, "ac"), Contains("not adjacent"));
    CHECK_THROWS_WITH(mesh.flatten({"b", "a"}, "ba"), Contains("not adjacent"));
    CHECK_THROWS_WITH(mesh.flatten({"a", "b"}, "c"), Contains("\"c\" is already the name of dim 2"));
    CHECK_THROWS_AS(mesh.flatten({"a", "b"}, ""), MeshError);
  }
  SECTION("bad rank lists") {
    CHECK_THROWS_WITH(DeviceMesh::from_ranks(world(), {n}, {1}), Contains(fmt::format("contains {}", n)));
    CHECK_THROWS_WITH(DeviceMesh::from_ranks(world(), {-1}, {1}), Contains("contains -1"));
    CHECK_THROWS_WITH(DeviceMesh::from_ranks(world(), {0, 0}, {2}), Contains("rank 0 twice"));
    CHECK_THROWS_WITH(DeviceMesh::from_ranks(world(), {0}, {2}), Contains("has 1 entries but shape [2] holds 2"));
    CHECK_THROWS_AS(DeviceMesh::from_ranks(Communicator(), {0}, {1}), MeshError);
  }
  SECTION("bad ranges") {
    CHECK_THROWS_WITH(DeviceMesh::from_range(world(), -1, {1}), Contains("first -1"));
    CHECK_THROWS_WITH(DeviceMesh::from_range(world(), 1, {n}), Contains(fmt::format("[1, {})", n + 1)));
  }
  SECTION("dims and coordinates out of range, empty mesh") {
    DeviceMesh mesh = DeviceMesh::from_world({n, 1}, {"dp", "tp"});
    CHECK_THROWS_WITH(mesh.size(2), Contains("dim 2 is out of range"));
    CHECK_THROWS_AS(mesh.comm(-1), MeshError);
    CHECK_THROWS_AS(mesh.local_rank(5), MeshError);
    CHECK_THROWS_WITH(mesh.rank_at({0}), Contains("has 1 entries; expected 2"));
    CHECK_THROWS_WITH(mesh.rank_at({n, 0}), Contains(fmt::format("has {} at dim 0", n)));
    CHECK_THROWS_AS(DeviceMesh().ndim(), MeshError);
    CHECK_FALSE(DeviceMesh().is_member());
  }
  SECTION("every message names the rank") {
    CHECK_THROWS_WITH(DeviceMesh::from_world({0}), Contains(fmt::format("[rank {}]", world_rank())));
  }
}

TEST_CASE("coordinate_of inverts rank_at", "[mesh]") {
  const int n = world_size();
  DeviceMesh mesh = DeviceMesh::from_world({n});
  for (int64_t i = 0; i < n; ++i) {
    CHECK(mesh.coordinate_of(int(i)) == std::vector<int64_t>{i});
    CHECK(mesh.rank_at(mesh.coordinate_of(int(i))) == i);
  }
  CHECK_THROWS_AS(mesh.coordinate_of(n), MeshError);
  if (n == 4) {
    DeviceMesh square = DeviceMesh::from_world({2, 2});
    CHECK(square.coordinate_of(2) == std::vector<int64_t>{1, 0});
  }
}
