// Operations on DTensors with sharding propagation.
//
// Every op looks up its sharding rules (one list per op, in dtensor/ops/<family>.cpp), picks the
// rule whose input redistributions the cost model prices lowest (no movement wins ties),
// redistributes the inputs that need it, runs the local op on the local blocks, and returns a
// DTensor with the rule's output placements. Decisions are cached per (op, parameters, input
// shapes, dtypes and placements, mesh shape). Inputs must live on the same mesh (MeshError).
//
//   DTensor y = matmul(x, w);          // x S(-1), w S(0): no communication, y is P(sum)
//   DTensor z = relu(y);               // nonlinear: y is reduced first (all_reduce, or reduce_scatter to a split)
//   DTensor s = sum(x, {0});           // over a sharded dim: P(sum), or PartialResult::Reduce
//
// Partial results stay partial where that is exact: P(sum) + P(sum), P(sum) * R, P(sum) * scalar,
// linear ops (matmul, views, cat) of P(sum)/P(avg); P(max)/P(min) through maximum/minimum and
// neg (which swaps them). Everything else reduces a Partial input first.
//
// Shapes follow the local ops of tensor/ops.hpp (numpy broadcasting, torch semantics); a shape
// or dim error is a ShapeError naming the op.
#pragma once

#include "dtensor/dtensor.hpp"

#include <vector>

namespace dtensor {

// While one is alive (on this thread), an op whose inputs do not already match one of its rules
// throws ValueError naming the op and the placements instead of redistributing them: a way to
// assert that a block of code communicates only where it says so.
class NoImplicitRedistribute {
 public:
  NoImplicitRedistribute();
  ~NoImplicitRedistribute();
  NoImplicitRedistribute(const NoImplicitRedistribute&) = delete;
  NoImplicitRedistribute& operator=(const NoImplicitRedistribute&) = delete;
  static bool active();
};

// Elementwise, with broadcasting.
DTensor add(const DTensor& a, const DTensor& b);
DTensor sub(const DTensor& a, const DTensor& b);
DTensor mul(const DTensor& a, const DTensor& b);
DTensor div(const DTensor& a, const DTensor& b);
DTensor maximum(const DTensor& a, const DTensor& b);
DTensor minimum(const DTensor& a, const DTensor& b);
DTensor where(const DTensor& cond, const DTensor& a, const DTensor& b);

// With a scalar.
DTensor add(const DTensor& a, double s);
DTensor sub(const DTensor& a, double s);
DTensor mul(const DTensor& a, double s);
DTensor div(const DTensor& a, double s);

// Unary.
DTensor neg(const DTensor& a);
DTensor exp(const DTensor& a);
DTensor log(const DTensor& a);
DTensor sqrt(const DTensor& a);
DTensor rsqrt(const DTensor& a);
DTensor tanh(const DTensor& a);
DTensor relu(const DTensor& a);
DTensor silu(const DTensor& a);
DTensor gelu(const DTensor& a);
DTensor cast(const DTensor& a, DType dtype);

// Products: matmul with broadcast batch dims, bmm on 3-D, linear = x @ weight^T + bias.
DTensor matmul(const DTensor& a, const DTensor& b);
DTensor bmm(const DTensor& a, const DTensor& b);
DTensor linear(const DTensor& x, const DTensor& weight);
DTensor linear(const DTensor& x, const DTensor& weight, const DTensor& bias);

// What a reduction over a sharded dim returns: the Partial result (no communication, as torch's
// DTensor does) or that result reduced to Replicate on the mesh dims that were partial.
enum class PartialResult { Keep, Reduce };

// Reductions over `dims` (empty: all dims).
DTensor sum(const DTensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false,
            PartialResult result = PartialResult::Keep);
DTensor mean(const DTensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false,
             PartialResult result = PartialResult::Keep);
DTensor amax(const DTensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false,
             PartialResult result = PartialResult::Keep);
DTensor amin(const DTensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false,
             PartialResult result = PartialResult::Keep);
// The index of the maximum along `dim` (i64); `dim` is gathered first when sharded.
DTensor argmax(const DTensor& a, int64_t dim, bool keepdim = false);

// Normalisations over one dim (softmax) or the last dim (norms); that dim is gathered first.
DTensor softmax(const DTensor& a, int64_t dim);
DTensor log_softmax(const DTensor& a, int64_t dim);
DTensor layer_norm(const DTensor& x, const DTensor& weight, const DTensor& bias, double eps);
DTensor rms_norm(const DTensor& x, const DTensor& weight, double eps);

// Rows of `weight` [vocab, hidden] picked by integer `ids`. A vocab-sharded weight (Shard(0))
// looks up only its own rows (others give zero) and the result is P(sum): exact for uneven vocab.
DTensor embedding(const DTensor& weight, const DTensor& ids);

// Views. Sharding maps through where the local blocks stay the blocks of the result (a
// transpose, a narrow of an unsharded dim, a reshape that keeps a sharded dim leading its group
// with even shards); otherwise the offending dim is gathered first.
DTensor reshape(const DTensor& a, const Shape& shape);  // one dim may be -1
DTensor view(const DTensor& a, const Shape& shape);     // reshape: the local block may be copied
DTensor flatten(const DTensor& a, int64_t start_dim = 0, int64_t end_dim = -1);
DTensor transpose(const DTensor& a, int64_t dim0, int64_t dim1);
DTensor permute(const DTensor& a, const std::vector<int64_t>& dims);
DTensor narrow(const DTensor& a, int64_t dim, int64_t start, int64_t length);

// Joining and splitting; the dim joined or split along is gathered first when sharded.
DTensor cat(const std::vector<DTensor>& tensors, int64_t dim);
DTensor stack(const std::vector<DTensor>& tensors, int64_t dim);
std::vector<DTensor> chunk(const DTensor& a, int64_t chunks, int64_t dim);
std::vector<DTensor> split(const DTensor& a, const std::vector<int64_t>& sizes, int64_t dim);

}  // namespace dtensor
