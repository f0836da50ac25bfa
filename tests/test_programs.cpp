// The programs' building blocks that need no model: the random checkpoint generator (config.json
// our parser and transformers read, every tensor with its shape and dtype, one file or shards +
// index, determinism, scales, bad specs), the .npy writer of generate --dump-logits, and train's
// choice of rows per step and its check of the token ids.
#include "checkpoint_test_util.hpp"
#include "training.hpp"

#include "io/checkpoint.hpp"
#include "io/npy.hpp"
#include "models/hf_config.hpp"
#include "tensor/ops.hpp"
#include "tools/random_checkpoint.hpp"

#include <cmath>

using namespace dtensor;
using checkpoint_test::read_file;
using checkpoint_test::TempDir;
namespace fs = std::filesystem;

namespace {

tools::RandomCheckpointSpec tiny_mixtral() {
  tools::RandomCheckpointSpec spec;
  spec.architecture = "MixtralForCausalLM";
  spec.hidden = 32;
  spec.intermediate = 48;
  spec.heads = 4;
  spec.kv_heads = 1;
  spec.head_dim = 16;
  spec.vocab = 50;
  spec.experts = 3;
  spec.experts_per_tok = 2;
  spec.dtype = DType::BF16;
  spec.seed = 9;
  spec.max_shard_bytes = 8000;
  return spec;
}

// Every tensor the spec lists is in the checkpoint with its shape and the spec's dtype, and no other.
void check_tensors(const io::Checkpoint& ckpt, const tools::RandomCheckpointSpec& spec) {
  const auto tensors = tools::random_checkpoint_tensors(spec);
  CHECK(ckpt.names().size() == tensors.size());
  for (const tools::RandomTensorSpec& t : tensors) {
    INFO(t.name);
    REQUIRE(ckpt.contains(t.name));
    CHECK(ckpt.info(t.name).shape == t.shape);
    CHECK(ckpt.info(t.name).dtype == spec.dtype);
  }
}

double standard_deviation(const Tensor& t) {
  const Tensor x = t.to(DType::F64);
  const double mean = dtensor::mean(x).item<double>();
  return std::sqrt(dtensor::mean(mul(add(x, -mean), add(x, -mean))).item<double>());
}

}  // namespace

TEST_CASE("a random Llama checkpoint in one file parses with its spec's config", "[programs][generator]") {
  TempDir dir;
  tools::RandomCheckpointSpec spec;
  spec.tie_word_embeddings = true;
  spec.rope_theta = 5e5;
  tools::write_random_checkpoint(dir.path().string(), spec);

  const models::HFConfig config = models::load_hf_config(dir.path().string());
  CHECK(config.architecture == "LlamaForCausalLM");
  CHECK(config.hidden_size == spec.hidden);
  CHECK(config.intermediate_size == spec.intermediate);
  CHECK(config.num_hidden_layers == spec.layers);
  CHECK(config.num_attention_heads == spec.heads);
  CHECK(config.num_key_value_heads == spec.kv_heads);
  CHECK(config.head_dim == spec.hidden / spec.heads);
  CHECK(config.vocab_size == spec.vocab);
  CHECK(config.tie_word_embeddings);
  CHECK(config.rope_theta == 5e5);
  CHECK(config.rms_norm_eps == spec.rms_norm_eps);
  CHECK(config.dtype == DType::F32);
  CHECK_FALSE(config.is_moe());

  const io::Checkpoint ckpt = io::Checkpoint::open(dir.path().string());
  CHECK(ckpt.files() == std::vector<std::string>{io::kSingleFileName});
  CHECK_FALSE(fs::exists(dir.path() / io::kIndexFileName));
  CHECK_FALSE(ckpt.contains("lm_head.weight"));
  CHECK(ckpt.contains("model.layers.1.mlp.down_proj.weight"));
  check_tensors(ckpt, spec);
}

TEST_CASE("a random Mixtral checkpoint in bf16 shards has an index and every expert", "[programs][generator]") {
  TempDir dir;
  const tools::RandomCheckpointSpec spec = tiny_mixtral();
  tools::write_random_checkpoint(dir.path().string(), spec);

  const models::HFConfig config = models::load_hf_config(dir.path().string());
  CHECK(config.architecture == "MixtralForCausalLM");
  CHECK(config.num_local_experts == 3);
  CHECK(config.num_experts_per_tok == 2);
  CHECK(config.head_dim == 16);
  CHECK(config.dtype == DType::BF16);

  const io::Checkpoint ckpt = io::Checkpoint::open(dir.path().string());
  CHECK(ckpt.files().size() > 1);
  CHECK(fs::exists(dir.path() / io::kIndexFileName));
  CHECK(ckpt.info("model.layers.0.block_sparse_moe.gate.weight").shape == Shape{3, 32});
  CHECK(ckpt.info("model.layers.1.block_sparse_moe.experts.2.w2.weight").shape == Shape{32, 48});
  CHECK(ckpt.info("model.layers.0.self_attn.q_proj.weight").shape == Shape{64, 32});
  CHECK(ckpt.info("model.layers.0.self_attn.k_proj.weight").shape == Shape{16, 32});
  CHECK(ckpt.info("lm_head.weight").shape == Shape{50, 32});
  check_tensors(ckpt, spec);
}

TEST_CASE("rewriting a directory replaces the earlier checkpoint's files", "[programs][generator]") {
  TempDir dir;
  tools::RandomCheckpointSpec spec = tiny_mixtral();
  tools::write_random_checkpoint(dir.path().string(), spec);
  spec.max_shard_bytes = 0;
  tools::write_random_checkpoint(dir.path().string(), spec);
  CHECK(io::Checkpoint::open(dir.path().string()).files() == std::vector<std::string>{io::kSingleFileName});
  size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 2);  // config.json and model.safetensors
}

TEST_CASE("random checkpoints are deterministic in the seed and scaled by fan-in", "[programs][generator]") {
  TempDir a, b, c;
  tools::RandomCheckpointSpec spec;
  spec.hidden = 128;
  spec.intermediate = 256;
  spec.seed = 3;
  tools::write_random_checkpoint(a.path().string(), spec);
  tools::write_random_checkpoint(b.path().string(), spec);
  spec.seed = 4;
  tools::write_random_checkpoint(c.path().string(), spec);
  CHECK(read_file(a.file(io::kSingleFileName)) == read_file(b.file(io::kSingleFileName)));
  CHECK(read_file(a.file(io::kSingleFileName)) != read_file(c.file(io::kSingleFileName)));

  const io::Checkpoint ckpt = io::Checkpoint::open(a.path().string());
  const Tensor down = ckpt.read("model.layers.0.mlp.down_proj.weight");  // fan-in 256
  CHECK(standard_deviation(down) == Approx(1.0 / 16).epsilon(0.05));
  const Tensor norm = ckpt.read("model.layers.0.input_layernorm.weight");
  CHECK(amin(norm).item<double>() >= 0.75);
  CHECK(amax(norm).item<double>() <= 1.25);
  // Different tensors of one shape draw different values.
  CHECK_FALSE(equal(ckpt.read("model.layers.0.mlp.gate_proj.weight"), ckpt.read("model.layers.0.mlp.up_proj.weight")));
}

TEST_CASE("bad random checkpoint specs are refused before anything is written", "[programs][generator]") {
  TempDir dir;
  const std::string out = (dir.path() / "model").string();
  tools::RandomCheckpointSpec spec;
  spec.kv_heads = 3;  // 4 heads
  CHECK_THROWS_AS(tools::write_random_checkpoint(out, spec), ShapeError);
  spec = {};
  spec.architecture = "GPT2LMHeadModel";
  CHECK_THROWS_WITH(tools::write_random_checkpoint(out, spec), Catch::Contains("GPT2LMHeadModel"));
  spec = {};
  spec.dtype = DType::F16;
  CHECK_THROWS_AS(tools::write_random_checkpoint(out, spec), ValueError);
  spec = {};
  spec.architecture = "MixtralForCausalLM";
  spec.experts_per_tok = 5;  // 4 experts
  CHECK_THROWS(tools::write_random_checkpoint(out, spec));
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("npy files have a v1.0 header padded to 64 bytes and f32 data in C order", "[programs][npy]") {
  TempDir dir;
  const Tensor logits = Tensor::from_vector<double>({1.5, -2, 3, 4.25, 5, -6}, {2, 3});
  io::write_npy(dir.file("a.npy"), logits);
  const std::string bytes = read_file(dir.file("a.npy"));

  REQUIRE(bytes.size() > 10);
  CHECK(bytes.substr(0, 6) == "\x93NUMPY");
  CHECK(bytes[6] == 1);
  CHECK(bytes[7] == 0);
  const size_t header_length = uint8_t(bytes[8]) | (size_t(uint8_t(bytes[9])) << 8);
  CHECK((10 + header_length) % 64 == 0);
  const std::string header = bytes.substr(10, header_length);
  CHECK(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0) == 0);
  CHECK(header.back() == '\n');
  REQUIRE(bytes.size() == 10 + header_length + 6 * sizeof(float));
  std::vector<float> data(6);
  std::memcpy(data.data(), bytes.data() + 10 + header_length, 6 * sizeof(float));
  CHECK(data == std::vector<float>{1.5f, -2, 3, 4.25f, 5, -6});

  CHECK(io::npy_header({7}).find("'shape': (7,)") != std::string::npos);
  CHECK_THROWS_AS(io::write_npy(dir.file("b.npy"), Tensor::zeros({2}, DType::I64)), DTypeError);
  CHECK_THROWS_AS(io::write_npy((dir.path() / "missing" / "c.npy").string(), logits), ValueError);
}

TEST_CASE("train: step s uses rows (s*B .. s*B+B-1) mod N", "[programs][train]") {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 5 * 3; ++i) ids.push_back(i);
  const Tensor tokens = Tensor::from_vector(ids, {5, 3});  // row r holds 3r, 3r+1, 3r+2
  auto first_column = [](const Tensor& rows) {
    std::vector<int64_t> out;
    for (int64_t r = 0; r < rows.size(0); ++r) out.push_back(rows.select(0, r).select(0, 0).item<int64_t>() / 3);
    return out;
  };
  CHECK(first_column(training::batch_rows(tokens, 0, 2)) == std::vector<int64_t>{0, 1});
  CHECK(first_column(training::batch_rows(tokens, 2, 2)) == std::vector<int64_t>{4, 0});
  CHECK(first_column(training::batch_rows(tokens, 3, 4)) == std::vector<int64_t>{2, 3, 4, 0});
  CHECK(first_column(training::batch_rows(tokens, 7, 5)) == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(equal(training::batch_rows(tokens, 1, 1), tokens.narrow(0, 1, 1)));
}

TEST_CASE("train: a token id outside the vocabulary is named with its row and column", "[programs][train]") {
  const Tensor tokens = Tensor::from_vector<int64_t>({0, 9, 3, 4, 10, 1}, {2, 3});
  CHECK_NOTHROW(training::check_token_ids(tokens, 11, "t.npy"));
  CHECK_THROWS_WITH(training::check_token_ids(tokens, 10, "t.npy"),
                    Catch::Contains("t.npy: id 10 at row 1 column 1 is outside the vocabulary [0, 10)"));
  CHECK_THROWS_AS(training::check_token_ids(Tensor::from_vector<int64_t>({-1, 2}, {1, 2}), 10, "t.npy"), ValueError);
}
