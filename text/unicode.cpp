#include "text/unicode.hpp"

namespace dtensor::text {

size_t utf8_char_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

char32_t utf8_next(std::string_view text, size_t& pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  const size_t n = utf8_char_length(lead);
  if (n == 1 || pos + n > text.size()) {
    ++pos;
    return lead;
  }
  static constexpr unsigned char lead_mask[] = {0, 0, 0x1F, 0x0F, 0x07};
  char32_t c = lead & lead_mask[n];
  for (size_t i = 1; i < n; ++i) c = (c << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  pos += n;
  return c;
}

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

namespace {

bool continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Length of the valid character at text[pos], or 0 (overlong forms, surrogates and code points
// above U+10FFFF are invalid, as in Rust's and Python's decoders).
size_t valid_char_at(std::string_view text, size_t pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  const size_t n = utf8_char_length(b0);
  if (n == 1) return b0 < 0x80 ? 1 : 0;
  if (pos + n > text.size()) return 0;
  for (size_t i = 1; i < n; ++i)
    if (!continuation(static_cast<unsigned char>(text[pos + i]))) return 0;
  size_t p = pos;
  const char32_t c = utf8_next(text, p);
  static constexpr char32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < smallest[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

size_t utf8_valid_prefix(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = valid_char_at(text, pos);
    if (n == 0) return pos;
    pos += n;
  }
  return pos;
}

size_t utf8_length(std::string_view text) {
  size_t count = 0;
  for (unsigned char b : text) count += !continuation(b);
  return count;
}

size_t utf8_complete_prefix(std::string_view bytes) {
  // Look back at most 3 bytes for the lead byte of an unfinished character.
  const size_t n = bytes.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = static_cast<unsigned char>(bytes[n - back]);
    if (continuation(b)) continue;
    const size_t want = utf8_char_length(b);
    return want > back ? n - back : n;
  }
  return n;
}

const ByteLevelAlphabet& ByteLevelAlphabet::get() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  byte_of_.fill(-1);
  char32_t next_extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const char32_t c = printable ? char32_t(b) : next_extra++;
    utf8_append(spelling_[b], c);
    byte_of_[c] = int16_t(b);
  }
}

void ByteLevelAlphabet::encode(std::string_view bytes, std::string& out) const {
  for (unsigned char b : bytes) out += spelling_[b];
}

int ByteLevelAlphabet::byte_of(char32_t c) const { return c < byte_of_.size() ? byte_of_[c] : -1; }

}  // namespace dtensor::text
