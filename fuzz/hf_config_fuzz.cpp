// Fuzzes parse_hf_config, the config.json reader; a config it accepts must describe a model the
// builders can size.
#include "fuzz/fuzz_util.hpp"
#include "models/hf_config.hpp"

#include <algorithm>

namespace {

void check_parsed(const dtensor::models::HFConfig& c) {
  const auto& known = dtensor::models::supported_hf_architectures();
  FUZZ_CHECK(std::find(known.begin(), known.end(), c.architecture) != known.end());
  FUZZ_CHECK(c.hidden_size > 0 && c.intermediate_size > 0 && c.num_hidden_layers > 0 && c.vocab_size > 0);
  FUZZ_CHECK(c.num_attention_heads > 0 && c.num_key_value_heads > 0 && c.head_dim > 0);
  FUZZ_CHECK(c.num_attention_heads % c.num_key_value_heads == 0);
  FUZZ_CHECK(c.max_position_embeddings > 0 && c.rms_norm_eps > 0 && c.rope_theta > 0);
  FUZZ_CHECK(!c.is_moe() || (c.num_experts_per_tok > 0 && c.num_experts_per_tok <= c.num_local_experts));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dtensor::fuzz::expect_typed_errors(
      [&] { check_parsed(dtensor::models::parse_hf_config(dtensor::fuzz::as_text(data, size))); });
  return 0;
}
