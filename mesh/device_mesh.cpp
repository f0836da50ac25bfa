// DeviceMesh: argument checks, the row-major layout, and the per-dim communicators.
//
// A mesh is immutable once built; copies, slices and flattened meshes share the Impl's
// communicators through std::shared_ptr, so a dim's communicator is split exactly once.
#include "mesh/device_mesh.hpp"

#include "collectives/runtime.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <numeric>
#include <set>

namespace dtensor {

namespace {

// Row-major position of `coordinate` in `shape` (the last dim varies fastest).
int64_t flat_index(const Shape& shape, const std::vector<int64_t>& coordinate) {
  int64_t index = 0;
  for (size_t d = 0; d < shape.size(); ++d) index = index * shape[d] + coordinate[d];
  return index;
}

std::vector<int64_t> coordinate_at(const Shape& shape, int64_t index) {
  std::vector<int64_t> coordinate(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    coordinate[d] = index % shape[d];
    index /= shape[d];
  }
  return coordinate;
}

std::vector<int> consecutive_ranks(int first, int64_t count) {
  std::vector<int> ranks(static_cast<size_t>(count));
  std::iota(ranks.begin(), ranks.end(), first);
  return ranks;
}

void check_shape(const Shape& shape, const char* op) {
  check<MeshError>(!shape.empty(), op, "shape must have at least one dim, got []");
  for (size_t d = 0; d < shape.size(); ++d) {
    check<MeshError>(shape[d] >= 1, op, "shape {} has size {} at dim {}; every mesh dim needs size >= 1",
                     shape_str(shape), shape[d], d);
  }
}

// No names (an unnamed mesh: one empty string per dim) or one distinct, non-empty name per dim.
std::vector<std::string> checked_names(const std::vector<std::string>& names, size_t ndim, const char* op) {
  if (names.empty()) return std::vector<std::string>(ndim);
  check<MeshError>(names.size() == ndim, op, "names ({}) has {} entries; expected {} (one per dim) or none",
                   fmt::join(names, ", "), names.size(), ndim);
  std::set<std::string> seen;
  for (size_t d = 0; d < ndim; ++d) {
    check<MeshError>(!names[d].empty(), op, "names ({}) has an empty name at dim {}; name every dim or none",
                     fmt::join(names, ", "), d);
    check<MeshError>(seen.insert(names[d]).second, op, "names ({}) lists \"{}\" twice; expected distinct names",
                     fmt::join(names, ", "), names[d]);
  }
  return names;
}

void check_ranks(const std::vector<int>& ranks, const Shape& shape, int parent_size, const char* op) {
  check<MeshError>(int64_t(ranks.size()) == shape_numel(shape), op, "ranks has {} entries but shape {} holds {} ranks",
                   ranks.size(), shape_str(shape), shape_numel(shape));
  std::set<int> seen;
  for (int rank : ranks) {
    check<MeshError>(rank >= 0 && rank < parent_size, op,
                     "ranks contains {}; expected ranks in [0, {}) of the parent communicator", rank, parent_size);
    check<MeshError>(seen.insert(rank).second, op, "ranks lists rank {} twice; expected each rank at most once", rank);
  }
}

void check_parent(const Communicator& parent, const char* op) {
  check<MeshError>(parent.is_member(), op, "parent is a non-member Communicator; expected a group this rank is in");
}

// Replaces the per-dim entries first..last (inclusive) by one entry for the merged dim.
template <typename T>
void replace_dims(std::vector<T>& per_dim, int64_t first, int64_t last, T merged) {
  per_dim.erase(per_dim.begin() + first + 1, per_dim.begin() + last + 1);
  per_dim[size_t(first)] = std::move(merged);
}

// "dims (dp, tp)" for error messages; an unnamed mesh has empty names.
std::string describe_names(const std::vector<std::string>& names) {
  return names.front().empty() ? "no dim names" : fmt::format("dims ({})", fmt::join(names, ", "));
}

}  // namespace

struct DeviceMesh::Impl {
  Communicator parent;  // the group every mesh-building call is collective over
  Shape shape;
  std::vector<std::string> names;   // one per dim, all empty when the mesh is unnamed
  std::vector<int> ranks;           // parent ranks, row-major; empty in a non-member's slice
  std::vector<int64_t> coordinate;  // empty when this rank is not a member
  std::vector<Communicator> comms;  // one per dim; non-member handles when not a member

  bool is_member() const { return !coordinate.empty(); }
  int64_t ndim() const { return int64_t(shape.size()); }
  int rank_at(const std::vector<int64_t>& coord) const { return ranks[size_t(flat_index(shape, coord))]; }

  int64_t dim_of(const std::string& name, const char* op) const {
    for (int64_t d = 0; d < ndim(); ++d) {
      if (!name.empty() && names[d] == name) return d;
    }
    fail<MeshError>(op, "unknown dim name \"{}\"; the mesh has {}", name, describe_names(names));
  }

  // Names -> dims: at least one, each known, none twice.
  std::vector<int64_t> dims_of(const std::vector<std::string>& dim_names, const char* op) const {
    check<MeshError>(!dim_names.empty(), op, "expected at least one dim name, got none");
    std::vector<int64_t> dims;
    for (const std::string& name : dim_names) {
      int64_t d = dim_of(name, op);
      check<MeshError>(std::find(dims.begin(), dims.end(), d) == dims.end(), op, "dim names ({}) list \"{}\" twice",
                       fmt::join(dim_names, ", "), name);
      dims.push_back(d);
    }
    return dims;
  }

  void check_dim(int64_t dim, const char* op) const {
    check<MeshError>(dim >= 0 && dim < ndim(), op, "dim {} is out of range for a {}-D mesh; expected [0, {})", dim,
                     ndim(), ndim());
  }

  // The ranks that differ from this one only along `dims` get one communicator, ordered by their
  // row-major position along those dims. The parent rank at the group's origin serves as the
  // split color: it is unique across the parent even for a sub-mesh, where per-slice line
  // numbers would repeat. Collective over the parent, so non-members take part with color -1.
  Communicator split_group(const std::vector<int64_t>& dims) const {
    if (!is_member()) return parent.split(-1, 0);
    std::vector<int64_t> origin = coordinate;
    Shape group_shape;
    std::vector<int64_t> position;
    for (int64_t d : dims) {
      origin[d] = 0;
      group_shape.push_back(shape[d]);
      position.push_back(coordinate[d]);
    }
    return parent.split(rank_at(origin), int(flat_index(group_shape, position)));
  }
};

DeviceMesh::DeviceMesh(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

const DeviceMesh::Impl& DeviceMesh::impl(const char* op) const {
  check<MeshError>(impl_ != nullptr, op,
                   "the mesh is empty (default-constructed); build one with from_world, from_range or from_ranks");
  return *impl_;
}

// Construction ----------------------------------------------------------------------------------
// from_world and from_range check their own arguments first so that errors name the call the
// user made; from_ranks then builds the mesh.

DeviceMesh DeviceMesh::from_world(const Shape& shape, const std::vector<std::string>& names) {
  const char* op = "DeviceMesh::from_world";
  Communicator world_comm = world();
  check_shape(shape, op);
  checked_names(names, shape.size(), op);
  check<MeshError>(shape_numel(shape) == world_comm.size(), op, "shape {} holds {} ranks but the world has {}",
                   shape_str(shape), shape_numel(shape), world_comm.size());
  return from_ranks(world_comm, consecutive_ranks(0, world_comm.size()), shape, names);
}

DeviceMesh DeviceMesh::from_range(const Communicator& parent, int first, const Shape& shape,
                                  const std::vector<std::string>& names) {
  const char* op = "DeviceMesh::from_range";
  check_parent(parent, op);
  check_shape(shape, op);
  checked_names(names, shape.size(), op);
  int64_t count = shape_numel(shape);
  check<MeshError>(first >= 0 && first + count <= parent.size(), op,
                   "first {} with shape {} covers ranks [{}, {}); expected a range inside [0, {})", first,
                   shape_str(shape), first, first + count, parent.size());
  return from_ranks(parent, consecutive_ranks(first, count), shape, names);
}

DeviceMesh DeviceMesh::from_ranks(const Communicator& parent, const std::vector<int>& ranks, const Shape& shape,
                                  const std::vector<std::string>& names) {
  const char* op = "DeviceMesh::from_ranks";
  check_parent(parent, op);
  check_shape(shape, op);
  check_ranks(ranks, shape, parent.size(), op);

  auto mesh = std::make_shared<Impl>();
  mesh->parent = parent;
  mesh->shape = shape;
  mesh->names = checked_names(names, shape.size(), op);
  mesh->ranks = ranks;
  auto mine = std::find(ranks.begin(), ranks.end(), parent.rank());
  if (mine != ranks.end()) mesh->coordinate = coordinate_at(shape, mine - ranks.begin());
  for (int64_t d = 0; d < mesh->ndim(); ++d) mesh->comms.push_back(mesh->split_group({d}));
  return DeviceMesh(std::move(mesh));
}

// Queries ---------------------------------------------------------------------------------------

int64_t DeviceMesh::ndim() const { return impl("DeviceMesh::ndim").ndim(); }
int64_t DeviceMesh::size() const { return shape_numel(impl("DeviceMesh::size").shape); }

int64_t DeviceMesh::size(int64_t dim) const {
  const Impl& mesh = impl("DeviceMesh::size");
  mesh.check_dim(dim, "DeviceMesh::size");
  return mesh.shape[dim];
}

int64_t DeviceMesh::size(const std::string& name) const {
  const Impl& mesh = impl("DeviceMesh::size");
  return mesh.shape[mesh.dim_of(name, "DeviceMesh::size")];
}

const Shape& DeviceMesh::shape() const { return impl("DeviceMesh::shape").shape; }
const std::vector<std::string>& DeviceMesh::names() const { return impl("DeviceMesh::names").names; }
const std::vector<int>& DeviceMesh::ranks() const { return impl("DeviceMesh::ranks").ranks; }

int64_t DeviceMesh::dim_index(const std::string& name) const {
  return impl("DeviceMesh::dim_index").dim_of(name, "DeviceMesh::dim_index");
}

bool DeviceMesh::is_member() const { return impl_ != nullptr && impl_->is_member(); }
const std::vector<int64_t>& DeviceMesh::coordinate() const { return impl("DeviceMesh::coordinate").coordinate; }

int64_t DeviceMesh::local_rank(int64_t dim) const {
  const char* op = "DeviceMesh::local_rank";
  const Impl& mesh = impl(op);
  mesh.check_dim(dim, op);
  check<MeshError>(mesh.is_member(), op, "this rank is not a member of {}", to_string());
  return mesh.coordinate[dim];
}

int64_t DeviceMesh::local_rank(const std::string& name) const {
  return local_rank(impl("DeviceMesh::local_rank").dim_of(name, "DeviceMesh::local_rank"));
}

std::vector<int64_t> DeviceMesh::coordinate_of(int rank) const {
  const char* op = "DeviceMesh::coordinate_of";
  const Impl& mesh = impl(op);
  auto it = std::find(mesh.ranks.begin(), mesh.ranks.end(), rank);
  check<MeshError>(it != mesh.ranks.end(), op, "rank {} is not in {}", rank, to_string());
  return coordinate_at(mesh.shape, it - mesh.ranks.begin());
}

int DeviceMesh::rank_at(const std::vector<int64_t>& coordinate) const {
  const char* op = "DeviceMesh::rank_at";
  const Impl& mesh = impl(op);
  check<MeshError>(int64_t(coordinate.size()) == mesh.ndim(), op,
                   "coordinate [{}] has {} entries; expected {} for shape {}", fmt::join(coordinate, ", "),
                   coordinate.size(), mesh.ndim(), shape_str(mesh.shape));
  for (int64_t d = 0; d < mesh.ndim(); ++d) {
    check<MeshError>(coordinate[d] >= 0 && coordinate[d] < mesh.shape[d], op,
                     "coordinate [{}] has {} at dim {}; expected [0, {})", fmt::join(coordinate, ", "), coordinate[d],
                     d, mesh.shape[d]);
  }
  check<MeshError>(!mesh.ranks.empty(), op,
                   "this rank is not a member, so its slice of the mesh has no ranks to look up");
  return mesh.rank_at(coordinate);
}

Communicator DeviceMesh::comm(int64_t dim) const {
  const Impl& mesh = impl("DeviceMesh::comm");
  mesh.check_dim(dim, "DeviceMesh::comm");
  return mesh.comms[dim];
}

Communicator DeviceMesh::comm(const std::string& name) const {
  const Impl& mesh = impl("DeviceMesh::comm");
  return mesh.comms[mesh.dim_of(name, "DeviceMesh::comm")];
}

Device DeviceMesh::device() const {
  impl("DeviceMesh::device");
  return Device::cpu();
}

bool DeviceMesh::operator==(const DeviceMesh& other) const {
  if (impl_ == other.impl_) return true;
  if (!impl_ || !other.impl_) return false;
  return impl_->parent.id() == other.impl_->parent.id() && impl_->shape == other.impl_->shape &&
         impl_->ranks == other.impl_->ranks;
}

std::string DeviceMesh::to_string() const {
  if (!impl_) return "DeviceMesh()";
  const Impl& mesh = *impl_;
  const bool named = !mesh.names.front().empty();
  return fmt::format("DeviceMesh({}{}, ranks=[{}]{})", shape_str(mesh.shape),
                     named ? fmt::format(", dims=({})", fmt::join(mesh.names, ", ")) : "", fmt::join(mesh.ranks, ", "),
                     mesh.is_member() ? "" : ", not a member");
}

// Sub-meshes ------------------------------------------------------------------------------------

DeviceMesh DeviceMesh::operator[](const std::string& name) const { return (*this)[std::vector<std::string>{name}]; }

DeviceMesh DeviceMesh::operator[](std::initializer_list<std::string> names) const {
  return (*this)[std::vector<std::string>(names)];
}

// The kept dims take the slice's shape in the order named; the other dims stay at this rank's
// coordinate. A non-member gets a non-member slice: the shape and names, but no ranks.
DeviceMesh DeviceMesh::operator[](const std::vector<std::string>& names) const {
  const char* op = "DeviceMesh::operator[]";
  const Impl& mesh = impl(op);
  std::vector<int64_t> dims = mesh.dims_of(names, op);

  auto slice = std::make_shared<Impl>();
  slice->parent = mesh.parent;
  for (int64_t d : dims) {
    slice->shape.push_back(mesh.shape[d]);
    slice->names.push_back(mesh.names[d]);
    slice->comms.push_back(mesh.comms[d]);
  }
  if (mesh.is_member()) {
    for (int64_t index = 0; index < shape_numel(slice->shape); ++index) {
      std::vector<int64_t> position = coordinate_at(slice->shape, index);
      std::vector<int64_t> coord = mesh.coordinate;
      for (size_t k = 0; k < dims.size(); ++k) coord[dims[k]] = position[k];
      slice->ranks.push_back(mesh.rank_at(coord));
    }
    for (int64_t d : dims) slice->coordinate.push_back(mesh.coordinate[d]);
  }
  return DeviceMesh(std::move(slice));
}

// Merging adjacent dims in order keeps every rank's row-major position, so ranks() is unchanged;
// only the merged dim needs a new communicator.
DeviceMesh DeviceMesh::flatten(const std::vector<std::string>& names, const std::string& new_name) const {
  const char* op = "DeviceMesh::flatten";
  const Impl& mesh = impl(op);
  std::vector<int64_t> dims = mesh.dims_of(names, op);
  const int64_t first = dims.front();
  const int64_t last = dims.back();
  for (size_t k = 0; k < dims.size(); ++k) {
    check<MeshError>(dims[k] == first + int64_t(k), op, "dims ({}) are not adjacent and in mesh order; the mesh has {}",
                     fmt::join(names, ", "), describe_names(mesh.names));
  }
  check<MeshError>(!new_name.empty(), op, "new_name is empty; expected a name for the merged dim");
  for (int64_t d = 0; d < mesh.ndim(); ++d) {
    check<MeshError>((d >= first && d <= last) || mesh.names[d] != new_name, op,
                     "new_name \"{}\" is already the name of dim {}", new_name, d);
  }

  Communicator merged_comm = dims.size() == 1 ? mesh.comms[first] : mesh.split_group(dims);
  Shape group_shape(mesh.shape.begin() + first, mesh.shape.begin() + last + 1);
  auto merged = std::make_shared<Impl>(mesh);
  replace_dims(merged->shape, first, last, shape_numel(group_shape));
  replace_dims(merged->names, first, last, new_name);
  replace_dims(merged->comms, first, last, merged_comm);
  if (mesh.is_member()) {
    std::vector<int64_t> position(mesh.coordinate.begin() + first, mesh.coordinate.begin() + last + 1);
    replace_dims(merged->coordinate, first, last, flat_index(group_shape, position));
  }
  return DeviceMesh(std::move(merged));
}

}  // namespace dtensor
