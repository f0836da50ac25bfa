// DTensor::distribute: scatter a tensor held by one rank so every mesh rank gets its block.
//
// The data travels one mesh dim at a time, outward from the source: stage m runs on the lines
// along mesh dim m that already hold data (ranks whose coordinates equal the source's on every
// dim after m), scattering for Shard and broadcasting otherwise. A rank therefore only ever
// allocates the region it forwards, at most 1/k of the tensor for k ranks on the first dim.
#include "dtensor/dtensor.hpp"

#include <algorithm>

namespace dtensor {

namespace {

// Whether this rank is on a line along mesh dim m that holds data at stage m.
bool takes_part(const DeviceMesh& mesh, const std::vector<int64_t>& src, int64_t m) {
  for (int64_t k = m + 1; k < mesh.ndim(); ++k) {
    if (mesh.coordinate()[size_t(k)] != src[size_t(k)]) return false;
  }
  return true;
}

// The region this rank holds after the stages of mesh dims < upto.
Shape region_shape(const Shape& global, const DeviceMesh& mesh, const Placements& placements, int64_t upto) {
  Placements applied = placements;
  for (size_t m = size_t(upto); m < applied.size(); ++m) applied[m] = Replicate();
  return local_block(global, mesh.shape(), mesh.coordinate(), applied).shape;
}

// Broadcasts a small i64 vector from the source along every mesh dim.
Tensor broadcast_from(const DeviceMesh& mesh, const std::vector<int64_t>& src, Tensor values) {
  for (int64_t m = 0; m < mesh.ndim(); ++m) {
    if (takes_part(mesh, src, m)) mesh.comm(m).broadcast(values, int(src[size_t(m)]));
  }
  return values;
}

struct SharedMetadata {
  Shape shape;
  DType dtype;
  Device device;  // the source tensor's
};

// Shape, dtype and device travel first so that other ranks can allocate their blocks. The
// source's tensor is checked after they have travelled (its faults encoded in them), so that every
// rank raises the source's error rather than waiting for a broadcast the source never starts.
SharedMetadata share_metadata(const Tensor& full, const DeviceMesh& mesh, const std::vector<int64_t>& src,
                              bool is_source) {
  constexpr int64_t kMaxDims = 16, kUndefined = -1;
  constexpr size_t kShapeAt = 4;  // dtype, ndim, device type, device index, then the shape
  std::vector<int64_t> header(kMaxDims + kShapeAt, 0);
  if (is_source) {
    header[1] = full.defined() ? full.dim() : kUndefined;
    if (full.defined() && full.dim() <= kMaxDims) {
      header[0] = int64_t(full.dtype());
      header[2] = int64_t(full.device().type);
      header[3] = full.device().index;
      std::copy(full.shape().begin(), full.shape().end(), header.begin() + kShapeAt);
    }
  }
  auto shared = broadcast_from(mesh, src, Tensor::from_vector(header, {int64_t(header.size())})).to_vector<int64_t>();
  check<ValueError>(shared[1] != kUndefined, "distribute", "full is an undefined tensor on the source rank");
  check<ShapeError>(shared[1] <= kMaxDims, "distribute", "full has {} dims on the source rank, at most {} supported",
                    shared[1], kMaxDims);
  return {Shape(shared.begin() + kShapeAt, shared.begin() + kShapeAt + shared[1]), DType(shared[0]),
          Device{DeviceType(shared[2]), int(shared[3])}};
}

// Elements of each piece when a region of `shape` is cut along d into `parts`.
std::vector<int64_t> piece_counts(const Shape& shape, int64_t d, int64_t parts) {
  std::vector<int64_t> counts = chunk_sizes(shape[size_t(d)], parts);
  for (auto& c : counts) c *= shape_numel(shape) / std::max<int64_t>(shape[size_t(d)], 1);
  return counts;
}

// Root side of a Shard stage: the pieces along d, packed one after another.
Tensor pack_pieces(const Tensor& region, int64_t d, int64_t parts) {
  Tensor packed = Tensor::empty({region.numel()}, region.dtype(), region.device());
  int64_t offset = 0;
  for (int64_t r = 0; r < parts; ++r) {
    ChunkSpan span = chunk_span(region.size(d), parts, r);
    Tensor piece = region.narrow(d, span.offset, span.size);
    packed.narrow(0, offset, piece.numel()).view(piece.shape()).copy_from(piece);
    offset += piece.numel();
  }
  return packed;
}

// `shape` is the region the line's root holds before the stage (the same on every rank of the
// line: only mesh dims before m have cut it), `next_shape` this rank's piece after it.
Tensor run_stage(const Tensor& region, const DeviceMesh& mesh, const Placement& p, int64_t m, int root,
                 const Shape& shape, const Shape& next_shape, DType dtype, Device device) {
  Communicator comm = mesh.comm(m);
  bool is_root = comm.rank() == root;
  if (!p.is_shard()) {
    Tensor buffer = is_root ? region.contiguous() : Tensor::empty(next_shape, dtype, device);
    comm.broadcast(buffer, root);
    return buffer;
  }
  std::vector<int64_t> counts = piece_counts(shape, p.dim(), comm.size());
  Tensor packed = is_root ? pack_pieces(region, p.dim(), comm.size()) : Tensor::empty({0}, dtype, device);
  Tensor out = Tensor::empty(next_shape, dtype, device);
  comm.scatter_v(packed, counts, out, root);
  return out;
}

}  // namespace

DTensor DTensor::distribute(const Tensor& full, const DeviceMesh& mesh, const Placements& placements, int src_rank) {
  const char* op = "distribute";
  check<MeshError>(mesh.is_member(), op, "this rank is not in the mesh {}", mesh.to_string());
  check<MeshError>(std::find(mesh.ranks().begin(), mesh.ranks().end(), src_rank) != mesh.ranks().end(), op,
                   "src_rank {} is not a rank of the mesh {}", src_rank, mesh.to_string());
  const auto src = mesh.coordinate_of(src_rank);
  const bool is_source = mesh.coordinate() == src;
  auto [global, dtype, source_device] = share_metadata(full, mesh, src, is_source);
  // Blocks land on the device of the tensor this rank passed, or the source's where it passed
  // none (a one-GPU machine: every rank's blocks on that GPU).
  const Device device = full.defined() ? full.device() : source_device;
  Placements normalized = normalize_placements(placements, int64_t(global.size()), mesh.ndim(), op);
  check<DTypeError>(std::none_of(normalized.begin(), normalized.end(),
                                 [&](const Placement& p) {
                                   return p.is_partial() && p.reduce_op() == ReduceOp::Avg && !is_floating(dtype);
                                 }),
                    op, "placements {}: P(avg) needs a floating dtype, got {}", placements_str(normalized), dtype);

  Tensor region = is_source ? full : Tensor();
  for (int64_t m = 0; m < mesh.ndim(); ++m) {
    if (!takes_part(mesh, src, m)) continue;
    region = run_stage(region, mesh, normalized[size_t(m)], m, int(src[size_t(m)]),
                       region_shape(global, mesh, normalized, m), region_shape(global, mesh, normalized, m + 1), dtype,
                       device);
  }
  for (int64_t m = 0; m < mesh.ndim(); ++m) {
    const Placement& p = normalized[size_t(m)];
    if (p.is_partial() && p.reduce_op() == ReduceOp::Sum && mesh.coordinate()[size_t(m)] != 0) {
      region = Tensor::zeros(region.shape(), dtype, device);
    }
  }
  return DTensor(region, mesh, std::move(normalized), std::move(global));
}

}  // namespace dtensor
