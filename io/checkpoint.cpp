#include "io/checkpoint.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

namespace dtensor::io {

namespace fs = std::filesystem;

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = double(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

ProgressCallback stderr_progress(int rank, std::chrono::milliseconds interval) {
  if (rank != 0) return {};
  using Clock = std::chrono::steady_clock;
  struct Last {
    Clock::time_point printed{};
    size_t files_started = 0;
  };
  auto last = std::make_shared<Last>();
  return [last, interval](const LoadProgress& p) {
    const auto now = Clock::now();
    const bool finished = p.tensors_read == p.tensors_total;
    if (!finished && p.files_started == last->files_started && now - last->printed < interval) return;
    last->printed = now;
    last->files_started = p.files_started;
    std::fprintf(stderr, "%s %zu/%zu files, %s of %s\n", finished ? "loaded" : "loading", p.files_started,
                 p.files_total, format_bytes(p.bytes_read).c_str(), format_bytes(p.bytes_total).c_str());
  };
}

struct Checkpoint::Progress {
  ProgressCallback callback;
  LoadProgress state;
  std::vector<bool> file_started;
  std::set<std::string> tensors_read;

  void record_read(size_t file, const std::string& name, uint64_t bytes) {
    if (!file_started[file]) {
      file_started[file] = true;
      ++state.files_started;
    }
    state.bytes_read += bytes;
    tensors_read.insert(name);
    state.tensors_read = tensors_read.size();
    if (callback) callback(state);
  }
};

namespace {

nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  check(in.good(), "checkpoint", "{}: cannot open", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint", "{}: not valid JSON: {}", path.string(), e.what());
  }
}

// The weight map of an index file: tensor name -> shard file name (a plain name in the directory).
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const nlohmann::json index = read_json_file(index_path);
  const std::string where = index_path.string();
  check(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(), "checkpoint",
        "{}: expected an object with a \"weight_map\" object", where);
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, file] : index["weight_map"].items()) {
    check(file.is_string(), "checkpoint", "{}: weight_map entry '{}' must be a file name string, got {}", where, name,
          file.dump());
    const std::string file_name = file.get<std::string>();
    // Only files inside the directory: an index must not point a loader elsewhere. A NUL (JSON's
    // \u0000) would end the path the system opens early, naming another file than the index's.
    const bool plain = !file_name.empty() && file_name != "." && file_name != ".." &&
                       file_name.find_first_of(std::string("/\0", 2)) == std::string::npos;
    // The name as JSON: escaped, a NUL cannot cut the message short.
    check(plain, "checkpoint", "{}: weight_map entry '{}' names {}, not a file in the directory", where, name,
          file.dump());
    weight_map[name] = file_name;
  }
  // open() tells a single file from an index by an empty map, and a checkpoint needs a tensor.
  check(!weight_map.empty(), "checkpoint", "{}: \"weight_map\" is empty: the index names no tensor", where);
  return weight_map;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path, Options options) {
  Checkpoint ckpt;
  std::map<std::string, std::string> weight_map;  // empty for a single file
  const fs::path given(path);
  if (fs::is_regular_file(given)) {
    ckpt.directory_ = given.parent_path().string();
    ckpt.file_names_ = {given.filename().string()};
  } else if (fs::is_regular_file(given / kIndexFileName)) {
    ckpt.directory_ = path;
    weight_map = read_weight_map(given / kIndexFileName);
    std::set<std::string> distinct;
    for (const auto& [name, file] : weight_map) distinct.insert(file);
    ckpt.file_names_.assign(distinct.begin(), distinct.end());  // model-00001-of-... sort in order
  } else if (fs::is_regular_file(given / kSingleFileName)) {
    ckpt.directory_ = path;
    ckpt.file_names_ = {kSingleFileName};
  } else {
    fail("checkpoint", "{}: holds neither {} nor {}", path, kSingleFileName, kIndexFileName);
  }

  for (const std::string& file_name : ckpt.file_names_) {
    ckpt.files_.push_back(SafetensorsFile::open((fs::path(ckpt.directory_) / file_name).string()));
  }
  if (weight_map.empty()) {
    for (const std::string& name : ckpt.files_[0].names()) ckpt.file_index_of_[name] = 0;
  } else {
    for (const auto& [name, file_name] : weight_map) {
      const size_t index = size_t(std::lower_bound(ckpt.file_names_.begin(), ckpt.file_names_.end(), file_name) -
                                  ckpt.file_names_.begin());
      check(ckpt.files_[index].contains(name), "checkpoint", "{}: the index maps tensor '{}' to {}, which lacks it",
            ckpt.directory_, name, file_name);
      ckpt.file_index_of_[name] = index;
    }
  }

  ckpt.progress_ = std::make_shared<Progress>();
  ckpt.progress_->callback = std::move(options.progress);
  ckpt.progress_->file_started.assign(ckpt.files_.size(), false);
  LoadProgress& state = ckpt.progress_->state;
  state.files_total = ckpt.files_.size();
  state.tensors_total = ckpt.file_index_of_.size();
  for (const auto& [name, index] : ckpt.file_index_of_) {
    const TensorInfo& info = ckpt.files_[index].info(name);
    state.bytes_total += uint64_t(shape_numel(info.shape)) * dtype_size(info.dtype);
  }
  return ckpt;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> names;
  names.reserve(file_index_of_.size());
  for (const auto& [name, index] : file_index_of_) names.push_back(name);
  return names;
}

bool Checkpoint::contains(const std::string& name) const { return file_index_of_.contains(name); }

size_t Checkpoint::locate(const std::string& name) const {
  auto it = file_index_of_.find(name);
  if (it == file_index_of_.end()) {
    fail("checkpoint", "{}: no tensor named '{}' in the checkpoint ({} tensors in {} files)", directory_, name,
         file_index_of_.size(), files_.size());
  }
  return it->second;
}

const TensorInfo& Checkpoint::info(const std::string& name) const { return files_[locate(name)].info(name); }
const SafetensorsFile& Checkpoint::file_of(const std::string& name) const { return files_[locate(name)]; }

Tensor Checkpoint::read(const std::string& name) const {
  const size_t file = locate(name);
  Tensor out = files_[file].read(name);
  progress_->record_read(file, name, out.nbytes());
  return out;
}

Tensor Checkpoint::read_block(const std::string& name, const Shape& offset, const Shape& sizes) const {
  const size_t file = locate(name);
  Tensor out = files_[file].read_block(name, offset, sizes);
  progress_->record_read(file, name, out.nbytes());
  return out;
}

TensorSource Checkpoint::source(const std::string& name) const {
  const size_t file = locate(name);
  TensorSource source = tensor_source(files_[file], name);
  // The progress state is shared, so the source reports into this checkpoint's progress; it
  // counts the tensor once however many boxes are read from it.
  source.read_box = [reader = files_[file], progress = progress_, file, name](const Shape& offset, const Tensor& out) {
    reader.read_block_into(name, offset, out);
    progress->record_read(file, name, out.nbytes());
  };
  return source;
}

}  // namespace dtensor::io
