// Bad-input rows: the command lines of examples/generate and examples/train, parsed in-process
// through the calls the programs make (tools::parse_command_line, programs::check_flags). The
// programs themselves are run with bad input by tests/check_bad_input_programs.sh.
#include "bad_input_rows.hpp"

#include "program_flags.hpp"
#include "tools/parse_on_every_rank.hpp"

using namespace dtensor;

namespace bad_input {

namespace {

template <typename Flags>
void parse(const char* program, const std::vector<std::string>& args) {
  CLI::App app;
  Flags flags;
  programs::add_flags(app, flags);
  tools::parse_command_line(app, args, program);
  programs::check_flags(flags);
}

// A generate command line: --model M plus `args`; the message must name `argument`.
Row generate_row(const std::string& what, std::vector<std::string> args, const std::string& argument,
                 bool with_model = true) {
  if (with_model) args.insert(args.begin(), {"--model", "m"});
  return row<ValueError>("generate " + what, argument, [args] { parse<programs::GenerateFlags>("generate", args); });
}

// A train command line: the required flags (unless `args` gives them) plus `args`.
Row train_row(const std::string& what, std::vector<std::string> args, const std::string& argument) {
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--model", "m"}, {"--tokens", "t.npy"}, {"--steps", "2"}, {"--batch", "1"}, {"--lr", "1e-3"}}) {
    if (flag != argument && std::find(args.begin(), args.end(), flag) == args.end())
      args.insert(args.begin(), {flag, value});
  }
  return row<ValueError>("train " + what, argument, [args] { parse<programs::TrainFlags>("train", args); });
}

}  // namespace

std::vector<Row> program_rows() {
  const std::string no_dir = (scratch_dir() / "absent-dir" / "x").string();
  return {
      generate_row("without --model", {}, "--model", false),
      generate_row("--model without a value", {"--model"}, "--model", false),
      generate_row("unknown flag", {"--bogus"}, "--bogus"),
      generate_row("a stray positional argument", {"extra"}, "extra"),
      generate_row("--max-new-tokens negative", {"--max-new-tokens", "-1"}, "--max-new-tokens"),
      generate_row("--max-new-tokens zero", {"--max-new-tokens", "0"}, "--max-new-tokens"),
      generate_row("--max-new-tokens not a number", {"--max-new-tokens", "many"}, "--max-new-tokens"),
      generate_row("--max-new-tokens past the limit", {"--max-new-tokens", "2000000"}, "--max-new-tokens"),
      generate_row("--dtype f16", {"--dtype", "f16"}, "--dtype"),
      generate_row("--device tpu", {"--device", "tpu"}, "--device"),
      generate_row("--quantize of an unknown format", {"--quantize", "q3_k"}, "--quantize"),
      generate_row("--quantize empty", {"--quantize", ""}, "--quantize"),
      generate_row("--prompt-ids with a word", {"--prompt-ids", "1 two 3"}, "--prompt-ids"),
      generate_row("--prompt-ids negative", {"--prompt-ids", "4 -1"}, "--prompt-ids"),
      generate_row("--prompt-ids fractional", {"--prompt-ids", "1.5"}, "--prompt-ids"),
      generate_row("--prompt-ids overflowing", {"--prompt-ids", "99999999999999999999"}, "--prompt-ids"),
      generate_row("--prompt-ids empty", {"--prompt-ids", "  "}, "--prompt-ids"),
      generate_row("--prompt with --prompt-ids", {"--prompt", "hi", "--prompt-ids", "1 2"}, "--prompt-ids"),
      generate_row("--prompt empty", {"--prompt", ""}, "--prompt"),
      generate_row("--chat without --prompt", {"--chat"}, "--prompt"),
      generate_row("--system without --chat", {"--prompt", "hi", "--system", "be brief"}, "--chat"),
      generate_row("--dump-logits in a missing directory", {"--dump-logits", no_dir}, "--dump-logits"),
      generate_row("--dump-logits a directory", {"--dump-logits", scratch_dir().string()}, "--dump-logits"),
      row<ValueError>("generate --prompt-ids past the vocabulary", "--prompt-ids",
                      [] { programs::parse_prompt_ids("1 2 50", 50); }),
      train_row("without --tokens", {}, "--tokens"),
      train_row("without --steps", {}, "--steps"),
      train_row("without --lr", {}, "--lr"),
      train_row("--steps zero", {"--steps", "0"}, "--steps"),
      train_row("--steps negative", {"--steps", "-3"}, "--steps"),
      train_row("--steps not a number", {"--steps", "ten"}, "--steps"),
      train_row("--batch zero", {"--batch", "0"}, "--batch"),
      train_row("--batch fractional", {"--batch", "1.5"}, "--batch"),
      train_row("--lr negative", {"--lr", "-1e-3"}, "--lr"),
      train_row("--lr NaN", {"--lr", "nan"}, "--lr"),
      train_row("--lr not a number", {"--lr", "fast"}, "--lr"),
      train_row("--weight-decay negative", {"--weight-decay", "-0.1"}, "--weight-decay"),
      train_row("--weight-decay NaN", {"--weight-decay", "nan"}, "--weight-decay"),
      train_row("--clip-grad-norm zero", {"--clip-grad-norm", "0"}, "--clip-grad-norm"),
      train_row("--clip-grad-norm NaN", {"--clip-grad-norm", "nan"}, "--clip-grad-norm"),
      train_row("--clip-grad-norm infinite", {"--clip-grad-norm", "inf"}, "--clip-grad-norm"),
      train_row("--dtype f64", {"--dtype", "f64"}, "--dtype"),
      train_row("unknown flag", {"--epochs", "3"}, "--epochs"),
      train_row("--log in a missing directory", {"--log", no_dir}, "--log"),
      train_row("--save under a file", {"--save", (scratch_dir() / "empty.npy" / "out").string()}, "--save"),
  };
}

}  // namespace bad_input
