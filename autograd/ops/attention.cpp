// Rotary embedding and causal attention with their backwards (tensor/attention.hpp), in f32 for
// 16-bit inputs and rounded once, as the forwards compute.
//
// Attention, per query head h reading KV head kv: P = softmax(scale q_h k_kv^T + causal mask)
// and out_h = P v_kv. With dP = dout_h v_kv^T and dS = P (dP - rowsum(dP P)):
//   dq_h = scale dS k_kv,   dk_kv += scale dS^T q_h,   dv_kv += P^T dout_h,
// where the KV gradients sum over every query head reading that KV head. P is recomputed from the
// saved q and k (as flash attention's backward does) rather than kept from the forward.
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/ops/grad_util.hpp"
#include "tensor/kernel_util.hpp"
#include "tensor/ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dtensor::autograd {

using detail::to_compute;

namespace {
// The adjoint of rotate_half (cat(-x2, x1)): cat(y2, -y1), halves of the last dim.
Tensor rotate_half_adjoint(const Tensor& y) {
  int64_t half = y.size(-1) / 2;
  return dtensor::cat({y.narrow(-1, half, half), dtensor::neg(y.narrow(-1, 0, half))}, -1);
}

// Key j is hidden from query i when it lies after the query's absolute position past + i.
Tensor causal_mask(int64_t queries, int64_t keys) {
  Tensor mask = Tensor::empty({queries, keys}, DType::U8);
  uint8_t* hidden = mask.data<uint8_t>();
  for (int64_t i = 0; i < queries; ++i) {
    for (int64_t j = 0; j < keys; ++j) hidden[i * keys + j] = j > keys - queries + i;
  }
  return mask;
}

std::vector<int64_t> kv_heads_or_grouped(const std::vector<int64_t>& kv_head_of, int64_t heads, int64_t kv_heads) {
  if (!kv_head_of.empty()) return kv_head_of;
  std::vector<int64_t> map;
  for (int64_t h = 0; h < heads; ++h) map.push_back(h / (heads / kv_heads));
  return map;
}

struct AttentionGrads {
  Tensor dq, dk, dv;  // in the compute dtype, accumulated head by head
};

// Row i of scores [queries, keys] (contiguous) becomes softmax(scale * scores) over the keys it may
// see, zeros after them: P in one pass instead of scale, mask fill and softmax apart.
template <typename T>
void causal_softmax_rows(Tensor& scores, T scale) {
  const int64_t queries = scores.size(0), keys = scores.size(1);
  for (int64_t i = 0; i < queries; ++i) {
    T* row = scores.data<T>() + i * keys;
    const int64_t visible = std::clamp<int64_t>(keys - queries + i + 1, 0, keys);
    dtensor::detail::ArrayMap<T> x(row, visible);
    x *= scale;
    x = (x - x.maxCoeff()).exp();
    x /= x.sum();
    std::fill(row + visible, row + keys, T(0));
  }
}

// dP [queries, keys] becomes scale * dS = scale * P (dP - rowsum(dP P)) in one pass per row.
template <typename T>
void softmax_backward_rows(const Tensor& p, Tensor& dp, T scale) {
  const int64_t rows = dp.size(0), cols = dp.size(1);
  for (int64_t i = 0; i < rows; ++i) {
    dtensor::detail::ConstArrayMap<T> pr(p.data<T>() + i * cols, cols);
    dtensor::detail::ArrayMap<T> dr(dp.data<T>() + i * cols, cols);
    const T dot = (dr * pr).sum();
    dr = scale * pr * (dr - dot);
  }
}

// The CPU form of the head's backward below, with P and scale * dS each made in one pass.
template <typename T>
void attention_head_backward_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout, T scale,
                                 AttentionGrads& grads) {
  Tensor p = dtensor::matmul(q, k.transpose(0, 1));
  causal_softmax_rows<T>(p, scale);
  Tensor ds = dtensor::matmul(dout, v.transpose(0, 1));
  softmax_backward_rows<T>(p, ds, scale);
  grads.dq.copy_from(dtensor::matmul(ds, k));
  grads.dk.copy_from(dtensor::add(grads.dk, dtensor::matmul(ds.transpose(0, 1), q)));
  grads.dv.copy_from(dtensor::add(grads.dv, dtensor::matmul(p.transpose(0, 1), dout)));
}

void attention_head_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout, const Tensor& mask,
                             double scale, AttentionGrads& grads) {
  if (q.device().is_cpu() && q.dtype() == DType::F32) {
    return attention_head_backward_cpu<float>(q, k, v, dout, float(scale), grads);
  }
  if (q.device().is_cpu() && q.dtype() == DType::F64)
    return attention_head_backward_cpu<double>(q, k, v, dout, scale, grads);
  Tensor scores = dtensor::masked_fill(dtensor::mul(dtensor::matmul(q, k.transpose(0, 1)), scale), mask,
                                       -std::numeric_limits<double>::infinity());
  Tensor p = dtensor::softmax(scores, -1);
  Tensor dp = dtensor::matmul(dout, v.transpose(0, 1));
  Tensor ds = dtensor::mul(p, dtensor::sub(dp, dtensor::sum(dtensor::mul(dp, p), {-1}, true)));
  grads.dq.copy_from(dtensor::mul(dtensor::matmul(ds, k), scale));
  grads.dk.copy_from(dtensor::add(grads.dk, dtensor::mul(dtensor::matmul(ds.transpose(0, 1), q), scale)));
  grads.dv.copy_from(dtensor::add(grads.dv, dtensor::matmul(p.transpose(0, 1), dout)));
}

Grads attention_backward(const Tensor& q_saved, const Tensor& k_saved, const Tensor& v_saved, const Tensor& grad,
                         const std::vector<int64_t>& kv_of) {
  Tensor q = to_compute(q_saved), k = to_compute(k_saved), v = to_compute(v_saved), dout = to_compute(grad);
  AttentionGrads all{Tensor::zeros(q.shape(), q.dtype(), q.device()), Tensor::zeros(k.shape(), k.dtype(), k.device()),
                     Tensor::zeros(v.shape(), v.dtype(), v.device())};
  Tensor mask = causal_mask(q.size(0), k.size(0)).to(q.device());
  double scale = 1.0 / std::sqrt(double(q.size(2)));
  for (int64_t h = 0; h < q.size(1); ++h) {
    int64_t kv = kv_of[size_t(h)];
    AttentionGrads head{all.dq.select(1, h), all.dk.select(1, kv), all.dv.select(1, kv)};
    attention_head_backward(q.select(1, h), k.select(1, kv), v.select(1, kv), dout.select(1, h), mask, scale, head);
  }
  return Grads{all.dq.to(q_saved.dtype()), all.dk.to(k_saved.dtype()), all.dv.to(v_saved.dtype())};
}
}  // namespace

// out = x cos + rotate_half(x) sin, so dx = dout cos + rotate_half^T(dout sin); the tables get none.
Tensor apply_rotary(const Tensor& x, const RotaryTables& tables) {
  Tensor out = dtensor::apply_rotary(x, tables);
  if (!should_record(x)) return out;
  return record("apply_rotary", {x}, {tables.cos, tables.sin}, out, [](const FunctionNode& node, const Tensor& grad) {
    Tensor cos = to_compute(node.saved(0)).unsqueeze(1);  // [S, 1, D] over the heads
    Tensor sin = to_compute(node.saved(1)).unsqueeze(1);
    Tensor dout = to_compute(grad);
    Tensor dx = dtensor::add(dtensor::mul(dout, cos), rotate_half_adjoint(dtensor::mul(dout, sin)));
    return Grads{dx.to(grad.dtype())};
  });
}

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_head_of) {
  Tensor out = dtensor::causal_attention(q, k, v, kv_head_of);
  if (!should_record(q, k, v)) return out;
  std::vector<int64_t> kv_of = kv_heads_or_grouped(kv_head_of, q.size(1), k.size(1));
  return record("causal_attention", {q, k, v}, {q, k, v}, out, [kv_of](const FunctionNode& node, const Tensor& grad) {
    return attention_backward(node.saved(0), node.saved(1), node.saved(2), grad, kv_of);
  });
}

}  // namespace dtensor::autograd
