#include "program_flags.hpp"

#include "models/quant.hpp"
#include "tensor/error.hpp"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <sstream>

namespace dtensor::programs {

namespace {

namespace fs = std::filesystem;

void check_finite(double value, const char* op, const char* flag) {
  check(std::isfinite(value), op, "{} must be a finite number, got {}", flag, value);
}

bool writable_directory(const fs::path& dir) {
  std::error_code error;
  return fs::is_directory(dir, error) && ::access(dir.c_str(), W_OK) == 0;
}

// A file the program writes at the end: its directory must exist and be writable now.
void check_output_file(const std::string& path, const char* op, const char* flag) {
  if (path.empty()) return;
  const fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  std::error_code error;
  check(!fs::is_directory(path, error), op, "{} {}: is a directory, expected a file", flag, path);
  check(writable_directory(parent), op, "{} {}: cannot write the file ({} is not a writable directory)", flag, path,
        parent.string());
}

// A directory the program creates at the end (with its missing parents): its nearest existing
// ancestor must be a writable directory.
void check_output_directory(const std::string& path, const char* op, const char* flag) {
  if (path.empty()) return;
  fs::path existing = fs::absolute(path);
  std::error_code error;
  while (!fs::exists(existing, error) && existing.has_parent_path() && existing != existing.parent_path())
    existing = existing.parent_path();
  check(writable_directory(existing), op, "{} {}: cannot create the directory ({} is not a writable directory)", flag,
        path, existing.string());
}

}  // namespace

void add_flags(CLI::App& app, GenerateFlags& o) {
  app.add_option("--model", o.model_dir, "checkpoint directory (config.json + safetensors) or a .gguf file")
      ->required();
  app.add_option("--plan", o.plan_file, "JSON tp_plan file {\"pattern\": \"strategy\"}, or auto (the model's own plan)")
      ->capture_default_str();
  CLI::Option* ids =
      app.add_option("--prompt-ids", o.prompt_ids, "prompt token ids, separated by spaces")->capture_default_str();
  CLI::Option* prompt = app.add_option_function<std::string>(
      "--prompt", [&o](const std::string& text) { o.prompt = text; },
      "prompt text, encoded with the model's tokenizer; the answer is printed as text");
  prompt->excludes(ids);
  CLI::Option* chat =
      app.add_flag("--chat", o.chat, "wrap --prompt in the model's ChatML chat template")->needs(prompt);
  app.add_option("--system", o.system, "--chat: a system message before the prompt")->needs(chat);
  app.add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app.add_option("--dtype", o.dtype_flag, "f32 | bf16 (weights and activations)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu | cuda (each rank's GPU: node-local rank modulo the GPUs)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--dump-logits", o.dump_logits, "write the prompt's f32 logits [prompt, vocab] to this .npy");
  app.add_flag("--check", o.check, "compare with the unsharded model on rank 0");
  app.add_flag("--explain", o.explain, "print how the plan placed every parameter");
  app.add_flag("--stream", o.stream, "print each generated id as soon as it is chosen (rank 0)");
  app.add_option("--quantize", o.quantize,
                 "quantize the Linear and embedding weights at load: " + models::quantize_names())
      ->each([&o](const std::string&) { o.quantize_given = true; });
}

void add_flags(CLI::App& app, TrainFlags& o) {
  app.add_option("--model", o.model_dir, "checkpoint directory (config.json + safetensors) or a .gguf file")
      ->required();
  app.add_option("--tokens", o.tokens_file, ".npy of integer token ids [N, T+1]")->required();
  app.add_option("--steps", o.steps, "optimizer steps")->check(CLI::Range(int64_t(1), int64_t(1) << 40))->required();
  app.add_option("--batch", o.batch, "rows per step")->check(CLI::Range(int64_t(1), int64_t(1) << 40))->required();
  app.add_option("--lr", o.lr, "AdamW learning rate")->check(CLI::Range(0.0, 1e6))->required();
  app.add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay, on every parameter")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--clip-grad-norm", o.clip_grad_norm, "clip the global gradient 2-norm to this before each step")
      ->check(CLI::PositiveNumber);
  app.add_option("--plan", o.plan_file, "JSON tp_plan file {\"pattern\": \"strategy\"}, or auto (the model's own plan)")
      ->capture_default_str();
  app.add_option("--dtype", o.dtype_flag, "f32 | bf16 (bf16 compute, f32 master weights and AdamW states)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  app.add_flag("--checkpoint-activations", o.checkpoint_activations, "recompute each decoder layer in backward");
  app.add_option("--log", o.log_file, "append each step's JSON line to this file (rank 0)");
  app.add_option("--save", o.save_dir, "write the trained weights here as a Hugging Face checkpoint");
  app.add_flag("--check", o.check, "rerun the steps unsharded on rank 0 and compare losses and weights");
}

// CLI11's Range and PositiveNumber let NaN through (every comparison with it is false).
void check_flags(const GenerateFlags& o) {
  if (o.prompt)
    check(!o.prompt->empty(), "generate", "--prompt is empty");
  else
    parse_prompt_ids(o.prompt_ids);
  check_output_file(o.dump_logits, "generate", "--dump-logits");
  if (o.quantize_given) models::check_quantize_name(o.quantize, "--quantize");
}

void check_flags(const TrainFlags& o) {
  check_finite(o.lr, "train", "--lr");
  check_finite(o.weight_decay, "train", "--weight-decay");
  if (o.clip_grad_norm) check_finite(*o.clip_grad_norm, "train", "--clip-grad-norm");
  check_output_file(o.log_file, "train", "--log");
  check_output_directory(o.save_dir, "train", "--save");
}

void check_plan_matched(const nn::PlanReport& report, const std::string& plan_file, const char* program) {
  check(report.unmatched_rules.empty(), program, "--plan {}: the rule '{}' matches no module of the model", plan_file,
        report.unmatched_rules.empty() ? "" : report.unmatched_rules.front());
}

text::Tokenizer prompt_tokenizer(const std::string& model) {
  try {
    return text::Tokenizer::load(model);
  } catch (const ValueError& e) {
    fail("generate", "--prompt needs the model's tokenizer, and {} has none: {}", model, e.what());
  }
}

std::string prompt_text(const GenerateFlags& o, const text::Tokenizer& tokenizer) {
  if (!o.chat) return *o.prompt;
  check(tokenizer.token_to_id("<|im_start|>") && tokenizer.token_to_id("<|im_end|>"), "generate",
        "--chat: the tokenizer of {} has no <|im_start|> / <|im_end|> tokens (ChatML)", tokenizer.source());
  std::string text;
  if (!o.system.empty()) text += "<|im_start|>system\n" + o.system + "<|im_end|>\n";
  return text + "<|im_start|>user\n" + *o.prompt + "<|im_end|>\n<|im_start|>assistant\n";
}

std::vector<int64_t> prompt_ids(const GenerateFlags& o, const text::Tokenizer* tokenizer, int64_t vocab,
                                int64_t context) {
  const char* flag = o.prompt ? "--prompt" : "--prompt-ids";
  std::vector<int64_t> ids;
  if (o.prompt) {
    check(tokenizer != nullptr, "generate", "--prompt needs the model's tokenizer");
    ids = tokenizer->encode(prompt_text(o, *tokenizer));
    check(!ids.empty(), "generate", "--prompt encodes to no tokens");
    for (size_t i = 0; i < ids.size(); ++i)
      check(ids[i] < vocab, "generate", "--prompt: token {} at position {} is outside the model's vocabulary [0, {})",
            ids[i], i, vocab);
  } else {
    ids = parse_prompt_ids(o.prompt_ids, vocab);
  }
  const auto length = int64_t(ids.size());
  check(length <= context, "generate", "{}: the prompt is {} tokens, longer than the model's context of {} positions",
        flag, length, context);
  check(length + o.max_new_tokens <= context, "generate",
        "--max-new-tokens {}: the prompt ({} tokens) and the new tokens exceed the model's context of {} positions",
        o.max_new_tokens, length, context);
  return ids;
}

std::vector<int64_t> parse_prompt_ids(const std::string& text, int64_t vocab) {
  const char* op = "generate";
  std::istringstream in(text);
  std::vector<int64_t> ids;
  for (std::string word; in >> word;) {
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    check(used == word.size(), op, "--prompt-ids: '{}' is not an integer", word);
    check(id >= 0, op, "--prompt-ids: id {} at position {} is negative", id, ids.size());
    check(vocab <= 0 || id < vocab, op, "--prompt-ids: id {} at position {} is outside the vocabulary [0, {})", id,
          ids.size(), vocab);
    ids.push_back(id);
  }
  check(!ids.empty(), op, "--prompt-ids: no ids in '{}'", text);
  return ids;
}

}  // namespace dtensor::programs
