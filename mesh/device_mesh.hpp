// DeviceMesh: an N-D grid of global ranks with optional dim names and one communicator per dim.
//
//   DeviceMesh mesh = DeviceMesh::from_world({2, 2}, {"dp", "tp"});
//   Communicator tp = mesh.comm("tp");      // the ranks that share this rank's dp coordinate
//   DeviceMesh tp_mesh = mesh["tp"];        // 1-D sub-mesh containing this rank, same communicator
//
// Ranks are laid out row-major: mesh coordinate c holds ranks()[c0 * s1 * ... + c1 * ... + ...].
// Building a mesh is collective over the parent communicator (every rank of it must call, even
// ranks that are not in the mesh); the per-dim communicators are created then, once, and shared
// by every copy and slice. A rank outside the mesh sees is_member() == false: coordinate() is
// empty and comm() returns a non-member Communicator on which it must not communicate.
#pragma once

#include "collectives/communicator.hpp"
#include "tensor/tensor.hpp"

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace dtensor {

class DeviceMesh {
 public:
  DeviceMesh() = default;

  // The whole world (shape must multiply to the world size).
  static DeviceMesh from_world(const Shape& shape, const std::vector<std::string>& names = {});
  // The parent's ranks [first, first + prod(shape)).
  static DeviceMesh from_range(const Communicator& parent, int first, const Shape& shape,
                               const std::vector<std::string>& names = {});
  // Explicit ranks of `parent`, listed row-major; each rank at most once.
  static DeviceMesh from_ranks(const Communicator& parent, const std::vector<int>& ranks, const Shape& shape,
                               const std::vector<std::string>& names = {});

  int64_t ndim() const;
  int64_t size() const;  // number of ranks in the mesh
  int64_t size(int64_t dim) const;
  int64_t size(const std::string& name) const;
  const Shape& shape() const;
  const std::vector<std::string>& names() const;     // empty strings for unnamed dims
  int64_t dim_index(const std::string& name) const;  // MeshError for an unknown name
  const std::vector<int>& ranks() const;             // parent ranks, row-major

  bool is_member() const;
  const std::vector<int64_t>& coordinate() const;  // this rank's coordinate (empty if not member)
  int64_t local_rank(int64_t dim) const;           // coordinate()[dim]
  int64_t local_rank(const std::string& name) const;
  int rank_at(const std::vector<int64_t>& coordinate) const;  // parent rank at a coordinate
  // The inverse: the coordinate of a parent rank in the mesh (MeshError if it is not in it).
  std::vector<int64_t> coordinate_of(int rank) const;

  Communicator comm(int64_t dim) const;
  Communicator comm(const std::string& name) const;

  // The sub-mesh over the named dims that contains this rank; reuses the dims' communicators.
  DeviceMesh operator[](const std::string& name) const;
  DeviceMesh operator[](const std::vector<std::string>& names) const;
  // Makes mesh[{"dp", "tp"}] compile: a braced pair of string literals also matches std::string's
  // (first, last) constructor, so without this overload the call is ambiguous.
  DeviceMesh operator[](std::initializer_list<std::string> names) const;
  // Merges the given adjacent dims (in order) into one dim called new_name. Collective over the
  // parent (a new communicator is split for the merged dim); the other dims keep theirs.
  DeviceMesh flatten(const std::vector<std::string>& names, const std::string& new_name) const;

  // Always the CPU: a mesh holds ranks, not devices. CUDA programs place their tensors with
  // local_gpu() (collectives/nccl.hpp: the node-local rank modulo the visible GPUs).
  Device device() const;

  // The same ranks in the same shape (a copy of this handle, or a mesh built alike).
  bool operator==(const DeviceMesh& other) const;

  std::string to_string() const;  // "DeviceMesh([2, 2], dims=(dp, tp), ranks=[0, 1, 2, 3])"

 private:
  struct Impl;
  explicit DeviceMesh(std::shared_ptr<const Impl> impl);
  const Impl& impl(const char* op) const;

  std::shared_ptr<const Impl> impl_;
};

}  // namespace dtensor
