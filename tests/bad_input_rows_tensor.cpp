// Bad-input rows: local tensors (shapes, views, dtypes) and collectives' arguments.
#include "bad_input_rows.hpp"

#include "collectives/runtime.hpp"
#include "tensor/ops.hpp"
#include "tensor/quant/quantized.hpp"

using namespace dtensor;

namespace bad_input {

std::vector<Row> tensor_rows() {
  const Tensor m23 = Tensor::zeros({2, 3}, DType::F32);
  return {
      row<ShapeError>("Tensor::empty: negative size", "shape",
                      [] {
                        Tensor::empty({2, -1}, DType::F32);
                      }),
      row<ShapeError>("Tensor::from_vector: shape of another size", "shape",
                      [] {
                        Tensor::from_vector<float>({1, 2, 3}, {2, 2});
                      }),
      row<ShapeError>("Tensor::narrow: start past the dim", "start", [=] { m23.narrow(1, 4, 0); }),
      row<ShapeError>("Tensor::narrow: negative length", "length", [=] { m23.narrow(0, 0, -1); }),
      row<ShapeError>("Tensor::select: index past the dim", "index", [=] { m23.select(0, 2); }),
      row<ShapeError>("Tensor::transpose: dim past the tensor", "dim", [=] { m23.transpose(0, 2); }),
      row<ShapeError>("Tensor::permute: too few dims", "dims", [=] { m23.permute({0}); }),
      row<ShapeError>("Tensor::view: another element count", "shape", [=] { m23.view({4}); }),
      row<ShapeError>("Tensor::view: of a transposed tensor", "view", [=] { m23.transpose(0, 1).view({6}); }),
      row<ShapeError>("Tensor::expand: a size that is not 1 changed", "shape",
                      [=] {
                        m23.expand({2, 4});
                      }),
      row<ValueError>("Tensor::slice: zero step", "step", [=] { m23.slice(1, 0, 3, 0); }),
      row<ShapeError>("Tensor::item: of several elements", "item", [=] { (void)m23.item<float>(); }),
      row<DTypeError>("Tensor::data<T>: another dtype", "f32", [=] { (void)m23.data<double>(); }),
      row<ShapeError>("Tensor::copy_from: another shape", "shape",
                      [=] {
                        m23.copy_from(Tensor::zeros({3, 2}, DType::F32));
                      }),
      row<ShapeError>("Tensor::matmul: inner dims differ", "matmul", [=] { matmul(m23, m23); }),
      row<ValueError>("Tensor::topk: k past the dim", "k", [=] { topk(m23, 4, 1); }),
      row<ShapeError>("Tensor::chunk: dim past the tensor", "dim", [=] { chunk(m23, 2, 3); }),
      row<ValueError>("quant_format_from_name: unknown format", "q5_k", [] { quant_format_from_name("q5_k"); }),
      row<ShapeError>("QuantizedMatrix::quantize: cols not a multiple of the block", "block size",
                      [] {
                        QuantizedMatrix::quantize(Tensor::zeros({2, 48}, DType::F32), QuantFormat::Q4_0);
                      }),
      row<ShapeError>(
          "QuantizedMatrix::narrow_cols: a shard boundary inside a block", "boundary 16",
          [] {
            QuantizedMatrix::quantize(Tensor::zeros({2, 64}, DType::F32), QuantFormat::Q4_0).narrow_cols(16, 32);
          }),
      row<DTypeError>("quantized_linear: f16 x", "f16",
                      [] {
                        quantized_linear(
                            Tensor::zeros({1, 32}, DType::F16),
                            QuantizedMatrix::quantize(Tensor::zeros({2, 32}, DType::F32), QuantFormat::Q8_0));
                      }),
  };
}

std::vector<Row> collective_rows() {
  Communicator comm = world();
  const int w = comm.size();
  const Tensor f4 = Tensor::zeros({4}, DType::F32);
  return {
      row<ValueError>("broadcast: root past the group", "root", [=]() mutable { comm.broadcast(f4, w); }),
      row<ValueError>("broadcast: negative root", "root", [=]() mutable { comm.broadcast(f4, -1); }),
      row<ValueError>("all_reduce: undefined tensor", "buffer", [=]() mutable { comm.all_reduce(Tensor()); }),
      row<ShapeError>("all_reduce: in and out of different sizes", "out",
                      [=]() mutable { comm.all_reduce(f4, Tensor::zeros({5}, DType::F32), ReduceOp::Sum); }),
      row<DTypeError>("all_reduce: avg of integers", "avg",
                      [=]() mutable { comm.all_reduce(Tensor::zeros({4}, DType::I32), ReduceOp::Avg); }),
      row<ShapeError>("all_gather: out not world size times in", "out",
                      [=]() mutable { comm.all_gather(f4, Tensor::zeros({4 * w + 1}, DType::F32)); }),
      row<ShapeError>("reduce_scatter: in not world size times out", "in",
                      [=]() mutable { comm.reduce_scatter(Tensor::zeros({4 * w + 1}, DType::F32), f4); }),
      row<ValueError>("scatter: root past the group", "root",
                      [=]() mutable { comm.scatter(Tensor::zeros({4 * w}, DType::F32), f4, w); }),
      row<ValueError>("all_gather_v: counts of the wrong length", "counts",
                      [=]() mutable {
                        std::vector<int64_t> counts(size_t(w + 1), 4);
                        comm.all_gather_v(f4, Tensor::zeros({4 * (w + 1)}, DType::F32), counts);
                      }),
      row<ValueError>("send: dst past the group", "dst", [=]() mutable { comm.send(f4, w); }),
      row<ValueError>("recv: negative src", "src", [=]() mutable { comm.recv(f4, -1); }),
      row<DTypeError>("all_reduce: out of another dtype", "out",
                      [=]() mutable { comm.all_reduce(f4, Tensor::zeros({4}, DType::F64), ReduceOp::Sum); }),
      row<ValueError>("all_reduce: a non-contiguous buffer", "buffer",
                      [=]() mutable {
                        comm.all_reduce(Tensor::zeros({4, 2}, DType::F32).transpose(0, 1));
                      }),
      row<ValueError>("send: to this rank itself", "dst", [=]() mutable { comm.send(f4, comm.rank()); }),
      row<CommError>("non-member communicator", "not a member", [] { Communicator().barrier(); }),
  };
}

}  // namespace bad_input
