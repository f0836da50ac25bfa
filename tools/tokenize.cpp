// Tokenizes stdin, one text per line, with a model's tokenizer (text/tokenizer.hpp):
//
//   build/tools/tokenize --model DIR|FILE.gguf|tokenizer.json [--decode] [--no-special] [--escaped]
//
// Encoding prints one line of space-separated ids per input line; --decode reads such id lines
// and prints one text line each. --no-special: encode without the post-processor's BOS / EOS, and
// decode without special tokens (by default decode keeps them, so that text with <|im_start|> in it
// round-trips). --escaped: texts are written with \n, \t, \r and \\ escapes (in and out), so that a
// line can hold newlines and tabs; other backslashes are kept as they are. Without it a line's text
// is taken as it is, its "\n" (and a "\r" before it) ending the line.
//
// --timing prints "tokenize: encoded N texts, T tokens in S s = X tokens/s" on stderr: the time
// inside encode() only, without loading, reading or printing.
//
// Bad input (a line that is not valid UTF-8, an id that is not a number or is outside the
// vocabulary) is an error naming the line; the exit code is 1 and nothing more is printed.
#include "tensor/error.hpp"
#include "text/tokenizer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

using namespace dtensor;

namespace {

std::string unescape(const std::string& line) {
  std::string out;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\\' || i + 1 == line.size()) {
      out += line[i];
      continue;
    }
    const char c = line[++i];
    if (c == 'n')
      out += '\n';
    else if (c == 't')
      out += '\t';
    else if (c == 'r')
      out += '\r';
    else if (c == '\\')
      out += '\\';
    else
      out += {'\\', c};
  }
  return out;
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\\')
      out += "\\\\";
    else
      out += c;
  }
  return out;
}

std::vector<int64_t> parse_ids(const std::string& line) {
  std::vector<int64_t> ids;
  const char* p = line.data();
  const char* end = p + line.size();
  while (p < end) {
    if (*p == ' ' || *p == '\t') {
      ++p;
      continue;
    }
    int64_t id = 0;
    auto [next, ec] = std::from_chars(p, end, id);
    check(ec == std::errc() && (next == end || *next == ' ' || *next == '\t'), "tokenize",
          "{:?} is not a list of token ids", line);
    ids.push_back(id);
    p = next;
  }
  return ids;
}

struct Options {
  std::string model;
  bool decode = false, no_special = false, escaped = false, timing = false;
};

int run(const Options& o) {
  const text::Tokenizer tokenizer = text::Tokenizer::load(o.model);
  const bool decode = o.decode, no_special = o.no_special, escaped = o.escaped;
  double encode_seconds = 0;
  size_t texts = 0, tokens = 0;
  std::string line;
  for (size_t line_number = 1; std::getline(std::cin, line); ++line_number) {
    if (!escaped && line.ends_with('\r')) line.pop_back();
    try {
      if (decode) {
        const std::string text = tokenizer.decode(parse_ids(line), no_special);
        fmt::print("{}\n", escaped ? escape(text) : text);
      } else {
        const std::string text = escaped ? unescape(line) : line;
        const auto start = std::chrono::steady_clock::now();
        const std::vector<int64_t> ids = tokenizer.encode(text, !no_special);
        encode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        ++texts;
        tokens += ids.size();
        fmt::print("{}\n", fmt::join(ids, " "));
      }
    } catch (const Error& e) {
      std::fflush(stdout);
      fmt::print(stderr, "tokenize: line {}: {}\n", line_number, e.what());
      return 1;
    }
  }
  if (o.timing)
    fmt::print(stderr, "tokenize: encoded {} texts, {} tokens in {:.4f} s = {:.0f} tokens/s\n", texts, tokens,
               encode_seconds, encode_seconds > 0 ? double(tokens) / encode_seconds : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Text to token ids (one text per stdin line) or back (--decode)."};
  Options o;
  app.add_option("--model", o.model, "a model directory with tokenizer.json, a .gguf file or a tokenizer.json")
      ->required();
  app.add_flag("--decode", o.decode, "read id lines and print text lines");
  app.add_flag("--no-special", o.no_special, "encode: no BOS/EOS; decode: drop special tokens");
  app.add_flag("--escaped", o.escaped, "texts use \\n \\t \\r \\\\ escapes");
  app.add_flag("--timing", o.timing, "print the encoding speed on stderr");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "tokenize: {}\n", e.what());
    return 1;
  }
}
