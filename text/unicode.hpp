// UTF-8 helpers and GPT-2's byte-to-character table, for the tokenizers of text/.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dtensor::text {

// Bytes in the UTF-8 character that starts with `lead` (1 for a stray continuation byte).
size_t utf8_char_length(unsigned char lead);
// The code point at text[pos] (which must start a valid character); pos moves past it.
char32_t utf8_next(std::string_view text, size_t& pos);
void utf8_append(std::string& out, char32_t code_point);
// Byte offset of the first invalid UTF-8 sequence, or text.size() when the whole text is valid.
size_t utf8_valid_prefix(std::string_view text);
// Characters (code points) in valid UTF-8 text.
size_t utf8_length(std::string_view text);
// Length of the longest prefix of `bytes` that ends on a character boundary, given that the bytes
// after it may still complete a character (streamed output).
size_t utf8_complete_prefix(std::string_view bytes);

// GPT-2's byte-level alphabet: each byte is spelled as one printable character (bytes 33..126,
// 161..172, 174..255 as themselves, the others as U+0100 onwards, in order).
class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& get();
  // The UTF-8 spelling of each byte of `bytes`, appended to out.
  void encode(std::string_view bytes, std::string& out) const;
  // The byte a character spells, or -1 when it is not in the alphabet.
  int byte_of(char32_t c) const;

 private:
  ByteLevelAlphabet();
  std::array<std::string, 256> spelling_;
  std::array<int16_t, 324> byte_of_;  // indexed by code point (the alphabet ends below U+0144)
};

}  // namespace dtensor::text
