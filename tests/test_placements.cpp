// Sharding arithmetic, checked without ranks: torch.chunk piece sizes, and a brute-force check
// that the blocks of all mesh coordinates tile the global tensor exactly once.
#include <catch2/catch.hpp>

#include "placement_lists.hpp"
#include "placements/sharding.hpp"

#include <functional>
#include <map>

using namespace dtensor;

namespace {

// torch.chunk by hand: hand out consecutive groups of ceil(n / parts) indices.
std::vector<std::vector<int64_t>> reference_chunks(const std::vector<int64_t>& items, int64_t parts) {
  int64_t chunk = (int64_t(items.size()) + parts - 1) / parts;
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(parts));
  for (size_t i = 0; i < items.size(); ++i) out[i / size_t(std::max<int64_t>(chunk, 1))].push_back(items[i]);
  return out;
}

std::vector<std::vector<int64_t>> all_coordinates(const Shape& mesh) {
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> c(mesh.size(), 0);
  std::function<void(size_t)> walk = [&](size_t d) {
    if (d == mesh.size()) return out.push_back(c);
    for (c[d] = 0; c[d] < mesh[d]; ++c[d]) walk(d + 1);
  };
  walk(0);
  return out;
}

}  // namespace

TEST_CASE("chunk_span follows torch.chunk, including empty trailing pieces", "[placements]") {
  CHECK(chunk_sizes(5, 4) == std::vector<int64_t>{2, 2, 1, 0});
  CHECK(chunk_sizes(2, 4) == std::vector<int64_t>{1, 1, 0, 0});
  CHECK(chunk_sizes(0, 3) == std::vector<int64_t>{0, 0, 0});
  for (int64_t n = 0; n <= 13; ++n) {
    for (int64_t parts = 1; parts <= 5; ++parts) {
      std::vector<int64_t> items(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) items[size_t(i)] = i;
      auto expected = reference_chunks(items, parts);
      for (int64_t r = 0; r < parts; ++r) {
        ChunkSpan span = chunk_span(n, parts, r);
        const auto& piece = expected[size_t(r)];
        CHECK(span.size == int64_t(piece.size()));
        if (!piece.empty()) CHECK(span.offset == piece.front());
      }
    }
  }
  CHECK_THROWS_AS(chunk_span(4, 2, 2), ValueError);
}

TEST_CASE("placements print, compare and normalize", "[placements]") {
  CHECK(placements_str({Shard(0), Replicate(), Partial(ReduceOp::Max)}) == "(S(0), R, P(max))");
  CHECK(Shard(-1).normalized(3) == Shard(2));
  CHECK(Shard(1) != Shard(0));
  CHECK(Partial() != Partial(ReduceOp::Avg));
  CHECK(placements_hash({Shard(0), Replicate()}) != placements_hash({Replicate(), Shard(0)}));
  CHECK(normalize_placements({Shard(-2), Replicate()}, 2, 2, "t") == Placements{Shard(0), Replicate()});
  CHECK_THROWS_AS(normalize_placements({Shard(0)}, 2, 2, "t"), ValueError);
  CHECK_THROWS_AS(normalize_placements({Shard(2), Replicate()}, 2, 2, "t"), ShapeError);
  CHECK_THROWS_WITH(normalize_placements({Shard(-3)}, 2, 1, "distribute"),
                    Catch::Contains("[distribute]") && Catch::Contains("S(-3)"));
}

TEST_CASE("blocks of all coordinates tile the global tensor exactly once", "[placements]") {
  const std::vector<Shape> meshes = {{1}, {2}, {3}, {4}, {2, 2}, {1, 4}, {4, 1}, {2, 1, 2}, {3, 2}};
  const std::vector<Shape> shapes = {{0}, {1}, {5}, {8}, {3, 7}, {2, 5, 3}, {4, 0, 2}};
  const std::vector<Placement> choices = {Replicate(), Shard(0), Shard(1), Shard(-1), Partial()};
  int64_t checked = 0;
  for (const Shape& mesh : meshes) {
    for (const Shape& global : shapes) {
      auto lists = testing::placement_lists(mesh.size(), choices, int64_t(global.size()));
      for (const Placements& given : lists) {
        Placements placements = normalize_placements(given, int64_t(global.size()), int64_t(mesh.size()), "test");
        // Count how often each global element is covered by coordinates that differ only in
        // sharded mesh dims (Replicate / Partial dims at 0): must be exactly once.
        std::map<int64_t, int> cover;
        Shape strides = contiguous_strides(global);
        for (const auto& coord : all_coordinates(mesh)) {
          bool representative = true;
          for (size_t m = 0; m < mesh.size(); ++m) representative &= placements[m].is_shard() || coord[m] == 0;
          if (!representative) continue;
          Block b = local_block(global, mesh, coord, placements);
          for (size_t d = 0; d < global.size(); ++d) {
            REQUIRE(b.offset[d] >= 0);
            REQUIRE(b.offset[d] + b.shape[d] <= global[d]);
          }
          for (const auto& idx : all_coordinates(b.shape)) {
            int64_t flat = 0;
            for (size_t d = 0; d < global.size(); ++d) flat += (b.offset[d] + idx[d]) * strides[d];
            cover[flat]++;
          }
        }
        CHECK(int64_t(cover.size()) == shape_numel(global));
        for (const auto& [index, times] : cover) CHECK(times == 1);
        ++checked;
      }
    }
  }
  CHECK(checked > 1000);
}

TEST_CASE("two mesh dims on one tensor dim split left to right", "[placements]") {
  // 10 rows over a 2x3 mesh, both dims sharding dim 0: mesh dim 0 gives [0,5) and [5,10);
  // mesh dim 1 splits each of those 5 rows into 2, 2, 1.
  const Shape mesh = {2, 3};
  const Placements placements = {Shard(0), Shard(0)};
  std::vector<std::pair<int64_t, int64_t>> expected = {{0, 2}, {2, 2}, {4, 1}, {5, 2}, {7, 2}, {9, 1}};
  int i = 0;
  for (const auto& coord : all_coordinates(mesh)) {
    Block b = local_block({10, 4}, mesh, coord, placements);
    CHECK(b.offset[0] == expected[size_t(i)].first);
    CHECK(b.shape[0] == expected[size_t(i)].second);
    CHECK(b.shape[1] == 4);
    ++i;
  }
}
