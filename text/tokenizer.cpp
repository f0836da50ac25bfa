#include "text/tokenizer.hpp"

#include "tensor/error.hpp"
#include "text/pipeline.hpp"
#include "text/tokenizer_loaders.hpp"
#include "text/unicode.hpp"

#include <algorithm>
#include <filesystem>

namespace dtensor::text {

namespace detail {

void TokenizerData::finish() {
  for (auto& list : added_by_first_byte) list.clear();
  for (size_t i = 0; i < added.size(); ++i)
    if (!added[i].content.empty()) added_by_first_byte[static_cast<unsigned char>(added[i].content[0])].push_back(i);
  for (auto& list : added_by_first_byte)
    std::stable_sort(list.begin(), list.end(),
                     [&](size_t a, size_t b) { return added[a].content.size() > added[b].content.size(); });
  special.assign(id_to_token.size(), false);
  for (const AddedToken& t : added)
    if (t.special) special[size_t(t.id)] = true;
}

}  // namespace detail

namespace {

using detail::AddedToken;
using detail::TokenizerData;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

struct Match {
  size_t start, end;  // the bytes the token takes, stripped whitespace included
  int64_t id;
};

// The leftmost-longest added token at or after `from`, as tokenizers' AddedVocabulary finds them.
std::optional<Match> next_added(const TokenizerData& d, std::string_view text, size_t from) {
  for (size_t pos = from; pos < text.size(); ++pos) {
    for (size_t index : d.added_by_first_byte[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& t = d.added[index];
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      size_t start = pos, end = pos + t.content.size();
      if (t.single_word &&
          ((start > 0 && is_word_byte(text[start - 1])) || (end < text.size() && is_word_byte(text[end]))))
        continue;
      if (t.lstrip)
        while (start > from && is_space(text[start - 1])) --start;
      if (t.rstrip)
        while (end < text.size() && is_space(text[end])) ++end;
      return Match{start, end, t.id};
    }
  }
  return std::nullopt;
}

}  // namespace

namespace {

void encode_segment(const TokenizerData& d, std::string_view segment, size_t offset, std::vector<int64_t>& out) {
  std::string normalized(segment);
  detail::normalize(d.normalizer, normalized);
  detail::WordCache& cache = *d.cache;
  for (const detail::Piece& piece : detail::pre_tokenize(d.pre_tokenizer, {std::move(normalized), offset})) {
    if (cache.find(piece.text, out)) continue;
    const size_t before = out.size();
    detail::bpe_encode(d.model, piece.text, out);
    cache.add(piece.text, std::span(out).subspan(before));
  }
}

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<detail::TokenizerData> data) : data_(std::move(data)) { data_->finish(); }

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) {
    const fs::path json = fs::path(path) / "tokenizer.json";
    check(fs::exists(json), "tokenizer", "{} holds no tokenizer.json", path);
    return Tokenizer(detail::load_json_file(json.string(), true));
  }
  check(fs::exists(path), "tokenizer", "{} does not exist", path);
  if (path.ends_with(".gguf")) return Tokenizer(detail::load_gguf_file(path));
  return from_json_file(path);
}

Tokenizer Tokenizer::from_json_file(const std::string& path) { return Tokenizer(detail::load_json_file(path, false)); }

Tokenizer Tokenizer::from_json_text(std::string_view json, const std::string& source) {
  return Tokenizer(detail::load_json_text(json, source));
}

Tokenizer Tokenizer::from_gguf(const io::GgufFile& file) { return Tokenizer(detail::load_gguf(file)); }

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  const TokenizerData& d = *data_;
  const size_t valid = utf8_valid_prefix(text);
  check(valid == text.size(), "tokenizer", "the text is not valid UTF-8 at byte {} (0x{:02X})", valid,
        static_cast<unsigned char>(text[std::min(valid, text.size() - 1)]));
  std::vector<int64_t> ids;
  if (add_special) ids = d.post_processor.prefix;
  size_t pos = 0;
  while (pos < text.size()) {
    const std::optional<Match> m = next_added(d, text, pos);
    const size_t segment_end = m ? m->start : text.size();
    if (segment_end > pos) encode_segment(d, text.substr(pos, segment_end - pos), pos, ids);
    if (!m) break;
    ids.push_back(m->id);
    pos = m->end;
  }
  if (add_special) ids.insert(ids.end(), d.post_processor.suffix.begin(), d.post_processor.suffix.end());
  return ids;
}

std::string Tokenizer::decode(std::span<const int64_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    const std::string& token = id_to_token(id);
    if (skip_special && data_->special[size_t(id)]) continue;
    tokens.push_back(token);
  }
  if (data_->decoder.empty()) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  return detail::run_decoder(data_->decoder, std::move(tokens));
}

int64_t Tokenizer::vocab_size() const { return int64_t(data_->id_to_token.size()); }

std::optional<int64_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& t : data_->added)
    if (t.content == token) return t.id;
  auto it = data_->model.vocab.find(std::string(token));
  if (it == data_->model.vocab.end()) return std::nullopt;
  return it->second;
}

const std::string& Tokenizer::id_to_token(int64_t id) const {
  check(id >= 0 && id < vocab_size(), "tokenizer", "token id {} is outside the vocabulary [0, {}) of {}", id,
        vocab_size(), data_->source);
  return data_->id_to_token[size_t(id)];
}

bool Tokenizer::is_special(int64_t id) const { return id >= 0 && id < vocab_size() && data_->special[size_t(id)]; }
std::optional<int64_t> Tokenizer::bos_id() const { return data_->bos_id; }
std::optional<int64_t> Tokenizer::eos_id() const { return data_->eos_id; }
const std::string& Tokenizer::kind() const { return data_->kind; }
const std::string& Tokenizer::source() const { return data_->source; }

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int64_t id) {
  ids_.push_back(id);
  const std::string text = tokenizer_.decode(ids_, skip_special_);
  // An unfinished character decodes as a trailing U+FFFD: hold everything back until it is whole
  // (as tokenizers' DecodeStream does).
  if (text.size() <= emitted_ || text.ends_with("\xEF\xBF\xBD")) return {};
  std::string out = text.substr(emitted_);
  emitted_ = text.size();
  return out;
}

std::string StreamDecoder::finish() {
  const std::string text = tokenizer_.decode(ids_, skip_special_);
  std::string out = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  emitted_ = text.size();
  return out;
}

}  // namespace dtensor::text
