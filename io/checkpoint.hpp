// A Hugging Face checkpoint directory: either one `model.safetensors`, or shards listed by
// `model.safetensors.index.json` ({"metadata": {...}, "weight_map": {tensor name: file name}}).
//
//   Checkpoint ckpt = Checkpoint::open("llama-7b/", {.progress = stderr_progress(rank)});
//   TensorSource q = ckpt.source("model.layers.0.self_attn.q_proj.weight");
//   Tensor rows = q.read({offset, 0}, {rows, q.shape[1]});   // this rank's rows only
//
// Every file is opened and its header validated in open(), so a broken shard fails before any
// weight is read. Reads are single-threaded; progress is reported after each read.
#pragma once

#include "io/safetensors.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dtensor::io {

inline constexpr const char* kSingleFileName = "model.safetensors";
inline constexpr const char* kIndexFileName = "model.safetensors.index.json";

struct LoadProgress {
  size_t files_started = 0;  // files from which at least one tensor has been read
  size_t files_total = 0;
  uint64_t bytes_read = 0;   // bytes of tensor data copied out so far
  uint64_t bytes_total = 0;  // bytes of all tensors in the checkpoint
  size_t tensors_read = 0;   // distinct tensors read from (wholly or a box) so far
  size_t tensors_total = 0;
};
using ProgressCallback = std::function<void(const LoadProgress&)>;

// A callback printing "loading 3/8 files, 1.2 GiB" to stderr on `rank` 0 only, at most once per
// `interval` and whenever a new file is begun. Other ranks get an empty callback.
ProgressCallback stderr_progress(int rank, std::chrono::milliseconds interval = std::chrono::milliseconds(1000));
// "1.2 GiB", "512.0 KiB", "17 B".
std::string format_bytes(uint64_t bytes);

class Checkpoint {
 public:
  struct Options {
    ProgressCallback progress;  // empty: quiet
  };

  // `path` is a directory as above or a single .safetensors file. ValueError naming the directory
  // if it holds neither, or if the index is malformed or names a tensor its file lacks.
  static Checkpoint open(const std::string& path, Options options = {});

  const std::string& directory() const { return directory_; }
  // The file names (relative to directory()) in index order.
  const std::vector<std::string>& files() const { return file_names_; }
  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  // ValueError naming the tensor and the directory if it is not in the checkpoint.
  const TensorInfo& info(const std::string& name) const;
  // The file holding `name`.
  const SafetensorsFile& file_of(const std::string& name) const;

  Tensor read(const std::string& name) const;
  Tensor read_block(const std::string& name, const Shape& offset, const Shape& sizes) const;
  // A box reader of the tensor that also reports progress.
  TensorSource source(const std::string& name) const;

 private:
  struct Progress;
  size_t locate(const std::string& name) const;

  std::string directory_;
  std::vector<std::string> file_names_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> file_index_of_;  // tensor name -> index into files_
  std::shared_ptr<Progress> progress_;
};

}  // namespace dtensor::io
