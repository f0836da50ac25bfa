// The collectives into views (Communicator::all_gather_into_views, all_to_all_views) under
// mpirun -np 1..4: each result is compared with the flat collective on the same data plus a pack
// and unpack written here, for the single-copy path (ViewPath::Auto) and the forced staging path,
// over uneven and empty blocks, blocks along non-leading dims, views that are no 2-D block,
// rows short enough to be staged and blocks of more rows than one process_vm_readv call takes.
// As in test_collectives.cpp, checks after a collective use CHECK so every rank keeps calling.
#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "tests/skip.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <optional>
#include <string>

using namespace dtensor;

namespace {

Communicator& comm() {
  static Communicator world_comm = world();
  return world_comm;
}

constexpr DType kDTypes[] = {DType::F32, DType::BF16, DType::I64};
constexpr ViewPath kPaths[] = {ViewPath::Auto, ViewPath::Staging};
const char* path_name(ViewPath p) {
  return p == ViewPath::Auto ? "auto" : p == ViewPath::SingleCopy ? "single copy" : "staging";
}

// The path Auto must take here: single copy on one node unless disabled, or unknown (nullopt)
// where a Yama ptrace policy may refuse cross-process reads.
std::optional<ViewPath> expected_auto_path(int size) {
  if (size == 1) return ViewPath::SingleCopy;
  const char* env = std::getenv("DTENSOR_SINGLE_COPY");
  if (env != nullptr && std::string(env) == "0") return ViewPath::Staging;
  std::ifstream yama("/proc/sys/kernel/yama/ptrace_scope");
  int scope = 0;
  if (yama >> scope && scope != 0) return std::nullopt;
  return ViewPath::SingleCopy;
}

void check_path(ViewPath asked, ViewPath taken, int size) {
  if (asked == ViewPath::Staging) {
    CHECK(taken == (size == 1 ? ViewPath::SingleCopy : ViewPath::Staging));
  } else if (auto expected = expected_auto_path(size)) {
    CHECK(taken == *expected);
  }
}

// torch.chunk: piece r of n elements over k parts.
std::pair<int64_t, int64_t> chunk(int64_t n, int64_t k, int64_t r) {
  const int64_t size = (n + k - 1) / k;
  const int64_t begin = std::min(n, r * size);
  return {begin, std::min(n, begin + size) - begin};
}

std::vector<Tensor> chunk_views(const Tensor& t, int64_t dim, int parts) {
  std::vector<Tensor> views;
  for (int r = 0; r < parts; ++r) {
    auto [begin, length] = chunk(t.size(dim), parts, r);
    views.push_back(t.narrow(dim, begin, length));
  }
  return views;
}

Shape with_size(Shape shape, int64_t dim, int64_t size) {
  shape[size_t(dim)] = size;
  return shape;
}

// Element i is a small integer that says which rank wrote it (exact in every dtype here).
Tensor tagged(const Shape& shape, DType dtype, int rank) {
  const int64_t n = shape_numel(shape);
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[size_t(i)] = double((rank * 37 + i * 3) % 97);
  return Tensor::from_vector<double>(values, {n}).to(dtype).view(shape);
}

// How a test lays out a tensor in memory: plainly, inside a wider tensor (a border of -1 on
// every side of `dim` the collective must leave alone), or transposed (no 2-D block at all).
enum class Layout { Plain, Bordered, Transposed };

struct Laid {
  Tensor whole;  // everything the collective could touch
  Tensor view;   // the tensor of the given shape
};

Laid lay_out(const Shape& shape, DType dtype, int64_t dim, Layout layout) {
  if (layout == Layout::Plain) {
    Tensor t = Tensor::full(shape, -1, dtype);
    return {t, t};
  }
  if (layout == Layout::Bordered) {
    Tensor t = Tensor::full(with_size(shape, dim, shape[size_t(dim)] + 2), -1, dtype);
    return {t, t.narrow(dim, 1, shape[size_t(dim)])};
  }
  Shape reversed(shape.rbegin(), shape.rend());
  std::vector<int64_t> order;
  for (int64_t d = int64_t(shape.size()); d-- > 0;) order.push_back(d);
  Tensor t = Tensor::full(reversed, -1, dtype);
  return {t, t.permute(order)};
}

Tensor placed(const Tensor& values, Layout layout, int64_t dim) {
  Laid laid = lay_out(values.shape(), values.dtype(), dim, layout);
  laid.view.copy_from(values);
  return laid.view;
}

std::vector<double> values_of(const Tensor& t) { return t.to_vector<double>(); }

// The plain way: pack, the flat collective, unpack.
void flat_all_gather(const Tensor& in, const std::vector<Tensor>& out_blocks) {
  std::vector<int64_t> counts;
  for (const Tensor& b : out_blocks) counts.push_back(b.numel());
  Tensor flat = Tensor::empty({std::accumulate(counts.begin(), counts.end(), int64_t(0))}, in.dtype());
  comm().all_gather_v(in.contiguous().view({in.numel()}), flat, counts);
  int64_t offset = 0;
  for (const Tensor& b : out_blocks) {
    b.copy_from(flat.narrow(0, offset, b.numel()).view(b.shape()));
    offset += b.numel();
  }
}

void flat_all_to_all(const std::vector<Tensor>& in_blocks, const std::vector<Tensor>& out_blocks) {
  std::vector<int64_t> send_counts, recv_counts;
  int64_t send_total = 0, recv_total = 0;
  for (const Tensor& b : in_blocks) send_total += send_counts.emplace_back(b.numel());
  for (const Tensor& b : out_blocks) recv_total += recv_counts.emplace_back(b.numel());
  const DType dtype = in_blocks[0].dtype();
  Tensor packed = Tensor::empty({send_total}, dtype);
  int64_t offset = 0;
  for (const Tensor& b : in_blocks) {
    packed.narrow(0, offset, b.numel()).view(b.shape()).copy_from(b);
    offset += b.numel();
  }
  Tensor flat = Tensor::empty({recv_total}, dtype);
  comm().all_to_all_v(packed, send_counts, flat, recv_counts);
  offset = 0;
  for (const Tensor& b : out_blocks) {
    b.copy_from(flat.narrow(0, offset, b.numel()).view(b.shape()));
    offset += b.numel();
  }
}

struct GatherCase {
  Shape global;
  int64_t dim;  // the dim rank r holds chunk r of
};

std::string describe(const Shape& shape, int64_t dim, DType dtype, ViewPath path, Layout in, Layout out) {
  return fmt::format("shape {} dim {} {} {} in layout {} out layout {}", shape_str(shape), dim, dtype_name(dtype),
                     path_name(path), int(in), int(out));
}

// all_gather of every rank's chunk along `dim` into the matching blocks of the global tensor.
void check_all_gather(const GatherCase& c, DType dtype, ViewPath path, Layout in_layout, Layout out_layout) {
  Communicator& cm = comm();
  const Shape local = with_size(c.global, c.dim, chunk(c.global[size_t(c.dim)], cm.size(), cm.rank()).second);
  Tensor in = placed(tagged(local, dtype, cm.rank()), in_layout, c.dim);
  Laid out = lay_out(c.global, dtype, c.dim, out_layout);
  Laid expected = lay_out(c.global, dtype, c.dim, out_layout);
  ViewPath taken{};
  cm.all_gather_into_views(in, chunk_views(out.view, c.dim, cm.size()), {.path = path, .taken = &taken});
  flat_all_gather(in, chunk_views(expected.view, c.dim, cm.size()));
  INFO(describe(c.global, c.dim, dtype, path, in_layout, out_layout));
  CHECK(values_of(out.whole) == values_of(expected.whole));
  check_path(path, taken, cm.size());
}

struct AllToAllCase {
  Shape global;
  int64_t from;  // this rank holds chunk `rank` along `from` before...
  int64_t to;    // ...and along `to` after
};

void check_all_to_all(const AllToAllCase& c, DType dtype, ViewPath path, Layout in_layout, Layout out_layout) {
  Communicator& cm = comm();
  const int n = cm.size();
  const Shape before = with_size(c.global, c.from, chunk(c.global[size_t(c.from)], n, cm.rank()).second);
  const Shape after = with_size(c.global, c.to, chunk(c.global[size_t(c.to)], n, cm.rank()).second);
  Tensor in = placed(tagged(before, dtype, cm.rank()), in_layout, c.to);
  Laid out = lay_out(after, dtype, c.from, out_layout);
  Laid expected = lay_out(after, dtype, c.from, out_layout);
  ViewPath taken{};
  cm.all_to_all_views(chunk_views(in, c.to, n), chunk_views(out.view, c.from, n), {.path = path, .taken = &taken});
  flat_all_to_all(chunk_views(in, c.to, n), chunk_views(expected.view, c.from, n));
  INFO(describe(c.global, c.from, dtype, path, in_layout, out_layout) << " to dim " << c.to);
  CHECK(values_of(out.whole) == values_of(expected.whole));
  check_path(path, taken, n);
}

// Sizes per rank count: divisible, uneven, fewer than the ranks (empty blocks); rows of 8 and
// of 300 elements (short rows staged, longer receiving rows moved directly); a 3-D tensor split
// in its middle and last dims.
std::vector<GatherCase> gather_cases(int n) {
  return {{{16, 8 * n}, 1},   {{9, 2 * n + 1}, 1},    {{5, std::max(1, n - 1)}, 1},
          {{12, 300 * n}, 1}, {{3, 4 * n + 1, 5}, 1}, {{4, 3, 2 * n + 3}, 2},
          {{7 * n, 6}, 0}};
}

std::vector<AllToAllCase> all_to_all_cases(int n) {
  return {{{8 * n, 8 * n}, 0, 1},       {{8 * n, 8 * n}, 1, 0},          {{2 * n + 1, 3 * n - 1}, 0, 1},
          {{n + 1, 300 * n + 7}, 0, 1}, {{std::max(1, n - 1), 5}, 0, 1}, {{2, 3 * n + 1, 2 * n}, 1, 2},
          {{3, 2 * n, 4 * n - 1}, 2, 1}};
}

constexpr Layout kLayouts[] = {Layout::Plain, Layout::Bordered, Layout::Transposed};

}  // namespace

TEST_CASE("all_gather into views equals the flat all_gather_v plus an unpack", "[views][all_gather]") {
  for (const GatherCase& c : gather_cases(comm().size()))
    for (DType dtype : kDTypes)
      for (ViewPath path : kPaths)
        for (Layout out : kLayouts) check_all_gather(c, dtype, path, Layout::Plain, out);
  SECTION("a strided or transposed in") {
    for (Layout in : {Layout::Bordered, Layout::Transposed})
      for (ViewPath path : kPaths)
        check_all_gather({{6, 3 * comm().size() + 1}, 1}, DType::F32, path, in, Layout::Plain);
  }
}

TEST_CASE("all_to_all between views equals the flat all_to_all_v plus a pack and an unpack", "[views][all_to_all]") {
  for (const AllToAllCase& c : all_to_all_cases(comm().size()))
    for (DType dtype : kDTypes)
      for (ViewPath path : kPaths)
        for (Layout in : kLayouts) check_all_to_all(c, dtype, path, in, Layout::Plain);
  SECTION("receiving into bordered and transposed views") {
    for (Layout out : {Layout::Bordered, Layout::Transposed})
      for (ViewPath path : kPaths)
        check_all_to_all({{8, 6 * comm().size() + 1}, 0, 1}, DType::I64, path, Layout::Plain, out);
  }
}

// Rows of 4 KiB and more are moved without staging on either side; 1030 or 1100 of them need
// two batches of iovecs. Gathering pulls into strided rows; all_to_all from column blocks pushes
// from strided rows (process_vm_writev), into column blocks pulls.
TEST_CASE("blocks of more rows than one process_vm_readv call takes (IOV_MAX)", "[views]") {
  const int n = comm().size();
  for (ViewPath path : kPaths) {
    check_all_gather({{2100, 260 * n}, 1}, DType::F32, path, Layout::Plain, Layout::Plain);
    check_all_gather({{1100, 1030 * n}, 1}, DType::F32, path, Layout::Plain, Layout::Plain);
    check_all_to_all({{1030 * n, 1024 * n}, 0, 1}, DType::F32, path, Layout::Plain, Layout::Plain);
    check_all_to_all({{1024 * n, 1100 * n}, 1, 0}, DType::F32, path, Layout::Plain, Layout::Plain);
  }
}

TEST_CASE("async calls complete with the same result", "[views][async]") {
  Communicator& cm = comm();
  const int n = cm.size();
  for (ViewPath path : kPaths) {
    Tensor in = tagged({5, 3}, DType::F32, cm.rank());
    Tensor out = Tensor::zeros({5, 3 * n}, DType::F32);
    Tensor expected = Tensor::zeros({5, 3 * n}, DType::F32);
    ViewPath taken{};
    Work work =
        cm.all_gather_into_views(in, chunk_views(out, 1, n), {.path = path, .mode = CommMode::Async, .taken = &taken});
    work.wait();
    flat_all_gather(in, chunk_views(expected, 1, n));
    CHECK(values_of(out) == values_of(expected));
    check_path(path, taken, n);

    Tensor rows = tagged({4, 2 * n}, DType::I64, cm.rank());
    Tensor cols = Tensor::zeros({4 * n, 2}, DType::I64);
    Tensor cols_expected = Tensor::zeros({4 * n, 2}, DType::I64);
    Work a2a =
        cm.all_to_all_views(chunk_views(rows, 1, n), chunk_views(cols, 0, n), {.path = path, .mode = CommMode::Async});
    while (!a2a.test()) {
    }
    flat_all_to_all(chunk_views(rows, 1, n), chunk_views(cols_expected, 0, n));
    CHECK(values_of(cols) == values_of(cols_expected));
  }
}

TEST_CASE("views calls count the flat collective's kind and bytes", "[views][stats]") {
  Communicator& cm = comm();
  const int n = cm.size();
  Tensor in = tagged({4, 3}, DType::BF16, cm.rank());
  Tensor out = Tensor::zeros({4, 3 * n}, DType::BF16);
  for (ViewPath path : kPaths) {
    CommRecorder rec;
    cm.all_gather_into_views(in, chunk_views(out, 1, n), {.path = path});
    flat_all_gather(in, chunk_views(out, 1, n));
    cm.all_to_all_views(chunk_views(out, 1, n), chunk_views(Tensor::zeros({4, 3 * n}, DType::BF16), 1, n),
                        {.path = path});
    REQUIRE(rec.calls().size() == 3);
    CHECK(rec.calls()[0].kind == CollectiveKind::AllGather);
    CHECK(rec.calls()[0].bytes == rec.calls()[1].bytes);
    CHECK(rec.calls()[0].bytes == uint64_t(4 * 3 * n * 2));
    CHECK(rec.calls()[2].kind == CollectiveKind::AllToAll);
    CHECK(rec.calls()[2].bytes == uint64_t(4 * 3 * n * 2));
  }
}

TEST_CASE("bad views get typed errors on every rank", "[views][errors]") {
  Communicator& cm = comm();
  const int n = cm.size();
  Tensor in = Tensor::zeros({2, 3}, DType::F32);
  Tensor out = Tensor::zeros({2, 3 * n}, DType::F32);
  std::vector<Tensor> blocks = chunk_views(out, 1, n);
  std::vector<Tensor> too_few(blocks.begin(), blocks.end() - 1);
  CHECK_THROWS_AS(cm.all_gather_into_views(in, too_few), ValueError);
  CHECK_THROWS_AS(cm.all_gather_into_views(in.to(DType::F64), blocks), DTypeError);
  CHECK_THROWS_AS(cm.all_gather_into_views(Tensor::zeros({2, 4}, DType::F32), blocks), ShapeError);
  // in overlapping the receiving views (it is one of them): a peer could read it while it changes
  CHECK_THROWS_AS(cm.all_gather_into_views(blocks[size_t(cm.rank())], blocks), ValueError);
  CHECK_THROWS_AS(cm.all_to_all_views(blocks, blocks), ValueError);
  cm.all_gather_into_views(in, blocks);  // nothing above reached the backend: the group still works
}

TEST_CASE("blocks whose sizes disagree across ranks are a CommError on every rank, not a silent copy",
          "[views][errors]") {
  Communicator& cm = comm();
  const int n = cm.size();
  if (n == 1 || expected_auto_path(n) != ViewPath::SingleCopy) SKIP_TEST("only the single-copy path can tell");
  // Every rank expects one more column from each peer than the peer sends.
  Tensor in = Tensor::zeros({3, 2}, DType::F32);
  Tensor out = Tensor::zeros({3, 3 * n}, DType::F32);
  std::vector<Tensor> blocks;
  for (int r = 0; r < n; ++r) blocks.push_back(out.narrow(1, 3 * r, r == cm.rank() ? 2 : 3));
  CHECK_THROWS_AS(cm.all_gather_into_views(in, blocks), CommError);
  cm.all_gather_into_views(in, chunk_views(Tensor::zeros({3, 2 * n}, DType::F32), 1, n));  // still usable
}
