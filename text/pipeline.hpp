// The stages of a Hugging Face tokenizer as text/ implements them (internal to text/): the
// normalizer, the pre-tokenizer, the BPE model, the decoder and the post-processor. The loaders
// (tokenizer_json.cpp, tokenizer_gguf.cpp) build these from a file; tokenizer.cpp runs them.
#pragma once

#include "text/regex.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace dtensor::text::detail {

// A piece of text between the stages, with the byte offset of its start in the input (Metaspace's
// prepend_scheme "first" prepends only to the piece that starts the input).
struct Piece {
  std::string text;
  size_t offset = 0;
};

struct NormalizerStep {
  enum class Kind { Prepend, Replace } kind = Kind::Prepend;
  std::string text;     // Prepend: what to prepend; Replace: the literal pattern
  std::string content;  // Replace: the replacement
};

enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext };
enum class PrependScheme { Always, First, Never };

struct PreTokenizerStep {
  enum class Kind { ByteLevel, Split, Metaspace } kind = Kind::ByteLevel;
  // ByteLevel: an optional GPT-2 regex split (use_regex), then each byte spelled in its alphabet.
  bool add_prefix_space = false;
  // ByteLevel (use_regex) and Split (Digits is a Split on \p{N} or \p{N}+).
  std::shared_ptr<const Regex> regex;
  std::string literal;  // Split on a String pattern
  SplitBehavior behavior = SplitBehavior::Isolated;
  // Metaspace
  std::string replacement;
  PrependScheme prepend_scheme = PrependScheme::Always;
  bool split = false;
};

struct DecoderStep {
  enum class Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace } kind = Kind::ByteLevel;
  std::string pattern, content;  // Replace; Strip: content is the one character stripped
  size_t start = 0, stop = 0;    // Strip
  std::string replacement;       // Metaspace
  PrependScheme prepend_scheme = PrependScheme::Always;
};

struct PairHash {
  size_t operator()(const std::pair<int32_t, int32_t>& p) const {
    return std::hash<uint64_t>{}((uint64_t(uint32_t(p.first)) << 32) | uint32_t(p.second));
  }
};

struct BpeModel {
  std::unordered_map<std::string, int32_t> vocab;
  // (left id, right id) -> (rank, merged id); the lowest rank merges first.
  std::unordered_map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>, PairHash> merges;
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::array<int32_t, 256> byte_tokens{};  // <0xNN> ids when byte_fallback (-1 if absent)
};

struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, single_word = false;
};

// TemplateProcessing's single-sequence template: ids before and after the text.
struct PostProcessor {
  std::vector<int64_t> prefix, suffix;
};

// Words already through the pre-tokenizer and BPE, by their spelling: text repeats words a lot.
// Bounded; shared by the threads that encode with one tokenizer.
class WordCache {
 public:
  bool find(const std::string& word, std::vector<int64_t>& out) {
    std::lock_guard lock(mutex_);
    auto it = words_.find(word);
    if (it == words_.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }
  void add(const std::string& word, std::span<const int64_t> ids) {
    std::lock_guard lock(mutex_);
    if (words_.size() >= kMaxWords) words_.clear();
    words_.emplace(word, std::vector<int64_t>(ids.begin(), ids.end()));
  }

 private:
  static constexpr size_t kMaxWords = 100000;
  std::mutex mutex_;
  std::unordered_map<std::string, std::vector<int64_t>> words_;
};

struct TokenizerData {
  std::string source;  // the file it came from, for messages
  std::string kind;    // "byte-level BPE" or "SentencePiece BPE"
  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer;
  BpeModel model;
  std::vector<DecoderStep> decoder;
  PostProcessor post_processor;
  std::vector<AddedToken> added;
  std::vector<std::string> id_to_token;  // every id the model or the added tokens define
  std::vector<bool> special;             // by id
  std::optional<int64_t> bos_id, eos_id;
  std::shared_ptr<WordCache> cache = std::make_shared<WordCache>();

  // Derived once by finish(): the added tokens by their first byte, longest first.
  std::array<std::vector<size_t>, 256> added_by_first_byte;
  void finish();
};

// The stages (pipeline.cpp).
void normalize(const std::vector<NormalizerStep>& steps, std::string& text);
std::vector<Piece> pre_tokenize(const std::vector<PreTokenizerStep>& steps, Piece input);
void bpe_encode(const BpeModel& model, const std::string& piece, std::vector<int64_t>& out);
std::string run_decoder(const std::vector<DecoderStep>& steps, std::vector<std::string> tokens);

}  // namespace dtensor::text::detail
