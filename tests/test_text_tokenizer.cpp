// text::Tokenizer on tiny hand-written tokenizers whose ids are worked out by hand below: a
// byte-level BPE and a SentencePiece-style BPE (Metaspace, and the older Prepend + Replace
// normalizer), both from tokenizer.json and from GGUF metadata; added / special tokens, byte
// fallback, fused unknowns, decoders, streamed decoding of characters split over tokens, and the
// typed errors for what text/ does not implement. Conformance with Hugging Face on real
// vocabularies is tools/compare_tokenizer.py's (test tokenizer-conformance).
#include "checkpoint_test_util.hpp"
#include "gguf_test_writer.hpp"

#include "tensor/error.hpp"
#include "text/tokenizer.hpp"

#include <nlohmann/json.hpp>

using namespace dtensor;
using namespace checkpoint_test;
using Catch::Contains;
using Ids = std::vector<int64_t>;
using nlohmann::json;

namespace {

// Byte-level: "é" is bytes C3 A9, spelled "Ã©" in GPT-2's alphabet; "Ġ" is the space.
json byte_level_json() {
  return json::parse(R"({
    "added_tokens": [{"id": 16, "content": "<|im_start|>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": {"type": "ByteLevel"},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "unk_token": null, "fuse_unk": false, "byte_fallback": false,
      "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7, "he": 8, "ll": 9, "hell": 10,
                "hello": 11, "Ġw": 12, "Ġwo": 13, "1": 14, "2": 15, "!": 17, "Ã": 18, "©": 19, "Ã©": 20, "12": 21},
      "merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "Ã ©", "1 2"]}})");
}

// SentencePiece-style: "▁" (U+2581) marks a space; <0xNN> byte tokens; a BOS from the template.
json sentencepiece_json() {
  return json::parse(R"({
    "added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},
                     {"id": 2, "content": "</s>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
      "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xE2>": 4, "<0x82>": 5, "<0xAC>": 6, "▁": 7,
                "a": 8, "b": 9, "▁a": 10, "ab": 11, "▁ab": 12, "c": 13},
      "merges": [["▁", "a"], ["a", "b"], ["▁a", "b"]]}})");
}

text::Tokenizer from(const json& j) { return text::Tokenizer::from_json_text(j.dump(), "test tokenizer.json"); }

std::string stream_all(const text::Tokenizer& tok, const Ids& ids, std::vector<std::string>* pieces = nullptr) {
  text::StreamDecoder stream(tok);
  std::string out;
  for (int64_t id : ids) {
    const std::string piece = stream.push(id);
    if (pieces) pieces->push_back(piece);
    out += piece;
  }
  return out + stream.finish();
}

std::string error_of(const json& j) {
  return message_of<ValueError>([&] { from(j); });
}

}  // namespace

TEST_CASE("byte-level BPE merges by rank and spells bytes in GPT-2's alphabet", "[text]") {
  const text::Tokenizer tok = from(byte_level_json());
  CHECK(tok.kind() == "byte-level BPE");
  // "hello": h e -> he, l l -> ll, he ll -> hell, hell o -> hello. " world": Ġ w -> Ġw, Ġw o -> Ġwo, r l d.
  CHECK(tok.encode("hello world") == Ids{11, 13, 6, 2, 7});
  // The special token is cut out first; "é" is one \p{L} piece "Ã©" (merge 6); "!" its own piece.
  CHECK(tok.encode("hello<|im_start|>é!") == Ids{11, 16, 20, 17});
  // A character outside the vocabulary with no unk token and no byte fallback is dropped.
  CHECK(tok.encode("hz") == Ids{0});
  CHECK(tok.encode("") == Ids{});
  CHECK(tok.decode(Ids{11, 13, 6, 2, 7}) == "hello world");
  CHECK(tok.decode(Ids{11, 16, 20, 17}, /*skip_special=*/false) == "hello<|im_start|>é!");
  CHECK(tok.decode(Ids{11, 16, 20, 17}) == "helloé!");
  CHECK(tok.is_special(16));
  CHECK_FALSE(tok.is_special(11));
  CHECK(tok.token_to_id("<|im_start|>") == 16);
  CHECK(tok.vocab_size() == 22);
}

TEST_CASE("streamed decoding holds a character split over byte-level tokens until it is whole", "[text]") {
  const text::Tokenizer tok = from(byte_level_json());
  std::vector<std::string> pieces;
  // "Ã" (byte C3) alone is half of "é"; "©" (A9) completes it.
  CHECK(stream_all(tok, Ids{11, 18, 19, 17}, &pieces) == "helloé!");
  CHECK(pieces == std::vector<std::string>{"hello", "", "é", "!"});
  // An unfinished character at the end comes out as U+FFFD, as decode() gives it.
  CHECK(stream_all(tok, Ids{11, 18}) == "hello\xEF\xBF\xBD");
  CHECK(tok.decode(Ids{11, 18}) == "hello\xEF\xBF\xBD");
}

TEST_CASE("SentencePiece-style BPE: Metaspace, byte fallback, fused unknowns, BOS", "[text]") {
  const text::Tokenizer tok = from(sentencepiece_json());
  CHECK(tok.kind() == "SentencePiece BPE");
  CHECK(tok.bos_id() == 1);
  // "▁ab": ▁ a -> ▁a (rank 0, before a b at rank 1), then ▁a b -> ▁ab.
  CHECK(tok.encode("ab") == Ids{1, 12});
  CHECK(tok.encode("ab", /*add_special=*/false) == Ids{12});
  // One piece "▁ab▁ab" (split false): the leftmost ▁ a first, then each ▁a b.
  CHECK(tok.encode("ab ab", false) == Ids{12, 12});
  // "\n" and "€" (E2 82 AC) are not in the vocabulary: their <0xNN> byte tokens.
  CHECK(tok.encode("a\n€c") == Ids{1, 10, 3, 4, 5, 6, 13});
  // "é" has no byte tokens here: one <unk> for the run "éé" (fuse_unk).
  CHECK(tok.encode("aéé", false) == Ids{10, 0});
  // After a special token the piece does not start the text: no "▁" is prepended (scheme "first").
  CHECK(tok.encode("a</s>b", false) == Ids{10, 2, 9});
  // Decoding: ▁ -> space, byte tokens -> "\n€", fused, one leading space stripped.
  CHECK(tok.decode(Ids{1, 10, 3, 4, 5, 6, 13}) == "a\n€c");
  CHECK(tok.decode(Ids{1, 10, 3, 4, 5, 6, 13}, false) == "<s> a\n€c");
  CHECK(tok.decode(Ids{12, 12}) == "ab ab");
}

TEST_CASE("streamed decoding waits for every byte token of a character", "[text]") {
  const text::Tokenizer tok = from(sentencepiece_json());
  std::vector<std::string> pieces;
  CHECK(stream_all(tok, Ids{1, 10, 3, 4, 5, 6, 13}, &pieces) == "a\n€c");
  CHECK(pieces == std::vector<std::string>{"", "a", "\n", "", "", "€", "c"});
}

TEST_CASE("the Prepend + Replace normalizer prepends to every piece between added tokens", "[text]") {
  json j = sentencepiece_json();
  j["pre_tokenizer"] = nullptr;
  j["normalizer"] = json::parse(R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]})");
  const text::Tokenizer tok = from(j);
  CHECK(tok.encode("ab ab", false) == Ids{12, 12});
  // Unlike Metaspace "first", "b" after "</s>" becomes "▁b": ▁ and b (no merge).
  CHECK(tok.encode("a</s>b", false) == Ids{10, 2, 7, 9});
}

TEST_CASE("added tokens: leftmost-longest match, lstrip / rstrip, non-special ones kept by decode", "[text]") {
  json j = byte_level_json();
  j["added_tokens"].push_back({{"id", 22}, {"content", "<|im_start|>x"}, {"special", false}});
  j["added_tokens"].push_back({{"id", 23}, {"content", "<e>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}});
  const text::Tokenizer tok = from(j);
  CHECK(tok.encode("<|im_start|>x<|im_start|>") == Ids{22, 16});
  CHECK(tok.encode("he  <e>  he") == Ids{8, 23, 8});
  CHECK(tok.decode(Ids{22, 16}) == "<|im_start|>x");
}

TEST_CASE("ignore_merges takes a whole word from the vocabulary", "[text]") {
  json j = byte_level_json();
  j["model"]["vocab"]["hl"] = 24;
  CHECK(from(j).encode("hl") == Ids{0, 2});
  j["model"]["ignore_merges"] = true;
  CHECK(from(j).encode("hl") == Ids{24});
}

TEST_CASE("what text/ does not implement is a ValueError naming the field", "[text]") {
  json j = byte_level_json();
  j["model"]["type"] = "WordPiece";
  CHECK_THAT(error_of(j), Contains("model.type") && Contains("WordPiece"));
  j = byte_level_json();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}}, {{"type", "Whitespace"}}}}};
  CHECK_THAT(error_of(j), Contains("pre_tokenizer.pretokenizers[1].type") && Contains("Whitespace"));
  j = byte_level_json();
  j["normalizer"] = {{"type", "NFKC"}};
  CHECK_THAT(error_of(j), Contains("normalizer.type") && Contains("NFKC"));
  j = byte_level_json();
  j["decoder"] = {{"type", "WordPiece"}};
  CHECK_THAT(error_of(j), Contains("decoder.type"));
  j = byte_level_json();
  j["post_processor"] = {{"type", "BertProcessing"}};
  CHECK_THAT(error_of(j), Contains("post_processor.type"));
  j = byte_level_json();
  j["model"]["merges"].push_back("h z");
  CHECK_THAT(error_of(j), Contains("model.merges[8]") && Contains("\"z\""));
  j = byte_level_json();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  CHECK_THAT(error_of(j), Contains("pre_tokenizer.pattern.Regex"));
  CHECK_THAT(message_of<ValueError>([] { text::Tokenizer::from_json_text("{", "broken.json"); }),
             Contains("broken.json"));
}

TEST_CASE("bad input to encode and decode is a ValueError", "[text]") {
  const text::Tokenizer tok = from(byte_level_json());
  CHECK_THAT(message_of<ValueError>([&] { tok.encode("he\xC3(llo"); }), Contains("UTF-8") && Contains("byte 2"));
  CHECK_THAT(message_of<ValueError>([&] { tok.decode(Ids{11, 99}); }), Contains("99"));
  CHECK_THAT(message_of<ValueError>([&] { tok.decode(Ids{-1}); }), Contains("-1"));
}

namespace {

using gguf_test::GgufWriter;
using gguf_test::le;
using io::GgufValueType;

void add_i32_array(GgufWriter& w, const std::string& key, const std::vector<int32_t>& items) {
  std::string value = le<uint32_t>(uint32_t(GgufValueType::I32)) + le<uint64_t>(items.size());
  for (int32_t item : items) value += le(item);
  w.add_raw(key, GgufValueType::ARRAY, value);
}

void add_f32_array(GgufWriter& w, const std::string& key, const std::vector<float>& items) {
  std::string value = le<uint32_t>(uint32_t(GgufValueType::F32)) + le<uint64_t>(items.size());
  for (float item : items) value += le(item);
  w.add_raw(key, GgufValueType::ARRAY, value);
}

void add_bool(GgufWriter& w, const std::string& key, bool value) {
  w.add_raw(key, GgufValueType::BOOL, std::string(1, char(value)));
}

// gpt2: tokens "<|endoftext|>" (control), "1", "2", "12", "Ġ", "a"; the merge "1 2".
GgufWriter byte_level_gguf(const std::string& pre) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", pre);
  w.add_string_array("tokenizer.ggml.tokens", {"<|endoftext|>", "1", "2", "12", "Ġ", "a"});
  add_i32_array(w, "tokenizer.ggml.token_type", {3, 1, 1, 1, 1, 1});
  w.add_string_array("tokenizer.ggml.merges", {"1 2"});
  w.add_u32("tokenizer.ggml.eos_token_id", 0);
  return w;
}

// llama: the vocabulary of sentencepiece_json() with scores; no merges in the file.
GgufWriter sentencepiece_gguf() {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<0x0A>", "<0xE2>", "<0x82>", "<0xAC>", "▁", "a",
                                               "b", "▁a", "ab", "▁ab"});
  // Scores rank the recovered merges: ▁a (-1) before ab (-2) before ▁ab (-3).
  add_f32_array(w, "tokenizer.ggml.scores", {0, 0, 0, 0, 0, 0, 0, -10, -10, -10, -1, -2, -3});
  add_i32_array(w, "tokenizer.ggml.token_type", {2, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1});
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  add_bool(w, "tokenizer.ggml.add_bos_token", true);
  return w;
}

text::Tokenizer from_gguf(const TempDir& dir, const GgufWriter& w) {
  const std::string path = dir.file("tok.gguf");
  write_file(path, w.bytes());
  return text::Tokenizer::load(path);
}

}  // namespace

TEST_CASE("GGUF gpt2 vocabularies: tokenizer.ggml.pre picks the split", "[text]") {
  TempDir dir;
  // default (GPT-2's regex): " 12" is one piece, "Ġ" "1" "2" -> Ġ, 12.
  const text::Tokenizer plain = from_gguf(dir, byte_level_gguf("default"));
  CHECK(plain.encode("a 12") == Ids{5, 4, 3});
  CHECK(plain.eos_id() == 0);
  CHECK(plain.is_special(0));
  CHECK(plain.encode("a<|endoftext|>") == Ids{5, 0});
  // smollm: digits are split one by one first, so "12" never merges.
  const text::Tokenizer smollm = from_gguf(dir, byte_level_gguf("smollm"));
  CHECK(smollm.encode("a 12") == Ids{5, 4, 1, 2});
  CHECK(smollm.decode(Ids{5, 4, 1, 2}) == "a 12");
}

TEST_CASE("GGUF llama vocabularies: merges recovered from the scores, BOS from add_bos_token", "[text]") {
  TempDir dir;
  const text::Tokenizer tok = from_gguf(dir, sentencepiece_gguf());
  CHECK(tok.kind() == "SentencePiece BPE");
  CHECK(tok.encode("ab") == Ids{1, 12});
  CHECK(tok.encode("ab ab", false) == Ids{12, 12});
  CHECK(tok.encode("a\n€") == Ids{1, 10, 3, 4, 5, 6});
  CHECK(tok.encode("<unk></s>", false) == Ids{0, 2});
  CHECK(tok.decode(Ids{1, 10, 3, 4, 5, 6}) == "a\n€");
  CHECK(tok.eos_id() == 2);
}

TEST_CASE("GGUF tokenizers text/ does not implement name the key", "[text]") {
  TempDir dir;
  GgufWriter w = byte_level_gguf("qwen2");
  CHECK_THAT(message_of<ValueError>([&] { from_gguf(dir, w); }), Contains("tokenizer.ggml.pre") && Contains("qwen2"));
  GgufWriter bert;
  bert.add_string("tokenizer.ggml.model", "bert");
  bert.add_string_array("tokenizer.ggml.tokens", {"a"});
  CHECK_THAT(message_of<ValueError>([&] { from_gguf(dir, bert); }),
             Contains("tokenizer.ggml.model") && Contains("bert"));
  GgufWriter none;
  none.add_string("general.architecture", "llama");
  CHECK_THAT(message_of<ValueError>([&] { from_gguf(dir, none); }), Contains("tokenizer.ggml.model"));
}

TEST_CASE("Tokenizer::load reads a model directory's tokenizer.json and tokenizer_config.json", "[text]") {
  TempDir dir;
  write_file(dir.file("tokenizer.json"), sentencepiece_json().dump());
  write_file(dir.file("tokenizer_config.json"), R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}})");
  const text::Tokenizer tok = text::Tokenizer::load(dir.path().string());
  CHECK(tok.eos_id() == 2);
  CHECK(tok.encode("ab") == Ids{1, 12});
  TempDir empty;
  CHECK_THAT(message_of<ValueError>([&] { text::Tokenizer::load(empty.path().string()); }), Contains("tokenizer.json"));
}
