// Text to token ids and back, as Hugging Face `tokenizers` does it, for the BPE tokenizers of the
// Llama family (docs/design.md section 6, Tokenizers):
//   - byte-level BPE (GPT-2, Llama-3, SmolLM2): a ByteLevel pre-tokenizer (GPT-2's regex, or a Split
//     with Llama-3's regex, optionally after Digits), every byte spelled in GPT-2's alphabet;
//   - SentencePiece-style BPE (Llama-2, Mistral, TinyLlama): spaces as "▁" (a Prepend + Replace
//     normalizer or a Metaspace pre-tokenizer), <0xNN> byte fallback tokens, fused unknowns.
// Loaded from a tokenizer.json (or a model directory holding one) or from a GGUF file's
// tokenizer.ggml.* metadata. Added tokens are cut out of the text first, as Hugging Face does;
// encode(text, true) adds the post-processor's BOS / EOS.
//
//   text::Tokenizer tok = text::Tokenizer::load("model-dir");      // or "model.gguf", "tokenizer.json"
//   std::vector<int64_t> ids = tok.encode("Hello world");
//   std::string back = tok.decode(ids);                             // special tokens skipped
//   text::StreamDecoder stream(tok);
//   for (int64_t id : ids) fmt::print("{}", stream.push(id));      // whole characters only
//   fmt::print("{}\n", stream.finish());
//
// A tokenizer.json whose model, normalizer, pre-tokenizer, decoder or post-processor text/ does
// not implement is a ValueError naming the field (`model.type`, `pre_tokenizer.type`, ...); so is a
// GGUF tokenizer other than gpt2 / llama (`tokenizer.ggml.model`) or an unknown
// `tokenizer.ggml.pre`. Encoding text that is not valid UTF-8 is a ValueError naming the byte.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dtensor::io {
class GgufFile;
}

namespace dtensor::text {

namespace detail {
struct TokenizerData;
}

class Tokenizer {
 public:
  // A directory (its tokenizer.json, with BOS / EOS names from tokenizer_config.json when there is
  // one), a path ending in .gguf, or a tokenizer.json file.
  static Tokenizer load(const std::string& path);
  static Tokenizer from_json_file(const std::string& path);
  // `source` names the text in messages.
  static Tokenizer from_json_text(std::string_view json, const std::string& source);
  static Tokenizer from_gguf(const io::GgufFile& file);

  std::vector<int64_t> encode(std::string_view text, bool add_special = true) const;
  // Ids outside the vocabulary are a ValueError naming the id. Without a decoder in the file the
  // tokens are joined with spaces, as Hugging Face does.
  std::string decode(std::span<const int64_t> ids, bool skip_special = true) const;

  // One past the largest id the model or the added tokens define.
  int64_t vocab_size() const;
  std::optional<int64_t> token_to_id(std::string_view token) const;
  // The token's spelling in the vocabulary ("Ġworld", "▁the", "<0x0A>"); ValueError out of range.
  const std::string& id_to_token(int64_t id) const;
  bool is_special(int64_t id) const;
  std::optional<int64_t> bos_id() const;
  std::optional<int64_t> eos_id() const;
  // "byte-level BPE" or "SentencePiece BPE".
  const std::string& kind() const;
  // The file it was loaded from.
  const std::string& source() const;

 private:
  explicit Tokenizer(std::shared_ptr<detail::TokenizerData> data);
  std::shared_ptr<detail::TokenizerData> data_;
};

// Decodes generated ids one at a time, returning text as soon as it is final: whole UTF-8
// characters only (a character split over byte tokens waits for its last byte). The pieces put
// together are decode() of all the ids, as long as the byte tokens form valid UTF-8 (ill-formed
// bytes decode as U+FFFD either way, but not always as many).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  std::string push(int64_t id);
  // Whatever is still held back (an unfinished character decodes as U+FFFD, as decode() does).
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::vector<int64_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

}  // namespace dtensor::text
