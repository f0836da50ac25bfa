// tokenizer.json (Hugging Face `tokenizers`' serialization) -> TokenizerData. Every stage type the
// file names is either implemented here or refused with a ValueError naming the field.
#include "tensor/error.hpp"
#include "text/tokenizer_loaders.hpp"
#include "text/unicode.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace dtensor::text::detail {

using nlohmann::json;

const std::string& gpt2_split_pattern() {
  static const std::string pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  return pattern;
}

const std::string& llama3_split_pattern() {
  static const std::string pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
      R"(|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return pattern;
}

void set_merges(TokenizerData& d, const std::vector<std::pair<std::string, std::string>>& merges,
                const std::string& field) {
  auto& vocab = d.model.vocab;
  d.model.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& [left, right] = merges[i];
    auto l = vocab.find(left), r = vocab.find(right), m = vocab.find(left + right);
    check(l != vocab.end() && r != vocab.end() && m != vocab.end(), "tokenizer",
          "{}: {}[{}] merges {:?} and {:?}, but {:?} is not in the vocabulary", d.source, field, i, left, right,
          l == vocab.end()   ? left
          : r == vocab.end() ? right
                             : left + right);
    d.model.merges.insert_or_assign({l->second, r->second}, std::pair{int32_t(i), m->second});
  }
}

void index_tokens(TokenizerData& d) {
  int64_t size = 0;
  for (const auto& [token, id] : d.model.vocab) size = std::max<int64_t>(size, id + 1);
  for (const AddedToken& t : d.added) size = std::max(size, t.id + 1);
  d.id_to_token.assign(size_t(size), std::string());
  for (const auto& [token, id] : d.model.vocab) d.id_to_token[size_t(id)] = token;
  for (const AddedToken& t : d.added) d.id_to_token[size_t(t.id)] = t.content;
  d.model.byte_tokens.fill(-1);
  for (int b = 0; b < 256; ++b)
    if (auto it = d.model.vocab.find(fmt::format("<0x{:02X}>", b)); it != d.model.vocab.end())
      d.model.byte_tokens[b] = it->second;
}

namespace {

struct Reader {
  TokenizerData& d;

  [[noreturn]] void unsupported(const std::string& field, const std::string& value, const char* supported) const {
    fail("tokenizer", "{}: {} {:?} is not supported (supported: {})", d.source, field, value, supported);
  }

  std::string type_of(const json& j, const std::string& field) const {
    check(j.is_object() && j.contains("type") && j["type"].is_string(), "tokenizer", "{}: {}.type is missing", d.source,
          field);
    return j["type"].get<std::string>();
  }

  // {"String": s} as a literal; a {"Regex": r} pattern only where `regex_ok`.
  std::string literal_pattern(const json& pattern, const std::string& field) const {
    check(pattern.is_object(), "tokenizer", "{}: {}.pattern is not an object", d.source, field);
    if (pattern.contains("String")) return pattern["String"].get<std::string>();
    unsupported(field + ".pattern", pattern.dump(), "String patterns");
  }

  void normalizer(const json& j, const std::string& field) {
    if (j.is_null()) return;
    const std::string type = type_of(j, field);
    if (type == "Sequence") {
      const json& list = j.at("normalizers");
      for (size_t i = 0; i < list.size(); ++i) normalizer(list[i], fmt::format("{}.normalizers[{}]", field, i));
    } else if (type == "Prepend") {
      d.normalizer.push_back({NormalizerStep::Kind::Prepend, j.at("prepend").get<std::string>(), {}});
    } else if (type == "Replace") {
      d.normalizer.push_back(
          {NormalizerStep::Kind::Replace, literal_pattern(j.at("pattern"), field), j.at("content").get<std::string>()});
    } else {
      unsupported(field + ".type", type, "Sequence, Prepend, Replace");
    }
  }

  static PrependScheme prepend_scheme(const json& j) {
    if (j.contains("prepend_scheme")) {
      const std::string s = j["prepend_scheme"].get<std::string>();
      return s == "first" ? PrependScheme::First : s == "never" ? PrependScheme::Never : PrependScheme::Always;
    }
    return j.value("add_prefix_space", true) ? PrependScheme::Always : PrependScheme::Never;
  }

  SplitBehavior behavior(const json& j, const std::string& field) const {
    const std::string b = j.at("behavior").get<std::string>();
    if (b == "Isolated") return SplitBehavior::Isolated;
    if (b == "Removed") return SplitBehavior::Removed;
    if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
    if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
    unsupported(field + ".behavior", b, "Isolated, Removed, MergedWithPrevious, MergedWithNext");
  }

  void pre_tokenizer(const json& j, const std::string& field) {
    if (j.is_null()) return;
    const std::string type = type_of(j, field);
    PreTokenizerStep step;
    if (type == "Sequence") {
      const json& list = j.at("pretokenizers");
      for (size_t i = 0; i < list.size(); ++i) pre_tokenizer(list[i], fmt::format("{}.pretokenizers[{}]", field, i));
      return;
    } else if (type == "ByteLevel") {
      step.kind = PreTokenizerStep::Kind::ByteLevel;
      step.add_prefix_space = j.value("add_prefix_space", true);
      if (j.value("use_regex", true)) step.regex = std::make_shared<Regex>(gpt2_split_pattern(), field);
    } else if (type == "Digits") {
      step.kind = PreTokenizerStep::Kind::Split;
      step.regex = std::make_shared<Regex>(j.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)", field);
    } else if (type == "Split") {
      step.kind = PreTokenizerStep::Kind::Split;
      step.behavior = behavior(j, field);
      check(!j.value("invert", false), "tokenizer", "{}: {}.invert true is not supported", d.source, field);
      const json& pattern = j.at("pattern");
      if (pattern.contains("Regex"))
        step.regex = std::make_shared<Regex>(pattern["Regex"].get<std::string>(), field + ".pattern.Regex");
      else
        step.literal = literal_pattern(pattern, field);
    } else if (type == "Metaspace") {
      step.kind = PreTokenizerStep::Kind::Metaspace;
      step.replacement = j.value("replacement", std::string("\u2581"));
      step.prepend_scheme = prepend_scheme(j);
      step.split = j.value("split", true);
    } else {
      unsupported(field + ".type", type, "Sequence, ByteLevel, Digits, Split, Metaspace");
    }
    d.pre_tokenizer.push_back(std::move(step));
  }

  void decoder(const json& j, const std::string& field) {
    if (j.is_null()) return;
    const std::string type = type_of(j, field);
    DecoderStep step;
    if (type == "Sequence") {
      const json& list = j.at("decoders");
      for (size_t i = 0; i < list.size(); ++i) decoder(list[i], fmt::format("{}.decoders[{}]", field, i));
      return;
    } else if (type == "ByteLevel") {
      step.kind = DecoderStep::Kind::ByteLevel;
    } else if (type == "ByteFallback") {
      step.kind = DecoderStep::Kind::ByteFallback;
    } else if (type == "Fuse") {
      step.kind = DecoderStep::Kind::Fuse;
    } else if (type == "Replace") {
      step.kind = DecoderStep::Kind::Replace;
      step.pattern = literal_pattern(j.at("pattern"), field);
      step.content = j.at("content").get<std::string>();
    } else if (type == "Strip") {
      step.kind = DecoderStep::Kind::Strip;
      step.content = j.at("content").get<std::string>();
      step.start = j.value("start", size_t(0));
      step.stop = j.value("stop", size_t(0));
    } else if (type == "Metaspace") {
      step.kind = DecoderStep::Kind::Metaspace;
      step.replacement = j.value("replacement", std::string("\u2581"));
      step.prepend_scheme = prepend_scheme(j);
    } else {
      unsupported(field + ".type", type, "Sequence, ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace");
    }
    d.decoder.push_back(std::move(step));
  }

  void post_processor(const json& j, const std::string& field) {
    if (j.is_null()) return;
    const std::string type = type_of(j, field);
    if (type == "Sequence") {
      const json& list = j.at("processors");
      for (size_t i = 0; i < list.size(); ++i) post_processor(list[i], fmt::format("{}.processors[{}]", field, i));
    } else if (type == "TemplateProcessing") {
      template_processing(j, field);
    } else if (type != "ByteLevel") {  // ByteLevel only trims offsets, which ids do not carry
      unsupported(field + ".type", type, "Sequence, TemplateProcessing, ByteLevel");
    }
  }

  void template_processing(const json& j, const std::string& field) {
    d.post_processor = {};
    bool after_text = false;
    for (const json& item : j.at("single")) {
      if (item.contains("Sequence")) {
        after_text = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      const json& special = j.at("special_tokens");
      check(special.contains(name), "tokenizer", "{}: {}.special_tokens lacks {:?}", d.source, field, name);
      for (const json& id : special[name].at("ids"))
        (after_text ? d.post_processor.suffix : d.post_processor.prefix).push_back(id.get<int64_t>());
    }
  }

  void model(const json& j) {
    const std::string type = j.value("type", std::string("BPE"));
    if (type != "BPE") unsupported("model.type", type, "BPE");
    for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"})
      check(!j.contains(affix) || j[affix].is_null() || j[affix].get<std::string>().empty(), "tokenizer",
            "{}: model.{} is not supported", d.source, affix);
    check(!j.contains("dropout") || j["dropout"].is_null(), "tokenizer",
          "{}: model.dropout is not supported (encoding is deterministic)", d.source);
    for (const auto& [token, id] : j.at("vocab").items()) d.model.vocab.emplace(token, id.get<int32_t>());
    d.model.fuse_unk = j.value("fuse_unk", false);
    d.model.byte_fallback = j.value("byte_fallback", false);
    d.model.ignore_merges = j.value("ignore_merges", false);
    if (j.contains("unk_token") && j["unk_token"].is_string()) {
      auto it = d.model.vocab.find(j["unk_token"].get<std::string>());
      check(it != d.model.vocab.end(), "tokenizer", "{}: model.unk_token {} is not in the vocabulary", d.source,
            j["unk_token"].dump());
      d.model.unk_id = it->second;
    }
    std::vector<std::pair<std::string, std::string>> merges;
    for (const json& m : j.value("merges", json::array())) {
      if (m.is_array()) {
        merges.emplace_back(m.at(0).get<std::string>(), m.at(1).get<std::string>());
        continue;
      }
      const std::string line = m.get<std::string>();
      const size_t space = line.find(' ');
      check(space != std::string::npos, "tokenizer", "{}: model.merges[{}] {:?} is not two tokens", d.source,
            merges.size(), line);
      merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    }
    set_merges(d, merges, "model.merges");
  }

  void added_tokens(const json& list) {
    for (const json& t : list)
      d.added.push_back({t.at("id").get<int64_t>(), t.at("content").get<std::string>(), t.value("special", false),
                         t.value("lstrip", false), t.value("rstrip", false), t.value("single_word", false)});
  }
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "tokenizer", "cannot open {}", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// tokenizer_config.json's "bos_token" / "eos_token": a string or {"content": ...}.
std::optional<int64_t> config_token(const TokenizerData& d, const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  const std::string name = v.is_string() ? v.get<std::string>() : v.is_object() ? v.value("content", "") : "";
  for (const AddedToken& t : d.added)
    if (t.content == name) return t.id;
  auto it = d.model.vocab.find(name);
  return it == d.model.vocab.end() ? std::nullopt : std::optional<int64_t>(it->second);
}

}  // namespace

std::shared_ptr<TokenizerData> load_json_text(std::string_view text, const std::string& source) {
  auto d = std::make_shared<TokenizerData>();
  d->source = source;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("tokenizer", "{} is not valid JSON: {}", source, e.what());
  }
  check(j.is_object() && j.contains("model"), "tokenizer", "{}: no model object", source);
  Reader r{*d};
  try {
    r.model(j["model"]);
    r.added_tokens(j.value("added_tokens", json::array()));
    r.normalizer(j.value("normalizer", json()), "normalizer");
    r.pre_tokenizer(j.value("pre_tokenizer", json()), "pre_tokenizer");
    r.decoder(j.value("decoder", json()), "decoder");
    r.post_processor(j.value("post_processor", json()), "post_processor");
  } catch (const json::exception& e) {
    fail("tokenizer", "{}: a field has the wrong type or is missing: {}", source, e.what());
  }
  const bool byte_level = std::any_of(d->pre_tokenizer.begin(), d->pre_tokenizer.end(),
                                      [](const auto& s) { return s.kind == PreTokenizerStep::Kind::ByteLevel; });
  d->kind = byte_level ? "byte-level BPE" : "SentencePiece BPE";
  index_tokens(*d);
  if (!d->post_processor.prefix.empty()) d->bos_id = d->post_processor.prefix.front();
  return d;
}

std::shared_ptr<TokenizerData> load_json_file(const std::string& path, bool with_config) {
  auto d = load_json_text(read_text(path), path);
  const auto config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (!with_config || !std::filesystem::exists(config_path)) return d;
  const json config = json::parse(read_text(config_path.string()), nullptr, false);
  if (config.is_discarded()) return d;
  if (auto bos = config_token(*d, config, "bos_token")) d->bos_id = bos;
  if (auto eos = config_token(*d, config, "eos_token")) d->eos_id = eos;
  return d;
}

}  // namespace dtensor::text::detail
