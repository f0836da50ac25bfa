// Greedy generation with the KV cache: one prefill, then one single-token step per new token.
#include "models/causal_lm.hpp"

#include "tensor/ops.hpp"

#include <chrono>

namespace dtensor::models {

namespace {

// The id of the largest logit in row `row` (the first one on ties, as torch.argmax).
int64_t greedy_id(const Tensor& logits, int64_t row) { return argmax(logits.select(0, row), 0).item<int64_t>(); }

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Generation generate_greedy(CausalLM& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                           const std::function<void(int64_t)>& on_token, std::optional<int64_t> stop_id) {
  check<ValueError>(!prompt.empty(), "generate_greedy", "the prompt is empty");
  check<ValueError>(max_new_tokens >= 0, "generate_greedy", "max_new_tokens must be >= 0, got {}", max_new_tokens);
  model.reset_cache();
  model.reserve_cache(int64_t(prompt.size()) + max_new_tokens);
  Generation out;
  auto start = std::chrono::steady_clock::now();
  out.prompt_logits = model.forward_tokens(prompt);
  out.prefill_seconds = seconds_since(start);
  if (max_new_tokens == 0) return out;
  out.new_ids.push_back(greedy_id(out.prompt_logits, int64_t(prompt.size()) - 1));
  if (on_token) on_token(out.new_ids.back());
  start = std::chrono::steady_clock::now();
  while (int64_t(out.new_ids.size()) < max_new_tokens && out.new_ids.back() != stop_id) {
    const Tensor logits = model.forward_tokens({out.new_ids.back()});
    out.new_ids.push_back(greedy_id(logits, 0));
    if (on_token) on_token(out.new_ids.back());
    ++out.decode_steps;
  }
  out.decode_seconds = seconds_since(start);
  return out;
}

}  // namespace dtensor::models
