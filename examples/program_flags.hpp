// The command lines of examples/generate and examples/train: their flags, and the checks CLI11's
// validators cannot make. The programs parse with tools::parse_on_every_rank; the bad-input sweep
// (tests/bad_input_rows_programs.cpp) calls the same functions in-process.
//
//   CLI::App app;
//   GenerateFlags flags;
//   add_flags(app, flags);
//   tools::parse_command_line(app, args, "generate");   // ValueError naming a bad flag
//   check_flags(flags);                                  // ValueError naming a bad value
#pragma once

#include "nn/tp_plan.hpp"
#include "tensor/dtype.hpp"
#include "text/tokenizer.hpp"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dtensor::programs {

struct GenerateFlags {
  std::string model_dir;
  std::string plan_file = "auto";  // "auto": the model's built-in plan
  std::string prompt_ids = "1 2 3 4 5 6 7 8";
  std::optional<std::string> prompt;  // text, encoded with the model's tokenizer (excludes --prompt-ids)
  bool chat = false;                  // wrap --prompt in ChatML
  std::string system;                 // --chat's system message (empty: none)
  int64_t max_new_tokens = 16;
  std::string dtype_flag = "f32";
  std::string device = "cpu";  // or "cuda"
  std::string dump_logits;     // empty: none
  bool check = false;
  bool explain = false;
  bool stream = false;
  std::string quantize;  // empty: weights in --dtype; else a models::quantize_names() name
  bool quantize_given = false;

  DType dtype() const { return dtype_from_name(dtype_flag); }
};

struct TrainFlags {
  std::string model_dir;
  std::string tokens_file;
  int64_t steps = 1;
  int64_t batch = 1;
  double lr = 1e-3;
  double weight_decay = 0.01;
  std::optional<double> clip_grad_norm;
  std::string plan_file = "auto";
  std::string dtype_flag = "f32";
  bool checkpoint_activations = false;
  std::string log_file;  // empty: none
  std::string save_dir;  // empty: none
  bool check = false;
};

void add_flags(CLI::App& app, GenerateFlags& flags);
void add_flags(CLI::App& app, TrainFlags& flags);

// ValueError naming the flag: --prompt-ids that are not non-negative integers, an unknown
// --quantize format, a --dump-logits
// whose directory cannot be written; numbers that are not finite; --log / --save under a directory
// that cannot be written (refused before the run, not on rank 0 after it).
void check_flags(const GenerateFlags& flags);
void check_flags(const TrainFlags& flags);

// The model's tokenizer for --prompt (tokenizer.json in a model directory, or a GGUF file's
// tokenizer.ggml.* metadata): ValueError naming --prompt when the model has none.
text::Tokenizer prompt_tokenizer(const std::string& model);

// --prompt as the model sees it: with --chat, ChatML ("<|im_start|>user\n...<|im_end|>\n
// <|im_start|>assistant\n", a system turn first when --system is given); ValueError naming --chat
// when the tokenizer has no <|im_start|> / <|im_end|> tokens.
std::string prompt_text(const GenerateFlags& flags, const text::Tokenizer& tokenizer);

// The prompt's ids: --prompt encoded with `tokenizer` (with its BOS), else --prompt-ids. ValueError
// naming the flag for an id outside [0, vocab), a prompt longer than the model's context (`context`
// positions) or, with --max-new-tokens, one whose generation would run past it.
std::vector<int64_t> prompt_ids(const GenerateFlags& flags, const text::Tokenizer* tokenizer, int64_t vocab,
                                int64_t context);

// ValueError naming the --plan file and the pattern when a rule of it matched no module of the
// model: a misspelt pattern would otherwise leave its modules whole without a word.
void check_plan_matched(const nn::PlanReport& report, const std::string& plan_file, const char* program);

// "1 2 3" -> {1, 2, 3}: ValueError naming --prompt-ids for a word that is not an integer, a negative
// id, an id >= vocab (when vocab > 0) or no ids at all.
std::vector<int64_t> parse_prompt_ids(const std::string& text, int64_t vocab = 0);

}  // namespace dtensor::programs
