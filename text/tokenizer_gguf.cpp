// GGUF tokenizer.ggml.* metadata -> TokenizerData, the same tokenizer Hugging Face transformers
// builds from the file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`) and llama.cpp runs:
//   gpt2  -> byte-level BPE with the file's merges; tokenizer.ggml.pre picks the split regex;
//   llama -> SentencePiece BPE: merges recovered from the vocabulary and its scores, Metaspace "▁"
//            (prepended to the first piece when tokenizer.ggml.add_space_prefix), byte fallback.
// Control tokens (token_type 3) and the unknown token (2) become special added tokens,
// user-defined ones (4) plain added tokens, so that they are matched whole in the text.
#include "io/gguf.hpp"
#include "tensor/error.hpp"
#include "text/tokenizer_loaders.hpp"
#include "text/unicode.hpp"

#include <algorithm>

namespace dtensor::text::detail {

namespace {

DecoderStep decoder_step(DecoderStep::Kind kind) {
  DecoderStep step;
  step.kind = kind;
  return step;
}

// SentencePiece's spelling of a space, U+2581.
const std::string kSpaceMark = "\u2581";

enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4 };

// The pre-tokenizer of each tokenizer.ggml.pre value text/ knows for gpt2 vocabularies.
void set_byte_level_pre(TokenizerData& d, const std::string& pre, const std::string& path) {
  PreTokenizerStep byte_level;
  byte_level.kind = PreTokenizerStep::Kind::ByteLevel;
  if (pre == "default" || pre == "gpt-2" || pre == "gpt2") {
    byte_level.regex = std::make_shared<Regex>(gpt2_split_pattern(), "tokenizer.ggml.pre");
  } else if (pre == "smollm") {
    // SmolLM2's tokenizer.json: Digits(individual_digits) then ByteLevel with GPT-2's regex.
    PreTokenizerStep digits;
    digits.kind = PreTokenizerStep::Kind::Split;
    digits.regex = std::make_shared<Regex>(R"(\p{N})", "tokenizer.ggml.pre");
    d.pre_tokenizer.push_back(std::move(digits));
    byte_level.regex = std::make_shared<Regex>(gpt2_split_pattern(), "tokenizer.ggml.pre");
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    // Llama-3's tokenizer.json takes a word found whole in the vocabulary before merging
    // (ignore_merges), as llama.cpp does for this pre-tokenizer; the GGUF does not record it.
    d.model.ignore_merges = true;
    PreTokenizerStep split;
    split.kind = PreTokenizerStep::Kind::Split;
    split.regex = std::make_shared<Regex>(llama3_split_pattern(), "tokenizer.ggml.pre");
    d.pre_tokenizer.push_back(std::move(split));
  } else {
    fail("tokenizer", "{}: tokenizer.ggml.pre {:?} is not supported (supported: default, gpt2, smollm, llama-bpe)",
         path, pre);
  }
  d.pre_tokenizer.push_back(std::move(byte_level));
  d.decoder.push_back(decoder_step(DecoderStep::Kind::ByteLevel));
}

// The merges transformers' generate_merges recovers from a SentencePiece vocabulary: every split
// of a token into two vocabulary tokens, ordered by the token's score (best first), then by the
// lengths of the two sides (longer first), ties kept in vocabulary order.
std::vector<std::pair<std::string, std::string>> merges_from_scores(
    const std::vector<std::string>& tokens, const std::vector<double>& scores,
    const std::unordered_map<std::string, int32_t>& vocab) {
  struct Merge {
    std::string left, right;
    double score;
    size_t left_chars, right_chars;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& token = tokens[i];
    std::vector<Merge> local;
    size_t chars = 0;
    for (size_t pos = 0; pos < token.size();) {
      pos += std::min(utf8_char_length(static_cast<unsigned char>(token[pos])), token.size() - pos);
      ++chars;
      if (pos >= token.size()) break;
      std::string left = token.substr(0, pos), right = token.substr(pos);
      if (vocab.count(left) && vocab.count(right))
        local.push_back({std::move(left), std::move(right), scores[i], chars, utf8_length(token) - chars});
    }
    std::stable_sort(local.begin(), local.end(), [&](const Merge& a, const Merge& b) {
      return std::pair(vocab.at(a.left), vocab.at(a.right)) < std::pair(vocab.at(b.left), vocab.at(b.right));
    });
    for (Merge& m : local) merges.push_back(std::move(m));
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    return std::tuple(a.score, a.left_chars, a.right_chars) > std::tuple(b.score, b.left_chars, b.right_chars);
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (Merge& m : merges) out.emplace_back(std::move(m.left), std::move(m.right));
  return out;
}

void set_sentencepiece(TokenizerData& d, const io::GgufFile& file, const std::vector<std::string>& tokens) {
  const std::string pre = file.has("tokenizer.ggml.pre") ? file.get_string("tokenizer.ggml.pre") : "default";
  check(pre == "default", "tokenizer",
        "{}: tokenizer.ggml.pre {:?} is not supported for tokenizer.ggml.model llama "
        "(supported: default)",
        d.source, pre);
  const std::vector<double> scores = file.get_float_array("tokenizer.ggml.scores");
  check(scores.size() == tokens.size(), "tokenizer", "{}: tokenizer.ggml.scores has {} entries for {} tokens", d.source,
        scores.size(), tokens.size());
  d.model.byte_fallback = true;
  d.model.fuse_unk = true;
  set_merges(d, merges_from_scores(tokens, scores, d.model.vocab), "tokenizer.ggml.scores");
  const bool space_prefix =
      !file.has("tokenizer.ggml.add_space_prefix") || file.get_bool("tokenizer.ggml.add_space_prefix");
  PreTokenizerStep metaspace;
  metaspace.kind = PreTokenizerStep::Kind::Metaspace;
  metaspace.replacement = kSpaceMark;
  metaspace.prepend_scheme = space_prefix ? PrependScheme::First : PrependScheme::Never;
  d.pre_tokenizer.push_back(metaspace);
  DecoderStep replace = decoder_step(DecoderStep::Kind::Replace);
  replace.pattern = metaspace.replacement;
  replace.content = std::string(1, ' ');
  d.decoder = {replace, decoder_step(DecoderStep::Kind::ByteFallback), decoder_step(DecoderStep::Kind::Fuse)};
  if (space_prefix) {
    DecoderStep strip = decoder_step(DecoderStep::Kind::Strip);
    strip.content = std::string(1, ' ');
    strip.start = 1;
    d.decoder.push_back(strip);
  }
}

std::optional<int64_t> optional_id(const io::GgufFile& file, const char* key, size_t vocab) {
  if (!file.has(key)) return std::nullopt;
  const int64_t id = file.get_int(key);
  check(id >= 0 && size_t(id) < vocab, "tokenizer", "{}: {} {} is outside the vocabulary [0, {})", file.path(), key, id,
        vocab);
  return id;
}

}  // namespace

std::shared_ptr<TokenizerData> load_gguf(const io::GgufFile& file) {
  auto d = std::make_shared<TokenizerData>();
  d->source = file.path();
  check(file.has("tokenizer.ggml.model"), "tokenizer", "{} has no tokenizer (tokenizer.ggml.model is missing)",
        file.path());
  const std::string model = file.get_string("tokenizer.ggml.model");
  check(model == "gpt2" || model == "llama", "tokenizer",
        "{}: tokenizer.ggml.model {:?} is not supported (supported: gpt2, llama)", file.path(), model);
  const std::vector<std::string> tokens = file.get_string_array("tokenizer.ggml.tokens");
  std::vector<int64_t> types(tokens.size(), kNormal);
  if (file.has("tokenizer.ggml.token_type")) types = file.get_int_array("tokenizer.ggml.token_type");
  check(types.size() == tokens.size(), "tokenizer", "{}: tokenizer.ggml.token_type has {} entries for {} tokens",
        file.path(), types.size(), tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) d->model.vocab.emplace(tokens[i], int32_t(i));

  const bool byte_level = model == "gpt2";
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::get();
  auto spelled_in_alphabet = [&](const std::string& token) {
    for (size_t pos = 0; pos < token.size();)
      if (alphabet.byte_of(utf8_next(token, pos)) < 0) return false;
    return true;
  };
  for (size_t i = 0; i < tokens.size(); ++i) {
    // A "control" token spelled outside a byte-level alphabet is a llama.cpp mislabel, as transformers skips it.
    const bool special = types[i] == kControl || (!byte_level && types[i] == kUnknown);
    if (special && (!byte_level || spelled_in_alphabet(tokens[i])))
      d->added.push_back({int64_t(i), tokens[i], true});
    else if (types[i] == kUserDefined)
      d->added.push_back({int64_t(i), tokens[i], false});
  }

  if (byte_level) {
    d->kind = "byte-level BPE";
    const std::vector<std::string> lines = file.get_string_array("tokenizer.ggml.merges");
    std::vector<std::pair<std::string, std::string>> merges;
    for (size_t i = 0; i < lines.size(); ++i) {
      const size_t space = lines[i].find(' ');
      check(space != std::string::npos, "tokenizer", "{}: tokenizer.ggml.merges[{}] {:?} is not two tokens",
            file.path(), i, lines[i]);
      merges.emplace_back(lines[i].substr(0, space), lines[i].substr(space + 1));
    }
    set_merges(*d, merges, "tokenizer.ggml.merges");
    set_byte_level_pre(*d, file.has("tokenizer.ggml.pre") ? file.get_string("tokenizer.ggml.pre") : "default",
                       file.path());
  } else {
    d->kind = "SentencePiece BPE";
    set_sentencepiece(*d, file, tokens);
  }
  index_tokens(*d);

  d->bos_id = optional_id(file, "tokenizer.ggml.bos_token_id", tokens.size());
  d->eos_id = optional_id(file, "tokenizer.ggml.eos_token_id", tokens.size());
  // llama.cpp's defaults: a BOS for SentencePiece vocabularies, none for byte-level ones.
  const bool add_bos =
      file.has("tokenizer.ggml.add_bos_token") ? file.get_bool("tokenizer.ggml.add_bos_token") : !byte_level;
  const bool add_eos = file.has("tokenizer.ggml.add_eos_token") && file.get_bool("tokenizer.ggml.add_eos_token");
  if (add_bos && d->bos_id) d->post_processor.prefix.push_back(*d->bos_id);
  if (add_eos && d->eos_id) d->post_processor.suffix.push_back(*d->eos_id);
  return d;
}

std::shared_ptr<TokenizerData> load_gguf_file(const std::string& path) { return load_gguf(io::GgufFile::open(path)); }

}  // namespace dtensor::text::detail
