// Bad-input rows: tokenizers (text/tokenizer.hpp) from a tokenizer.json or GGUF metadata that
// text/ does not implement or that is broken, and text that cannot be encoded.
#include "bad_input_rows.hpp"
#include "gguf_test_writer.hpp"

#include "text/tokenizer.hpp"

#include <nlohmann/json.hpp>

using namespace dtensor;

namespace bad_input {

namespace {

const char* kTokenizer = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
  "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}})";

// The tokenizer above with `key` set to `value` (a JSON pointer and JSON text).
Row json_row(const std::string& what, const std::string& key, const std::string& value, const std::string& argument) {
  return row<ValueError>("tokenizer.json: " + what, argument, [key, value] {
    nlohmann::json j = nlohmann::json::parse(kTokenizer);
    j[nlohmann::json::json_pointer(key)] = nlohmann::json::parse(value);
    text::Tokenizer::from_json_text(j.dump(), "tokenizer.json");
  });
}

Row gguf_row(const std::string& what, const std::string& model, const std::string& pre, const std::string& argument) {
  return row<ValueError>("gguf tokenizer: " + what, argument, [what, model, pre] {
    gguf_test::GgufWriter w;
    w.add_string("general.architecture", "llama");
    if (!model.empty()) w.add_string("tokenizer.ggml.model", model);
    w.add_string("tokenizer.ggml.pre", pre);
    w.add_string_array("tokenizer.ggml.tokens", {"a", "b", "ab"});
    w.add_string_array("tokenizer.ggml.merges", {"a b"});
    const auto path = scratch_dir() / ("tokenizer-" + std::to_string(std::hash<std::string>{}(what)) + ".gguf");
    write_file(path, w.bytes());
    text::Tokenizer::load(path.string());
  });
}

}  // namespace

std::vector<Row> tokenizer_rows() {
  return {
      json_row("WordPiece model", "/model/type", R"("WordPiece")", "model.type"),
      json_row("Unigram model", "/model/type", R"("Unigram")", "model.type"),
      json_row("Whitespace pre-tokenizer", "/pre_tokenizer", R"({"type": "Whitespace"})", "pre_tokenizer.type"),
      json_row("NFC normalizer", "/normalizer", R"({"type": "NFC"})", "normalizer.type"),
      json_row("WordPiece decoder", "/decoder", R"({"type": "WordPiece"})", "decoder.type"),
      json_row("BertProcessing", "/post_processor", R"({"type": "BertProcessing"})", "post_processor.type"),
      json_row("a merge outside the vocabulary", "/model/merges/0", R"("a c")", "model.merges[0]"),
      json_row("vocab not an object", "/model/vocab", "[1, 2]", "tokenizer.json"),
      row<ValueError>("tokenizer.json: not JSON", "broken.json",
                      [] { text::Tokenizer::from_json_text("{\"model\": ", "broken.json"); }),
      row<ValueError>("tokenizer: missing file", "absent-tokenizer.json",
                      [] { text::Tokenizer::load((scratch_dir() / "absent-tokenizer.json").string()); }),
      row<ValueError>("tokenizer: text that is not UTF-8", "UTF-8",
                      [] { text::Tokenizer::from_json_text(kTokenizer, "t").encode("a\xFF"); }),
      row<ValueError>("tokenizer: decode an id outside the vocabulary", "7",
                      [] { text::Tokenizer::from_json_text(kTokenizer, "t").decode(std::vector<int64_t>{7}); }),
      gguf_row("bert model", "bert", "default", "tokenizer.ggml.model"),
      gguf_row("no tokenizer", "", "default", "tokenizer.ggml.model"),
      gguf_row("unknown pre", "gpt2", "qwen2", "tokenizer.ggml.pre"),
  };
}

}  // namespace bad_input
