// Quantized weights on a CUDA device (tensor/cuda/quant_kernels.cu) against the CPU kernels on the
// same matrices and inputs: every format's linear (x kept in f32 on both), LLM.int8's outlier
// decomposition, bias and bf16, row lookups, and an out-of-range id.
#include "gpu_test_util.hpp"

#include "tensor/error.hpp"
#include "tensor/quant/quantized.hpp"

namespace {

QuantOptions f32_activations() {
  QuantOptions options;
  options.quantize_activations = false;
  return options;
}

}  // namespace

TEST_CASE("quantized_linear on the GPU matches the CPU kernels") {
  for (QuantFormat f : kAllQuantFormats) {
    for (const auto& [m, rows, cols] : {std::tuple{1, 33, 128}, {5, 64, 576}, {16, 7, 192}}) {
      INFO(quant_format_name(f) << " m " << m << " rows " << rows << " cols " << cols);
      const QuantizedMatrix cpu = QuantizedMatrix::quantize(random_input({rows, cols}, DType::F32, 1), f);
      const QuantizedMatrix gpu = cpu.to(kGpu);
      REQUIRE(gpu.device() == kGpu);
      REQUIRE(gpu.bytes() == cpu.bytes());
      const Tensor x = random_input({m, cols}, DType::F32, 2);
      require_matches(quantized_linear(x.to(kGpu), gpu, f32_activations()), quantized_linear(x, cpu, f32_activations()),
                      1e-4, 1e-4);
      require_matches(gpu.dequantize(), cpu.dequantize(), 0, 0);
    }
  }
}

TEST_CASE("quantized_linear on the GPU: LLM.int8, bias, bf16, leading dims") {
  const QuantizedMatrix cpu = QuantizedMatrix::quantize(random_input({40, 96}, DType::F32, 3), QuantFormat::Int8);
  const QuantizedMatrix gpu = cpu.to(kGpu);
  Tensor x = random_input({2, 3, 96}, DType::F32, 4);
  x.select(0, 1).select(0, 2).narrow(0, 7, 1).fill(9.0);  // column 7 is an outlier through one row
  QuantOptions llm_int8;
  llm_int8.outlier_threshold = 6.0;
  require_matches(quantized_linear(x.to(kGpu), gpu, llm_int8), quantized_linear(x, cpu, llm_int8), 1e-4, 1e-4);
  const Tensor bias = random_input({40}, DType::BF16, 5);
  require_matches(quantized_linear(x.to(DType::BF16).to(kGpu), gpu, {}, bias.to(kGpu)),
                  quantized_linear(x.to(DType::BF16), cpu, {}, bias), 2e-2, 2e-2);
}

TEST_CASE("dequantize_rows on the GPU reads the CPU's rows") {
  for (QuantFormat f : kAllQuantFormats) {
    INFO(quant_format_name(f));
    const QuantizedMatrix cpu = QuantizedMatrix::quantize(random_input({50, 128}, DType::F32, 6), f);
    const QuantizedMatrix gpu = cpu.to(kGpu);
    const Tensor ids = Tensor::from_vector<int64_t>({49, 0, 7, 7}, {2, 2});
    require_matches(gpu.dequantize_rows(ids.to(kGpu), DType::BF16), cpu.dequantize_rows(ids, DType::BF16), 0, 0);
    REQUIRE_THROWS_AS(gpu.dequantize_rows(Tensor::from_vector<int64_t>({50}, {1}).to(kGpu)), ValueError);
  }
}
