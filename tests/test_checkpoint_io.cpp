// Writing safetensors files and checkpoint directories, reading them back (and by hand), the
// index of a sharded checkpoint, progress reports, and save_dtensors of sharded DTensors.
#include "checkpoint_test_util.hpp"

#include "collectives/comm_recorder.hpp"
#include "collectives/runtime.hpp"
#include "io/checkpoint.hpp"
#include "io/checkpoint_writer.hpp"
#include "tensor/ops.hpp"
#include "tensor/random.hpp"

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

using namespace dtensor;
using namespace checkpoint_test;
using Catch::Contains;

namespace {

Tensor sample(const Shape& shape, DType dtype, uint64_t seed) {
  return random(shape, DType::F64, {.seed = seed, .a = -4, .b = 4}).to(dtype);
}

io::NamedTensors some_tensors() {
  return {{"embed.weight", sample({6, 4}, DType::F32, 1)},
          {"layers.0.norm", sample({4}, DType::BF16, 2)},
          {"layers.0.ids", Tensor::from_vector<int64_t>({3, -1, int64_t(1) << 50}, {3})},
          {"layers.1.proj", sample({2, 3, 2}, DType::F64, 3)},
          {"head", sample({5, 4}, DType::F16, 4)}};
}

bool no_temporaries(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("write_safetensors writes a file the reader and a hand parse agree on", "[checkpoint][writer]") {
  TempDir dir;
  const std::string path = dir.file("out.safetensors");
  const io::NamedTensors tensors = some_tensors();
  io::write_safetensors(path, tensors, {{"format", "pt"}});
  CHECK(no_temporaries(dir.path()));

  io::SafetensorsFile file = io::SafetensorsFile::open(path);
  CHECK(file.metadata() == io::Metadata{{"format", "pt"}});
  for (const auto& [name, tensor] : tensors) CHECK(equal(file.read(name), tensor));
  // Largest elements first, stable: every tensor starts aligned to its element size.
  CHECK(file.names() ==
        std::vector<std::string>{"layers.0.ids", "layers.1.proj", "embed.weight", "layers.0.norm", "head"});

  // By hand: the length prefix, an 8-byte aligned JSON header, and each tensor's raw bytes.
  const std::string bytes = read_file(path);
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | uint8_t(bytes[size_t(i)]);
  CHECK(header_bytes % 8 == 0);
  const auto header = nlohmann::json::parse(bytes.substr(8, header_bytes));
  CHECK(header["__metadata__"]["format"] == "pt");
  CHECK(header["layers.0.norm"]["dtype"] == "BF16");
  CHECK(header["layers.1.proj"]["shape"] == nlohmann::json::array({2, 3, 2}));
  uint64_t total = 0;
  for (const auto& [name, tensor] : tensors) {
    const auto offsets = header[name]["data_offsets"];
    const uint64_t begin = offsets[0], end = offsets[1];
    REQUIRE(end - begin == tensor.nbytes());
    CHECK(begin % tensor.element_size() == 0);
    CHECK(std::memcmp(bytes.data() + 8 + header_bytes + begin, tensor.data_ptr(), tensor.nbytes()) == 0);
    total += tensor.nbytes();
  }
  CHECK(bytes.size() == 8 + header_bytes + total);

  // Writing again replaces the file whole.
  io::write_safetensors(path, {{"only", Tensor::arange({2}, DType::I32)}});
  CHECK(io::SafetensorsFile::open(path).names() == std::vector<std::string>{"only"});
}

TEST_CASE("write_safetensors refuses bad names and unwritable paths", "[checkpoint][writer][errors]") {
  TempDir dir;
  const Tensor t = Tensor::zeros({2}, DType::F32);
  CHECK_THAT(message_of<ValueError>([&] {
               io::write_safetensors(dir.file("a"), {{"w", t}, {"w", t}});
             }),
             Contains("'w'") && Contains("twice"));
  CHECK_THROWS_AS(io::write_safetensors(dir.file("a"), {{"__metadata__", t}}), ValueError);
  CHECK_THROWS_AS(io::write_safetensors(dir.file("a"), {{"", t}}), ValueError);
  const std::string unreachable = dir.file("missing-dir/x.safetensors");
  CHECK_THAT(message_of<ValueError>([&] {
               io::write_safetensors(unreachable, {{"w", t}});
             }),
             Contains("missing-dir/x.safetensors"));
  CHECK(no_temporaries(dir.path()));
  CHECK(fs::is_empty(dir.path()));
}

TEST_CASE("plan_shards fills shards in order up to the bound", "[checkpoint][writer]") {
  using Plan = std::vector<std::vector<size_t>>;
  CHECK(io::plan_shards({4, 4, 4, 10, 1}, 8) == Plan{{0, 1}, {2}, {3}, {4}});
  CHECK(io::plan_shards({1, 2, 3}, 100) == Plan{{0, 1, 2}});
  CHECK(io::plan_shards({}, 100) == Plan{{}});
  CHECK_THROWS_AS(io::plan_shards({1}, 0), ValueError);
  CHECK(io::shard_file_name(1, 3) == "model-00002-of-00003.safetensors");
  CHECK(io::shard_file_name(0, 1) == "model.safetensors");
}

TEST_CASE("a sharded checkpoint round-trips through its index", "[checkpoint][writer]") {
  TempDir dir;
  const io::NamedTensors tensors = some_tensors();  // 96, 8, 24, 96, 40 bytes
  io::save_checkpoint(dir.path().string(), tensors, 100);
  for (const char* name :
       {"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
        "model-00004-of-00004.safetensors", "model.safetensors.index.json"}) {
    CHECK(fs::exists(dir.path() / name));
  }
  CHECK(no_temporaries(dir.path()));

  const auto index = nlohmann::json::parse(read_file(dir.file("model.safetensors.index.json")));
  CHECK(index["metadata"]["total_size"] == 96 + 8 + 24 + 96 + 40);
  CHECK(index["weight_map"]["layers.0.ids"] == "model-00002-of-00004.safetensors");
  CHECK(index["weight_map"]["head"] == "model-00004-of-00004.safetensors");

  std::vector<io::LoadProgress> reports;
  io::Checkpoint ckpt =
      io::Checkpoint::open(dir.path().string(), {.progress = [&](const io::LoadProgress& p) { reports.push_back(p); }});
  CHECK(ckpt.files().size() == 4);
  CHECK(ckpt.names().size() == tensors.size());
  CHECK(io::SafetensorsFile::open(dir.file("model-00001-of-00004.safetensors")).metadata().at("format") == "pt");
  for (const auto& [name, tensor] : tensors) {
    CHECK(ckpt.info(name).shape == tensor.shape());
    CHECK(equal(ckpt.read(name), tensor));
  }
  REQUIRE(reports.size() == tensors.size());
  CHECK(reports.back().files_started == 4);
  CHECK(reports.back().tensors_read == reports.back().tensors_total);
  CHECK(reports.back().bytes_read == 264);
  CHECK(equal(ckpt.source("embed.weight").read({2, 1}, {3, 2}), tensors[0].second.narrow(0, 2, 3).narrow(1, 1, 2)));
  CHECK(equal(ckpt.read_block("head", {4, 0}, {1, 4}), tensors[4].second.narrow(0, 4, 1)));

  CHECK_THAT(message_of<ValueError>([&] { ckpt.info("layers.9.proj"); }),
             Contains("layers.9.proj") && Contains(dir.path().string()));

  // Saving again into one file removes the index and the old shards.
  io::save_checkpoint(dir.path().string(), tensors);
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
  io::Checkpoint single = io::Checkpoint::open(dir.path().string());
  CHECK(single.files() == std::vector<std::string>{"model.safetensors"});
  CHECK(equal(single.read("layers.1.proj"), tensors[3].second));
}

TEST_CASE("broken checkpoint directories are typed errors naming them", "[checkpoint][errors]") {
  TempDir dir;
  const std::string where = dir.path().string();
  CHECK_THAT(message_of<ValueError>([&] { io::Checkpoint::open(where); }), Contains(where));

  io::write_safetensors(dir.file("part.safetensors"), {{"a", Tensor::zeros({2}, DType::F32)}});
  const std::string index = dir.file("model.safetensors.index.json");
  write_file(index, R"({"weight_map": {"a": "part.safetensors", "b": "part.safetensors"}})");
  CHECK_THAT(message_of<ValueError>([&] { io::Checkpoint::open(where); }), Contains("'b'") && Contains("part"));
  write_file(index, R"({"weight_map": {"a": "../part.safetensors"}})");
  CHECK_THROWS_AS(io::Checkpoint::open(where), ValueError);
  write_file(index, R"({"weight_map": {"a": "absent.safetensors"}})");
  CHECK_THAT(message_of<ValueError>([&] { io::Checkpoint::open(where); }), Contains("absent.safetensors"));
  write_file(index, R"({"weight_map": )");
  CHECK_THAT(message_of<ValueError>([&] { io::Checkpoint::open(where); }), Contains("index.json"));
  // An index naming no tensor once read past the end of the shard list
  // (fuzz/corpus/checkpoint_index/crash-empty-weight-map.json).
  write_file(index, R"({"weight_map": {}})");
  CHECK_THAT(message_of<ValueError>([&] { io::Checkpoint::open(where); }), Contains("\"weight_map\" is empty"));
  // A NUL would end the opened path early, at "part.safetensors".
  write_file(index, R"({"weight_map": {"a": "part.safetensors\u0000.bak"}})");
  CHECK_THAT(message_of<ValueError>([&] { io::Checkpoint::open(where); }),
             Contains(R"("part.safetensors\u0000.bak", not a file in the directory)"));
  write_file(index, R"({"weight_map": {"a": "part.safetensors"}})");
  CHECK(io::Checkpoint::open(where).names() == std::vector<std::string>{"a"});
  // A single file may be opened directly.
  CHECK(io::Checkpoint::open(dir.file("part.safetensors")).contains("a"));
}

TEST_CASE("progress lines: only rank 0 prints; sizes read like humans write them", "[checkpoint]") {
  CHECK_FALSE(io::stderr_progress(1));
  CHECK(io::stderr_progress(0));
  CHECK(io::format_bytes(17) == "17 B");
  CHECK(io::format_bytes(1536) == "1.5 KiB");
  CHECK(io::format_bytes(uint64_t(1288490189)) == "1.2 GiB");
}

namespace {

// One directory for the whole job, named after rank 0's process id.
fs::path shared_directory(Communicator world) {
  Tensor id = Tensor::from_vector<int64_t>({int64_t(::getpid())}, {1});
  world.broadcast(id, 0);
  return fs::temp_directory_path() / ("dtensor-ckpt-job-" + std::to_string(id.item<int64_t>()));
}

}  // namespace

TEST_CASE("save_dtensors gathers sharded tensors and writes them once", "[checkpoint][dtensor]") {
  Communicator world = dtensor::world();
  const fs::path dir = shared_directory(world);
  const Tensor a = sample({5, 3}, DType::F32, 7);  // uneven over 2 ranks
  const Tensor b = sample({3, 5}, DType::BF16, 8);
  const Tensor c = sample({4}, DType::F64, 9);
  const auto check_saved = [&](const io::NamedDTensors& tensors, uint64_t max_shard_bytes, size_t files) {
    io::save_dtensors(dir.string(), tensors, max_shard_bytes);
    // Every rank returns after the files exist.
    io::Checkpoint ckpt = io::Checkpoint::open(dir.string());
    CHECK(ckpt.files().size() == files);
    CHECK(equal(ckpt.read("a"), a));
    CHECK(equal(ckpt.read("b"), b));
    CHECK(equal(ckpt.read("c"), c));
    world.barrier();  // everyone has read before rank 0 removes the directory
    if (world.rank() == 0) fs::remove_all(dir);
  };

  DeviceMesh line = DeviceMesh::from_world({world.size()});
  check_saved({{"a", DTensor::distribute(a, line, {Shard(0)})},
               {"b", DTensor::distribute(b, line, {Shard(1)})},
               {"c", DTensor::distribute(c, line, {Replicate()})}},
              io::kDefaultMaxShardBytes, 1);
  DeviceMesh grid = DeviceMesh::from_world({1, world.size()});
  check_saved({{"a", DTensor::distribute(a, grid, {Replicate(), Shard(1)})},
               {"b", DTensor::distribute(b, grid, {Shard(0), Shard(0)})},
               {"c", DTensor::distribute(c, grid, {Replicate(), Partial()})}},
              40, 3);
}

TEST_CASE("save_dtensors: only the writing rank receives the tensors; others send their block",
          "[checkpoint][dtensor]") {
  Communicator world = dtensor::world();
  const fs::path dir = shared_directory(world);
  const Tensor a = sample({7, 5}, DType::F32, 10);  // 7 rows and 5 columns: uneven over 2 ranks
  const DeviceMesh line = DeviceMesh::from_world({world.size()});
  const DeviceMesh column = DeviceMesh::from_world({world.size(), 1});
  {
    CommRecorder recorder;
    io::save_dtensors(dir.string(), {{"rows", DTensor::distribute(a, line, {Shard(0)})},
                                     {"cols", DTensor::distribute(a, line, {Shard(1)})},
                                     {"grid", DTensor::distribute(a, column, {Shard(1), Shard(0)})}});
    // No all-gather anywhere: a non-writer never holds a full tensor, it sends its block once per
    // tensor; the writer receives one block per peer and tensor.
    const bool writer = world.rank() == 0;
    INFO(recorder.summary());
    CHECK(recorder.count(CollectiveKind::AllGather) == 0);
    CHECK(recorder.count(CollectiveKind::Recv) == (writer ? 3 * uint64_t(world.size() - 1) : 0));
    CHECK(recorder.count(CollectiveKind::Send) == (writer ? 0 : 3));
  }
  io::Checkpoint ckpt = io::Checkpoint::open(dir.string());
  for (const char* name : {"rows", "cols", "grid"}) CHECK(equal(ckpt.read(name), a));
  // A partial sum is reduced before it is gathered.
  io::save_dtensors(dir.string(), {{"sum", DTensor::from_local(a, column, {Partial(), Replicate()}, a.shape())}});
  CHECK(equal(io::Checkpoint::open(dir.string()).read("sum"), mul(a, double(world.size()))));
  world.barrier();
  if (world.rank() == 0) fs::remove_all(dir);
}

TEST_CASE("save_dtensors: a failing writer fails every rank", "[checkpoint][dtensor][errors]") {
  DeviceMesh line = DeviceMesh::from_world({dtensor::world().size()});
  DTensor t = DTensor::distribute(sample({4, 2}, DType::F32, 1), line, {Shard(0)});
  // A regular file where the directory should be: the writer cannot create it.
  TempDir dir;
  write_file(dir.file("blocker"), "x");
  const std::string target = dir.file("blocker") + "/ckpt";
  CHECK_THAT(message_of<ValueError>([&] { io::save_dtensors(target, {{"t", t}}); }), Contains("ckpt"));
  CHECK_THROWS_AS(io::save_dtensors(target, {}), ValueError);
}

namespace {

// Four 8 MB tensors, one per shard, each filled with sign * (its index + 1).
io::NamedTensors four_shards_of(double sign) {
  io::NamedTensors tensors;
  for (int i = 0; i < 4; ++i)
    tensors.emplace_back(fmt::format("w{}", i), Tensor::full({int64_t(2) << 20}, sign * (i + 1), DType::F32));
  return tensors;
}
constexpr uint64_t kShardBytes = uint64_t(8) << 20;

void check_holds(const fs::path& dir, double sign) {
  io::Checkpoint ckpt = io::Checkpoint::open(dir.string());
  REQUIRE(ckpt.names().size() == 4);
  for (int i = 0; i < 4; ++i) {
    INFO("w" << i << ", expected " << sign * (i + 1));
    const Tensor w = ckpt.read(fmt::format("w{}", i));
    CHECK(equal(w, Tensor::full(w.shape(), sign * (i + 1), DType::F32)));
  }
}

}  // namespace

TEST_CASE("a save killed half way leaves the previous checkpoint, with its values", "[checkpoint][writer][faults]") {
  TempDir tmp;
  const fs::path dir = tmp.path() / "ckpt";
  io::save_checkpoint(dir.string(), four_shards_of(1), kShardBytes);
  { std::ofstream(dir / "config.json") << "{}\n"; }  // the user's file, not the checkpoint's

  // A child process saves new values; it is killed as soon as its first new shard is complete.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    io::save_checkpoint(dir.string(), four_shards_of(-1), kShardBytes);
    std::_Exit(0);
  }
  const fs::path staging = fmt::format("{}.saving-{}", dir.string(), child);
  int status = 0;
  while (!fs::exists(staging / "model-00001-of-00004.safetensors") && ::waitpid(child, &status, WNOHANG) == 0)
    ::usleep(100);
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
  REQUIRE(WIFSIGNALED(status));  // killed mid-save, not finished
  CHECK(fs::exists(staging));    // what the crash left

  check_holds(dir, 1);
  CHECK(fs::exists(dir / "config.json"));

  // The next save completes, keeps the user's file and removes what the crash left.
  io::save_checkpoint(dir.string(), four_shards_of(-1), kShardBytes);
  check_holds(dir, -1);
  CHECK(fs::exists(dir / "config.json"));
  CHECK_FALSE(fs::exists(staging));
  CHECK(no_temporaries(dir));
}

TEST_CASE("saving over a directory with subdirectories moves the files in and keeps the rest", "[checkpoint][writer]") {
  TempDir tmp;
  const fs::path dir = tmp.path() / "ckpt";
  io::save_checkpoint(dir.string(), four_shards_of(1), kShardBytes);
  fs::create_directories(dir / "runs");
  { std::ofstream(dir / "runs" / "log.txt") << "kept\n"; }
  io::save_checkpoint(dir.string() + "/", four_shards_of(-1), kShardBytes);
  check_holds(dir, -1);
  CHECK(read_file((dir / "runs" / "log.txt").string()) == "kept\n");
  CHECK(no_temporaries(dir));
  CHECK(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()) == 1);  // no staging left
}
