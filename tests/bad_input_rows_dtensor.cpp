// Bad-input rows: DTensor construction and redistribute (shapes, dtypes, meshes, ranks that
// disagree), and the DTensor ops with mismatched operands.
#include "bad_input_rows.hpp"

#include "collectives/runtime.hpp"
#include "dtensor/dtensor.hpp"
#include "dtensor/ops.hpp"

using namespace dtensor;

namespace bad_input {

namespace {

DTensor replicated(const Shape& shape, DType dtype, const DeviceMesh& mesh) {
  return DTensor::from_local(Tensor::zeros(shape, dtype), mesh, Placements(size_t(mesh.ndim()), Replicate()));
}

// Rows whose bad input is one rank disagreeing with the others: every rank must raise, the
// agreeing ones too. They need two ranks.
std::vector<Row> disagreeing_rank_rows(const DeviceMesh& line) {
  const bool last = line.coordinate()[0] == line.size() - 1;
  const int64_t w = line.size();
  return {
      row<DTypeError>("from_local(check): one rank's dtype differs", "dtype",
                      [=] {
                        DTensor::from_local(Tensor::zeros({2, 3}, last ? DType::F64 : DType::F32), line, {Shard(0)},
                                            std::nullopt, true);
                      }),
      row<ShapeError>("from_local(check): one rank's number of dims differs", "number of dims",
                      [=] {
                        DTensor::from_local(Tensor::zeros(last ? Shape{2, 3, 1} : Shape{2, 3}, DType::F32), line,
                                            {Replicate()}, std::nullopt, true);
                      }),
      row<ShapeError>(
          "from_local(check): one rank's block is not its piece", "local shape",
          [=] {
            DTensor::from_local(Tensor::zeros({last ? 3 : 2, 3}, DType::F32), line, {Shard(0)}, Shape{2 * w, 3}, true);
          }),
      row<ShapeError>("from_local(check): replicated blocks of different sizes", "local shape",
                      [=] {
                        DTensor::from_local(Tensor::zeros({last ? 3 : 2}, DType::F32), line, {Replicate()},
                                            std::nullopt, true);
                      }),
      row<ValueError>("distribute: the source passes no tensor, the others do", "full",
                      [=] {
                        DTensor::distribute(line.coordinate()[0] == 0 ? Tensor() : Tensor::zeros({2}, DType::F32), line,
                                            {Shard(0)});
                      }),
  };
}

}  // namespace

std::vector<Row> dtensor_rows() {
  const int w = world().size();
  const DeviceMesh line = DeviceMesh::from_world({w});
  const DeviceMesh other_line = DeviceMesh::from_world({w, 1});
  const Tensor block = Tensor::zeros({2, 3}, DType::F32);
  std::vector<Row> rows = {
      row<ValueError>("from_local: undefined local tensor", "local",
                      [=] { DTensor::from_local(Tensor(), line, {Replicate()}); }),
      row<ShapeError>("from_local: global shape with another number of dims", "global shape",
                      [=] {
                        DTensor::from_local(block, line, {Replicate()}, Shape{2, 3, 4});
                      }),
      row<ShapeError>("from_local: global shape not matching the block", "global shape",
                      [=] {
                        DTensor::from_local(block, line, {Shard(0)}, Shape{2 * w + 1, 4});
                      }),
      row<ShapeError>("from_local: negative global size", "global shape",
                      [=] {
                        DTensor::from_local(block, line, {Replicate()}, Shape{-2, 3});
                      }),
      row<MeshError>("from_local: empty mesh", "mesh", [=] { DTensor::from_local(block, DeviceMesh(), {}); }),
      row<ValueError>("distribute: undefined tensor on every rank", "full",
                      [=] { DTensor::distribute(Tensor(), line, {Replicate()}); }),
      row<MeshError>("distribute: src_rank past the mesh", "src_rank",
                     [=] { DTensor::distribute(block, line, {Replicate()}, w); }),
      row<MeshError>("distribute: negative src_rank", "src_rank",
                     [=] { DTensor::distribute(block, line, {Replicate()}, -1); }),
      row<ShapeError>("distribute: more dims than supported", "full",
                      [=] { DTensor::distribute(Tensor::zeros(Shape(17, 1), DType::F32), line, {Replicate()}); }),
      row<MeshError>("redistribute: onto another mesh", "mesh",
                     [=] {
                       replicated({2}, DType::F32, line).redistribute(other_line, {Replicate(), Replicate()});
                     }),
      row<MeshError>("full_tensor: default DTensor", "mesh", [] { (void)DTensor().full_tensor(); }),
  };
  if (w >= 2) {
    for (Row& r : disagreeing_rank_rows(line)) rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<Row> op_rows() {
  const int w = world().size();
  const DeviceMesh line = DeviceMesh::from_world({w});
  const DeviceMesh other = DeviceMesh::from_world({w, 1});
  auto r = [line](const Shape& shape, DType dtype = DType::F32) { return replicated(shape, dtype, line); };
  const DTensor m23 = r({2, 3}), m43 = r({4, 3}), v3 = r({3}), v4 = r({4});
  return {
      row<ShapeError>("add: shapes that do not broadcast", "[4, 3]", [=] { add(m23, m43); }),
      row<DTypeError>("add: f32 and f64", "f64",
                      [=] {
                        add(m23, r({2, 3}, DType::F64));
                      }),
      row<MeshError>("add: operands on different meshes", "mesh",
                     [=] {
                       add(m23, replicated({2, 3}, DType::F32, other));
                     }),
      row<ShapeError>("mul: shapes that do not broadcast", "[4]", [=] { mul(m23, v4); }),
      row<DTypeError>("where: values of different dtypes", "dtypes",
                      [=] {
                        where(r({2, 3}, DType::U8), m23, r({2, 3}, DType::F64));
                      }),
      row<ShapeError>("matmul: inner dims differ", "a's last dim", [=] { matmul(m23, m23); }),
      row<ShapeError>("matmul: a 1-D operand", "at least 2 dims", [=] { matmul(v3, m43); }),
      row<DTypeError>("matmul: f32 and bf16", "dtypes",
                      [=] {
                        matmul(m23, r({3, 2}, DType::BF16));
                      }),
      row<ShapeError>("bmm: batch sizes differ", "bmm",
                      [=] {
                        bmm(r({2, 2, 3}), r({3, 3, 2}));
                      }),
      row<ShapeError>("linear: 1-D weight", "weight", [=] { linear(m23, v3); }),
      row<ShapeError>("linear: weight columns differ from x", "weight",
                      [=] {
                        linear(m23, r({5, 4}));
                      }),
      row<ShapeError>("linear: bias of the wrong length", "bias",
                      [=] {
                        linear(m23, r({5, 3}), v4);
                      }),
      row<ShapeError>("sum: dim past the tensor", "dim", [=] { sum(m23, {2}); }),
      row<ShapeError>("mean: a dim twice", "dim",
                      [=] {
                        mean(m23, {1, -1});
                      }),
      row<ShapeError>("argmax: dim past the tensor", "dim", [=] { argmax(m23, 5); }),
      row<ShapeError>("argmax: over an empty dim", "dim 1",
                      [=] {
                        argmax(r({2, 0}), 1);
                      }),
      row<ShapeError>("softmax: dim past the tensor", "dim", [=] { softmax(m23, -3); }),
      row<DTypeError>("softmax: integers", "i32",
                      [=] {
                        softmax(r({2, 3}, DType::I32), 1);
                      }),
      row<ShapeError>("layer_norm: weight of the wrong length", "weight", [=] { layer_norm(m23, v4, v3, 1e-5); }),
      row<DTypeError>("rms_norm: weight of another dtype", "weight", [=] { rms_norm(m23, r({3}, DType::F64), 1e-6); }),
      row<ValueError>("rms_norm: negative eps", "eps", [=] { rms_norm(m23, v3, -1.0); }),
      row<DTypeError>("embedding: float ids", "ids", [=] { embedding(m43, r({2}, DType::F32)); }),
      row<ShapeError>("embedding: 1-D weight", "weight", [=] { embedding(v4, r({2}, DType::I64)); }),
      row<ValueError>(
          "embedding: id past the vocab", "ids",
          [=] { embedding(m43, DTensor::from_local(Tensor::full({2}, 4, DType::I64), line, {Replicate()})); }),
      row<ShapeError>("reshape: another element count", "shape",
                      [=] {
                        reshape(m23, {4, 2});
                      }),
      row<ShapeError>("reshape: two -1", "shape",
                      [=] {
                        reshape(m23, {-1, -1});
                      }),
      row<ShapeError>("transpose: dim past the tensor", "dim", [=] { transpose(m23, 0, 2); }),
      row<ShapeError>("permute: a dim twice", "dims",
                      [=] {
                        permute(m23, {0, 0});
                      }),
      row<ShapeError>("narrow: past the end", "start", [=] { narrow(m23, 1, 2, 2); }),
      row<ShapeError>("flatten: start_dim after end_dim", "start_dim", [=] { flatten(m23, 1, 0); }),
      row<ValueError>("cat: no tensors", "tensor", [] { cat({}, 0); }),
      row<ShapeError>("cat: other sizes off the joined dim", "tensors[1]",
                      [=] {
                        cat({m23, r({2, 4})}, 0);
                      }),
      row<DTypeError>("cat: dtypes differ", "tensors[1]",
                      [=] {
                        cat({m23, r({2, 3}, DType::F64)}, 0);
                      }),
      row<ShapeError>("stack: shapes differ", "tensors[1]",
                      [=] {
                        stack({m23, m43}, 0);
                      }),
      row<ValueError>("chunk: zero chunks", "chunks", [=] { chunk(m23, 0, 0); }),
      row<ShapeError>("split: sizes that do not sum to the dim", "sizes",
                      [=] {
                        split(m23, {1, 1}, 1);
                      }),
      row<ValueError>("split: a negative size", "sizes[1]",
                      [=] {
                        split(m23, {4, -1}, 1);
                      }),
  };
}

}  // namespace bad_input
