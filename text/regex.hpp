// A compiled Unicode regular expression (PCRE2 in UTF and UCP mode, JIT-compiled where the
// platform allows), for the tokenizers' pre-tokenizer splits. \p{L}, \p{N}, \s and friends take
// their meaning from PCRE2's Unicode tables, which is what Hugging Face's Oniguruma patterns mean.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dtensor::text {

class Regex {
 public:
  // ValueError naming `field` and PCRE2's message for a pattern that does not compile.
  Regex(const std::string& pattern, const std::string& field);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // [start, end) byte ranges of the successive non-overlapping matches in valid UTF-8 text (an
  // empty match moves on by one character).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  std::string pattern_;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace dtensor::text
