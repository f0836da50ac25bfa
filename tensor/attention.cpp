// Rotary embedding and grouped-query causal attention (declared in tensor/attention.hpp).
#include "tensor/kernel_util.hpp"  // first: it sets GCC 12's diagnostics before Eigen is read

#include "tensor/attention.hpp"
#include "tensor/cpu/gemv.hpp"
#include "tensor/cpu/onednn_gemm.hpp"
#include "tensor/device_kernels.hpp"

namespace dtensor {

namespace {

using detail::cdata;
using detail::mdata;

// Rotary ------------------------------------------------------------------------------------------

// The tables in f32, as transformers computes them (f32 powers, products and cos / sin).
std::pair<Tensor, Tensor> rotary_tables_f32(const std::vector<int64_t>& positions, int64_t head_dim, double theta) {
  const int64_t half = head_dim / 2, count = int64_t(positions.size());
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = float(2 * i) / float(head_dim);
    inv_freq[size_t(i)] = 1.0f / std::pow(float(theta), exponent);
  }
  Tensor cos = Tensor::empty({count, head_dim}, DType::F32), sin = Tensor::empty({count, head_dim}, DType::F32);
  float* pc = mdata<float>(cos);
  float* ps = mdata<float>(sin);
  for (int64_t s = 0; s < count; ++s) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(positions[size_t(s)]) * inv_freq[size_t(i)];
      const float c = std::cos(angle), si = std::sin(angle);
      pc[s * head_dim + i] = pc[s * head_dim + half + i] = c;  // emb = cat(freqs, freqs)
      ps[s * head_dim + i] = ps[s * head_dim + half + i] = si;
    }
  }
  return {cos, sin};
}

// out = x * cos + rotate_half(x) * sin over one head's row of D elements, rotate_half(x) =
// cat(-x2, x1). Each product and the sum are rounded to T, as three separate torch ops on T
// tensors would round them (no-ops for f32 and f64).
template <typename T>
void rotate_row(const T* x, const T* cos, const T* sin, T* out, int64_t d) {
  using C = compute_t<T>;
  const int64_t half = d / 2;
  auto term = [](C a, T b) { return C(T(a * C(b))); };
  for (int64_t i = 0; i < half; ++i) out[i] = T(term(C(x[i]), cos[i]) + term(-C(x[i + half]), sin[i]));
  for (int64_t i = half; i < d; ++i) out[i] = T(term(C(x[i]), cos[i]) + term(C(x[i - half]), sin[i]));
}

// Attention ---------------------------------------------------------------------------------------

// Query rows per block: a block only multiplies the keys its last row can see, which skips
// about half the work of a long prefill, while the products stay large enough for a GEMM.
constexpr int64_t kQueryBlock = 64;

// Softmax of each row of scores [rows, keys] (f32, contiguous), times `scale` first, over its
// first `visible(r)` entries; the rest become 0.
template <typename C, typename Visible>
void causal_softmax(C* scores, int64_t rows, int64_t keys, C scale, Visible visible) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = visible(r);
    Eigen::Map<Eigen::Array<C, 1, Eigen::Dynamic>> row(scores + r * keys, n);
    row *= scale;
    row = (row - row.maxCoeff()).exp();
    row /= row.sum();
    std::fill(scores + r * keys + n, scores + (r + 1) * keys, C(0));
  }
}

// dst = a @ b: a decode step's products in the matrix-vector kernel (no primitive per new key
// count), the rest through oneDNN (the dtypes were checked by onednn_attends).
void product(const Tensor& a, const Tensor& b, const Tensor& dst) {
  check<DTypeError>(cpu::gemv(a, b, Tensor(), dst) || cpu::onednn_matmul(a, b, Tensor(), dst), "causal_attention",
                    "oneDNN has no {} x {} -> {} product on this host", a.dtype(), b.dtype(), dst.dtype());
}

// [tokens, heads, dim] with unit stride along dim, as GEMM reads each head's rows.
Tensor rows_readable(const Tensor& t) { return t.strides()[2] == 1 ? t : t.contiguous(); }

// Attention through GEMM products on views of q, k, v (any float dtype oneDNN multiplies):
// per query head and block of queries, scores = q k^T in f32, the causal softmax in f32, the
// probabilities rounded to the inputs' dtype (as torch's bf16 attention rounds them), times v
// straight into the head's columns of out.
Tensor attention_products(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_head_of) {
  const int64_t seq = q.size(0), heads = q.size(1), d = q.size(2), total = k.size(0), past = total - seq;
  Tensor out = Tensor::empty(q.shape(), q.dtype());
  const float scale = 1.0f / std::sqrt(float(d));
  const bool rounded = q.dtype() != DType::F32;
  for (int64_t begin = 0; begin < seq; begin += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, seq - begin), keys = past + begin + rows;
    const Tensor scores = Tensor::empty({rows, keys}, DType::F32);
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kv = kv_head_of[size_t(h)];
      const Tensor q_block = q.select(1, h).narrow(0, begin, rows);
      const Tensor k_head = k.select(1, kv).narrow(0, 0, keys), v_head = v.select(1, kv).narrow(0, 0, keys);
      product(q_block, k_head.transpose(0, 1), scores);
      causal_softmax<float>(mdata<float>(scores), rows, keys, scale, [&](int64_t r) { return past + begin + r + 1; });
      const Tensor probs = rounded ? scores.to(q.dtype()) : scores;
      product(probs, v_head, out.select(1, h).narrow(0, begin, rows));
    }
  }
  return out;
}

// Whether oneDNN multiplies `dtype` into f32 scores and into `dtype` outputs on this host.
bool probe_onednn(DType dtype) {
  const Tensor a = Tensor::empty({1, 2}, dtype), b = Tensor::empty({2, 1}, dtype);
  return cpu::onednn_matmul_impl(a, b, Tensor::empty({1, 1}, DType::F32)) != "none" &&
         cpu::onednn_matmul_impl(a, b, Tensor::empty({1, 1}, dtype)) != "none";
}

// The probe's answer per 16-bit / f32 dtype, asked once per process (every layer calls attention).
bool onednn_attends(DType dtype) {
  static const bool f32 = probe_onednn(DType::F32), bf16 = probe_onednn(DType::BF16), f16 = probe_onednn(DType::F16);
  return dtype == DType::F32 ? f32 : dtype == DType::BF16 ? bf16 : f16;
}

template <typename C>
using RowMatrix = Eigen::Matrix<C, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename C>
using HeadMap = Eigen::Map<const RowMatrix<C>, 0, Eigen::OuterStride<>>;
template <typename C>
using OutHeadMap = Eigen::Map<RowMatrix<C>, 0, Eigen::OuterStride<>>;

// f64 attention with Eigen's products: one query head over the keys and values of its KV head
// (row-major views with the given row strides), written into out.
void attend_head_f64(const HeadMap<double>& q, const HeadMap<double>& k, const HeadMap<double>& v,
                     OutHeadMap<double>& out, RowMatrix<double>& scores) {
  const int64_t seq = q.rows(), past = k.rows() - seq;
  const double scale = 1.0 / std::sqrt(double(q.cols()));
  for (int64_t begin = 0; begin < seq; begin += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, seq - begin), keys = past + begin + rows;
    scores.resize(rows, keys);
    scores.noalias() = q.middleRows(begin, rows) * k.topRows(keys).transpose();
    causal_softmax<double>(scores.data(), rows, keys, scale, [&](int64_t r) { return past + begin + r + 1; });
    out.middleRows(begin, rows).noalias() = scores * v.topRows(keys);
  }
}

// q, k, v contiguous f64; returns [S, Hq, D].
Tensor attention_f64(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_head_of) {
  const int64_t seq = q.size(0), heads = q.size(1), d = q.size(2);
  const int64_t total = k.size(0), kv_heads = k.size(1);
  Tensor out = Tensor::empty(q.shape(), DType::F64);
  RowMatrix<double> scores;
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t kv = kv_head_of[size_t(h)];
    const HeadMap<double> qh(cdata<double>(q) + h * d, seq, d, Eigen::OuterStride<>(heads * d));
    const HeadMap<double> kh(cdata<double>(k) + kv * d, total, d, Eigen::OuterStride<>(kv_heads * d));
    const HeadMap<double> vh(cdata<double>(v) + kv * d, total, d, Eigen::OuterStride<>(kv_heads * d));
    OutHeadMap<double> oh(mdata<double>(out) + h * d, seq, d, Eigen::OuterStride<>(heads * d));
    attend_head_f64(qh, kh, vh, oh, scores);
  }
  return out;
}

// `t` is on `x`'s device (either one), so the kernel of that device can read both.
void check_same_device(const Tensor& x, const Tensor& t, const char* op, const char* x_name, const char* name) {
  detail::check_defined(t, op, name);
  check<DeviceError>(t.device() == x.device(), op, "'{}' is on {} but '{}' is on {}", name, t.device(), x_name,
                     x.device());
}

void check_attention_args(const Tensor& q, const Tensor& k, const Tensor& v) {
  const char* op = "causal_attention";
  detail::check_defined(q, op, "q");
  for (const auto& [t, name] : {std::pair{&q, "q"}, std::pair{&k, "k"}, std::pair{&v, "v"}}) {
    check_same_device(q, *t, op, "q", name);
    detail::check_floating(*t, op, name);
    detail::check_same_dtype(q, *t, op, "q", name);
    // Not check() where the message formats shapes: its arguments are built even when it passes,
    // and attention runs per layer per token.
    if (t->dim() != 3)
      fail<ShapeError>(op, "{} must be 3-D [tokens, heads, head_dim], got shape {}", name, shape_str(t->shape()));
  }
  if (k.shape() != v.shape())
    fail<ShapeError>(op, "k {} and v {} must have the same shape", shape_str(k.shape()), shape_str(v.shape()));
  check<ShapeError>(q.size(2) == k.size(2), op, "q's head_dim {} differs from k's {}", q.size(2), k.size(2));
  check<ShapeError>(k.size(0) >= q.size(0), op, "k holds {} positions, fewer than the {} queries", k.size(0),
                    q.size(0));
}

// The KV head of every query head: the given map checked, or the grouped-query default.
std::vector<int64_t> kv_heads_of(const std::vector<int64_t>& given, int64_t heads, int64_t kv_heads) {
  const char* op = "causal_attention";
  if (given.empty()) {
    check<ShapeError>(kv_heads > 0 && heads % kv_heads == 0, op,
                      "{} query heads are not a multiple of {} KV heads; pass kv_head_of", heads, kv_heads);
    std::vector<int64_t> map(static_cast<size_t>(heads));
    for (int64_t h = 0; h < heads; ++h) map[size_t(h)] = h / (heads / kv_heads);
    return map;
  }
  check<ShapeError>(int64_t(given.size()) == heads, op, "kv_head_of has {} entries for {} query heads", given.size(),
                    heads);
  for (size_t h = 0; h < given.size(); ++h) {
    check<ValueError>(given[h] >= 0 && given[h] < kv_heads, op, "kv_head_of[{}] = {} is outside [0, {})", h, given[h],
                      kv_heads);
  }
  return given;
}

}  // namespace

RotaryTables rotary_tables(const std::vector<int64_t>& positions, int64_t head_dim, double theta, DType dtype,
                           Device device) {
  const char* op = "rotary_tables";
  check<ValueError>(head_dim > 0 && head_dim % 2 == 0, op, "head_dim must be positive and even, got {}", head_dim);
  check<ValueError>(theta > 0, op, "theta must be positive, got {}", theta);
  check<DTypeError>(is_floating(dtype), op, "dtype must be floating, got {}", dtype);
  for (size_t i = 0; i < positions.size(); ++i) {
    check<ValueError>(positions[i] >= 0, op, "positions[{}] = {} is negative", i, positions[i]);
  }
  auto [cos, sin] = rotary_tables_f32(positions, head_dim, theta);
  return {cos.to(dtype).to(device), sin.to(dtype).to(device)};
}

Tensor apply_rotary(const Tensor& x, const RotaryTables& tables) {
  const char* op = "apply_rotary";
  detail::check_defined(x, op, "x");
  check_same_device(x, tables.cos, op, "x", "cos");
  check_same_device(x, tables.sin, op, "x", "sin");
  detail::check_floating(x, op, "x");
  detail::check_same_dtype(x, tables.cos, op, "x", "cos");
  detail::check_same_dtype(x, tables.sin, op, "x", "sin");
  // Not check() where the message formats shapes (see check_attention_args).
  if (x.dim() != 3) fail<ShapeError>(op, "x must be 3-D [tokens, heads, head_dim], got shape {}", shape_str(x.shape()));
  const Shape table_shape = {x.size(0), x.size(2)};
  if (tables.cos.shape() != table_shape || tables.sin.shape() != table_shape) {
    fail<ShapeError>(op, "cos {} and sin {} must be [tokens, head_dim] = {} for x {}", shape_str(tables.cos.shape()),
                     shape_str(tables.sin.shape()), shape_str(table_shape), shape_str(x.shape()));
  }
  check<ShapeError>(x.size(2) % 2 == 0, op, "head_dim must be even, got {}", x.size(2));
  if (on_device(x)) return device_kernels(x, "apply_rotary").apply_rotary(x, tables.cos, tables.sin);
  detail::check_cpu(x, op, "x");
  const Tensor in = x.contiguous(), cos = tables.cos.contiguous(), sin = tables.sin.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t seq = x.size(0), heads = x.size(1), d = x.size(2);
  visit_dtype(x.dtype(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<compute_t<T>>) {
      for (int64_t s = 0; s < seq; ++s)
        for (int64_t h = 0; h < heads; ++h) {
          const int64_t at = (s * heads + h) * d;
          rotate_row<T>(cdata<T>(in) + at, cdata<T>(cos) + s * d, cdata<T>(sin) + s * d, mdata<T>(out) + at, d);
        }
    }
  });
  return out;
}

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& kv_head_of) {
  check_attention_args(q, k, v);
  const std::vector<int64_t> map = kv_heads_of(kv_head_of, q.size(1), k.size(1));
  if (on_device(q)) return device_kernels(q, "causal_attention").causal_attention(q, k, v, map);
  detail::check_cpu(q, "causal_attention", "q");
  if (q.dtype() == DType::F64) return attention_f64(q.contiguous(), k.contiguous(), v.contiguous(), map);
  if (onednn_attends(q.dtype())) return attention_products(rows_readable(q), rows_readable(k), rows_readable(v), map);
  // A 16-bit dtype oneDNN cannot multiply on this host: in f32 from the same values, rounded once.
  return attention_products(q.to(DType::F32), k.to(DType::F32), v.to(DType::F32), map).to(q.dtype());
}

}  // namespace dtensor
