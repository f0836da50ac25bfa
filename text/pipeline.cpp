// The normalizer, pre-tokenizer, BPE and decoder stages, each as Hugging Face `tokenizers` defines
// it (the comments name where our reading of its behaviour matters).
#include "text/pipeline.hpp"

#include "tensor/error.hpp"
#include "text/unicode.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <queue>

namespace dtensor::text::detail {

namespace {

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out += to;
  }
  out.append(text, pos);
  text = std::move(out);
}

// [start, end) of every occurrence of a literal pattern.
std::vector<std::pair<size_t, size_t>> find_literal(std::string_view text, std::string_view literal) {
  std::vector<std::pair<size_t, size_t>> hits;
  if (literal.empty()) return hits;
  for (size_t pos = 0, hit; (hit = text.find(literal, pos)) != std::string::npos; pos = hit + literal.size())
    hits.emplace_back(hit, hit + literal.size());
  return hits;
}

// Splits a piece at the matches, keeping or merging the delimiters as `behavior` says (the
// semantics of tokenizers' NormalizedString::split: a match merges into a neighbour that is not
// itself a match; empty pieces are dropped).
void split_piece(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                 std::vector<Piece>& out) {
  struct Span {
    size_t start, end;
    bool match;
  };
  std::vector<Span> spans;
  size_t pos = 0;
  for (auto [start, end] : matches) {
    if (start > pos) spans.push_back({pos, start, false});
    spans.push_back({start, end, true});
    pos = end;
  }
  if (pos < piece.text.size()) spans.push_back({pos, piece.text.size(), false});

  std::vector<Span> merged;
  if (behavior == SplitBehavior::MergedWithPrevious) {
    bool previous_match = false;
    for (const Span& s : spans) {
      if (s.match && !previous_match && !merged.empty())
        merged.back().end = s.end;
      else
        merged.push_back(s);
      previous_match = s.match;
    }
  } else if (behavior == SplitBehavior::MergedWithNext) {
    bool next_match = false;
    for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
      if (it->match && !next_match && !merged.empty())
        merged.back().start = it->start;
      else
        merged.push_back(*it);
      next_match = it->match;
    }
    std::reverse(merged.begin(), merged.end());
  } else {
    for (const Span& s : spans)
      if (!(behavior == SplitBehavior::Removed && s.match)) merged.push_back(s);
  }
  for (const Span& s : merged)
    if (s.end > s.start) out.push_back({piece.text.substr(s.start, s.end - s.start), piece.offset + s.start});
}

void metaspace(const PreTokenizerStep& step, const Piece& input, std::vector<Piece>& out) {
  Piece piece = input;
  replace_all(piece.text, " ", step.replacement);
  const bool prepend = step.prepend_scheme == PrependScheme::Always ||
                       (step.prepend_scheme == PrependScheme::First && piece.offset == 0);
  if (prepend && !piece.text.starts_with(step.replacement)) piece.text = step.replacement + piece.text;
  if (step.split)
    split_piece(piece, find_literal(piece.text, step.replacement), SplitBehavior::MergedWithNext, out);
  else if (!piece.text.empty())
    out.push_back(std::move(piece));
}

void byte_level(const PreTokenizerStep& step, const Piece& input, std::vector<Piece>& out) {
  Piece piece = input;
  if (step.add_prefix_space && (piece.text.empty() || piece.text[0] != ' ')) piece.text.insert(piece.text.begin(), ' ');
  std::vector<Piece> parts;
  if (step.regex)
    split_piece(piece, step.regex->find_all(piece.text), SplitBehavior::Isolated, parts);
  else if (!piece.text.empty())
    parts.push_back(std::move(piece));
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::get();
  for (Piece& part : parts) {
    std::string spelled;
    alphabet.encode(part.text, spelled);
    out.push_back({std::move(spelled), part.offset});
  }
}

void apply_step(const PreTokenizerStep& step, const Piece& piece, std::vector<Piece>& out) {
  switch (step.kind) {
    case PreTokenizerStep::Kind::ByteLevel:
      return byte_level(step, piece, out);
    case PreTokenizerStep::Kind::Metaspace:
      return metaspace(step, piece, out);
    case PreTokenizerStep::Kind::Split:
      return split_piece(piece, step.regex ? step.regex->find_all(piece.text) : find_literal(piece.text, step.literal),
                         step.behavior, out);
  }
}

}  // namespace

void normalize(const std::vector<NormalizerStep>& steps, std::string& text) {
  for (const NormalizerStep& step : steps) {
    if (step.kind == NormalizerStep::Kind::Prepend) {
      if (!text.empty()) text = step.text + text;
    } else {
      replace_all(text, step.text, step.content);
    }
  }
}

std::vector<Piece> pre_tokenize(const std::vector<PreTokenizerStep>& steps, Piece input) {
  std::vector<Piece> pieces{std::move(input)};
  for (const PreTokenizerStep& step : steps) {
    std::vector<Piece> next;
    for (const Piece& piece : pieces) apply_step(step, piece, next);
    pieces = std::move(next);
  }
  return pieces;
}

namespace {

// The piece's characters as model ids: a character the vocabulary lacks becomes its <0xNN> byte
// tokens (byte_fallback), else the unknown token (runs of them fused into one with fuse_unk), else
// nothing, as in tokenizers' BPE::merge_word.
std::vector<int32_t> initial_symbols(const BpeModel& model, const std::string& piece) {
  std::vector<int32_t> symbols;
  bool previous_unk = false;
  std::string character;
  for (size_t pos = 0; pos < piece.size();) {
    const size_t n = std::min(utf8_char_length(static_cast<unsigned char>(piece[pos])), piece.size() - pos);
    character.assign(piece, pos, n);
    pos += n;
    if (auto it = model.vocab.find(character); it != model.vocab.end()) {
      symbols.push_back(it->second);
      previous_unk = false;
      continue;
    }
    if (model.byte_fallback) {
      bool all = true;
      for (unsigned char b : character) all = all && model.byte_tokens[b] >= 0;
      if (all) {
        for (unsigned char b : character) symbols.push_back(model.byte_tokens[b]);
        previous_unk = false;
        continue;
      }
    }
    if (!model.unk_id) continue;
    if (!(model.fuse_unk && previous_unk)) symbols.push_back(*model.unk_id);
    previous_unk = true;
  }
  return symbols;
}

}  // namespace

void bpe_encode(const BpeModel& model, const std::string& piece, std::vector<int64_t>& out) {
  if (model.ignore_merges) {
    if (auto it = model.vocab.find(piece); it != model.vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> id = initial_symbols(model, piece);
  const int n = int(id.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  // (rank, position, merged id): the lowest rank first, the leftmost on ties.
  using Candidate = std::tuple<int32_t, int, int32_t>;
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](int left) {
    if (left < 0 || next[left] < 0) return;
    auto it = model.merges.find({id[left], id[next[left]]});
    if (it != model.merges.end()) queue.emplace(it->second.first, left, it->second.second);
  };
  for (int i = 0; i + 1 < n; ++i) push_pair(i);
  std::vector<bool> alive(n, true);
  while (!queue.empty()) {
    const auto [rank, left, merged] = queue.top();
    queue.pop();
    if (!alive[left] || next[left] < 0) continue;
    const int right = next[left];
    auto it = model.merges.find({id[left], id[right]});
    if (it == model.merges.end() || it->second.second != merged) continue;  // a stale candidate
    id[left] = merged;
    alive[right] = false;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    push_pair(prev[left]);
    push_pair(left);
  }
  for (int i = 0; i < n; ++i)
    if (alive[i]) out.push_back(id[i]);
}

namespace {

// Appends `bytes` to out with every ill-formed sequence replaced by one U+FFFD per maximal subpart,
// as Rust's String::from_utf8_lossy and Python's errors="replace" do.
void append_lossy(std::string& out, std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size();) {
    const size_t valid = utf8_valid_prefix(bytes.substr(pos));
    out.append(bytes, pos, valid);
    pos += valid;
    if (pos >= bytes.size()) break;
    const auto b0 = static_cast<unsigned char>(bytes[pos]);
    const size_t want = utf8_char_length(b0);
    size_t consumed = 1;
    if (want > 1 && b0 >= 0xC2 && b0 <= 0xF4) {
      auto second_ok = [&](unsigned char b) {
        if (b0 == 0xE0) return b >= 0xA0 && b <= 0xBF;
        if (b0 == 0xED) return b >= 0x80 && b <= 0x9F;
        if (b0 == 0xF0) return b >= 0x90 && b <= 0xBF;
        if (b0 == 0xF4) return b >= 0x80 && b <= 0x8F;
        return b >= 0x80 && b <= 0xBF;
      };
      while (consumed < want && pos + consumed < bytes.size()) {
        const auto b = static_cast<unsigned char>(bytes[pos + consumed]);
        if (!(consumed == 1 ? second_ok(b) : (b & 0xC0) == 0x80)) break;
        ++consumed;
      }
    }
    out += "\xEF\xBF\xBD";
    pos += consumed;
  }
}

std::vector<std::string> decode_byte_level(std::vector<std::string> tokens) {
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::get();
  std::string bytes;
  for (const std::string& token : tokens) {
    std::string mapped;
    bool all = true;
    for (size_t pos = 0; pos < token.size() && all;) {
      const int b = alphabet.byte_of(utf8_next(token, pos));
      all = b >= 0;
      mapped += char(b);
    }
    bytes += all ? mapped : token;
  }
  std::string text;
  append_lossy(text, bytes);
  return {text};
}

std::optional<unsigned char> byte_token_value(const std::string& token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return std::nullopt;
  unsigned value = 0;
  for (char c : token.substr(3, 2)) {
    const int digit = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                      : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                      : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                                                                  : -1;
    if (digit < 0) return std::nullopt;
    value = value * 16 + unsigned(digit);
  }
  return static_cast<unsigned char>(value);
}

std::vector<std::string> decode_byte_fallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string pending;
  auto flush = [&] {
    if (pending.empty()) return;
    if (utf8_valid_prefix(pending) == pending.size())
      out.push_back(pending);
    else
      for (size_t i = 0; i < pending.size(); ++i) out.push_back("\xEF\xBF\xBD");
    pending.clear();
  };
  for (std::string& token : tokens) {
    if (auto b = byte_token_value(token)) {
      pending += char(*b);
      continue;
    }
    flush();
    out.push_back(std::move(token));
  }
  flush();
  return out;
}

// Strips up to `start` leading and `stop` trailing copies of one character from each token.
std::string strip_token(const std::string& token, const std::string& c, size_t start, size_t stop) {
  size_t begin = 0, end = token.size();
  for (size_t i = 0; i < start && token.compare(begin, c.size(), c) == 0 && begin < end; ++i) begin += c.size();
  for (size_t i = 0; i < stop && end >= begin + c.size() && token.compare(end - c.size(), c.size(), c) == 0; ++i)
    end -= c.size();
  return token.substr(begin, end - begin);
}

std::vector<std::string> apply_decoder(const DecoderStep& step, std::vector<std::string> tokens) {
  switch (step.kind) {
    case DecoderStep::Kind::ByteLevel:
      return decode_byte_level(std::move(tokens));
    case DecoderStep::Kind::ByteFallback:
      return decode_byte_fallback(std::move(tokens));
    case DecoderStep::Kind::Fuse: {
      std::string all;
      for (const std::string& t : tokens) all += t;
      return {all};
    }
    case DecoderStep::Kind::Replace:
      for (std::string& t : tokens) replace_all(t, step.pattern, step.content);
      return tokens;
    case DecoderStep::Kind::Strip:
      for (std::string& t : tokens) t = strip_token(t, step.content, step.start, step.stop);
      return tokens;
    case DecoderStep::Kind::Metaspace:
      for (size_t i = 0; i < tokens.size(); ++i) {
        replace_all(tokens[i], step.replacement, " ");
        if (i == 0 && step.prepend_scheme != PrependScheme::Never && tokens[i].starts_with(' ')) tokens[i].erase(0, 1);
      }
      return tokens;
  }
  return tokens;
}

}  // namespace

std::string run_decoder(const std::vector<DecoderStep>& steps, std::vector<std::string> tokens) {
  for (const DecoderStep& step : steps) tokens = apply_decoder(step, std::move(tokens));
  std::string text;
  for (const std::string& t : tokens) text += t;
  return text;
}

}  // namespace dtensor::text::detail
