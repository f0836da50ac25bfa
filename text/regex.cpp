#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/regex.hpp"

#include "tensor/error.hpp"
#include "text/unicode.hpp"

#include <pcre2.h>

namespace dtensor::text {

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern, const std::string& field)
    : pattern_(pattern), compiled_(std::make_unique<Compiled>()) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                  &error, &error_offset, nullptr);
  if (!compiled_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    fail("tokenizer", "{}: the regex {:?} does not compile at offset {}: {}", field, pattern, error_offset,
         reinterpret_cast<const char*>(message));
  }
  // JIT is an optimisation only: where it is unavailable the interpreter runs the same pattern.
  pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() = default;

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(compiled_->code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    // The callers validated the text once (Tokenizer::encode), so PCRE2 need not check it per call.
    const int rc = pcre2_match(compiled_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(data);
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      fail("tokenizer", "matching the regex {:?} failed: {}", pattern_, reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t start = ovector[0], end = ovector[1];
    if (end > start) {
      matches.emplace_back(start, end);
      pos = end;
    } else {
      if (start >= text.size()) break;
      pos = start + utf8_char_length(static_cast<unsigned char>(text[start]));
    }
  }
  pcre2_match_data_free(data);
  return matches;
}

}  // namespace dtensor::text
