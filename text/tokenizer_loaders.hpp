// Building a TokenizerData from a tokenizer.json or GGUF metadata (internal to text/).
#pragma once

#include "text/pipeline.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dtensor::io {
class GgufFile;
}

namespace dtensor::text::detail {

// with_config: also read BOS / EOS names from tokenizer_config.json beside the file.
std::shared_ptr<TokenizerData> load_json_file(const std::string& path, bool with_config);
std::shared_ptr<TokenizerData> load_json_text(std::string_view json, const std::string& source);
std::shared_ptr<TokenizerData> load_gguf_file(const std::string& path);
std::shared_ptr<TokenizerData> load_gguf(const io::GgufFile& file);

// Shared by both loaders (tokenizer_json.cpp).
// Ranks the merges in order (a later duplicate wins, as in tokenizers); ValueError naming
// `field`[i] when a side or the merged token is not in the vocabulary.
void set_merges(TokenizerData& d, const std::vector<std::pair<std::string, std::string>>& merges,
                const std::string& field);
// Fills id_to_token from the vocabulary and the added tokens, and the <0xNN> byte tokens.
void index_tokens(TokenizerData& d);
// GPT-2's split regex (the ByteLevel pre-tokenizer's use_regex) and Llama-3's.
const std::string& gpt2_split_pattern();
const std::string& llama3_split_pattern();

}  // namespace dtensor::text::detail
