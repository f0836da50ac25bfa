#include "bench_tp_forward_reference.hpp"

#include "tensor/error.hpp"

#include <Eigen/Core>
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <vector>

namespace tp_forward_bench {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct GemmShape {
  int64_t out, in, count;
};

// One prefill's Linear products [m, in] @ [out, in]^T: per layer q, k, v, o, gate, up, down, then lm_head.
std::vector<GemmShape> linear_shapes(const dtensor::models::HFConfig& c) {
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const int64_t layers = c.num_hidden_layers, h = c.hidden_size, i = c.intermediate_size;
  return {{q, h, layers},     {kv, h, 2 * layers}, {h, q, layers},
          {i, h, 2 * layers}, {h, i, layers},      {c.vocab_size, h, 1}};
}

}  // namespace

double decode_weight_bytes(const dtensor::models::HFConfig& config, dtensor::DType dtype) {
  double elements = 0;
  for (const GemmShape& s : linear_shapes(config)) elements += double(s.out) * double(s.in) * double(s.count);
  return elements * double(dtensor::dtype_size(dtype));
}

double onednn_linear_gflops(const dtensor::models::HFConfig& config, int64_t m, dtensor::DType dtype) {
  using dnnl::memory;
  const memory::data_type type = dtype == dtensor::DType::BF16 ? memory::data_type::bf16 : memory::data_type::f32;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  double flops = 0, seconds = 0;
  for (const GemmShape& s : linear_shapes(config)) {
    const memory::desc x_desc({m, s.in}, type, memory::dims{s.in, 1});
    const memory::desc w_desc({s.in, s.out}, type, memory::dims{1, s.in});  // W [out, in] read as W^T
    const memory::desc y_desc({m, s.out}, type, memory::dims{s.out, 1});
    const dnnl::matmul matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(x_desc, w_desc, y_desc), engine));
    memory x(x_desc, engine), w(w_desc, engine), y(y_desc, engine);
    std::fill_n(static_cast<char*>(x.get_data_handle()), x_desc.get_size(), 0x3c);  // small finite values
    std::fill_n(static_cast<char*>(w.get_data_handle()), w_desc.get_size(), 0x3c);
    const std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}};
    matmul.execute(stream, args);  // first touch of y
    stream.wait();
    for (int64_t k = 0; k < s.count; ++k) {
      const double start = now_seconds();
      matmul.execute(stream, args);
      stream.wait();
      seconds += now_seconds() - start;
      flops += 2.0 * double(m) * double(s.in) * double(s.out);
    }
  }
  return flops / seconds / 1e9;
}

double single_core_read_gbps(double bytes) {
  const Eigen::Index n = Eigen::Index(bytes / sizeof(float));
  const Eigen::VectorXf buffer = Eigen::VectorXf::Constant(n, 1.0f);
  std::vector<double> rates;
  volatile float sink = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const double start = now_seconds();
    sink = sink + buffer.sum();
    rates.push_back(bytes / (now_seconds() - start) / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace tp_forward_bench
