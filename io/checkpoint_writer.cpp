#include "io/checkpoint_writer.hpp"

#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "placements/sharding.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <numeric>
#include <regex>
#include <set>

namespace dtensor::io {

namespace fs = std::filesystem;

namespace {

void sync_directory(const fs::path& dir) {  // makes renames in it durable (best effort)
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// A file written under a temporary name and renamed over its final path on commit(); destroyed
// without commit() (an exception on the way), it removes the temporary file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), temp_(fmt::format("{}.tmp.{}", path_, ::getpid())) {
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    check(fd_ >= 0, "write_safetensors", "{}: cannot create: {}", temp_, std::strerror(errno));
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }

  void write(const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, std::min<size_t>(bytes, size_t(1) << 30));
      if (n < 0 && errno == EINTR) continue;
      check(n > 0, "write_safetensors", "{}: write failed: {}", temp_, std::strerror(errno));
      p += n;
      bytes -= size_t(n);
    }
  }

  void commit() {
    check(::fsync(fd_) == 0, "write_safetensors", "{}: fsync failed: {}", temp_, std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    check(::close(fd) == 0, "write_safetensors", "{}: close failed: {}", temp_, std::strerror(errno));
    check(::rename(temp_.c_str(), path_.c_str()) == 0, "write_safetensors", "cannot rename {} to {}: {}", temp_, path_,
          std::strerror(errno));
    committed_ = true;
    sync_directory(fs::path(path_).parent_path());
  }

 private:
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

void check_names(const std::vector<std::string>& names, const char* op) {
  std::set<std::string_view> seen;
  for (const std::string& name : names) {
    check(!name.empty() && name != "__metadata__", op, "tensor name '{}' is empty or reserved", name);
    check(seen.insert(name).second, op, "tensor name '{}' appears twice", name);
  }
}

Metadata with_format(Metadata metadata) {
  metadata.try_emplace("format", "pt");
  return metadata;
}

// The files save_checkpoint writes; the others in its directory are the user's and stay.
bool is_checkpoint_file(const std::string& name) {
  static const std::regex shard(R"(model-\d{5}-of-\d{5}\.safetensors)");
  return name == kSingleFileName || name == kIndexFileName || std::regex_match(name, shard);
}

// The index file of a sharded checkpoint, written after every shard (HF layout).
void write_index(const fs::path& dir, const std::vector<std::string>& names, const std::vector<uint64_t>& sizes,
                 const std::vector<std::vector<size_t>>& shards) {
  nlohmann::json index;
  uint64_t total = 0;
  for (uint64_t size : sizes) total += size;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    for (size_t i : shards[s]) index["weight_map"][names[i]] = shard_file_name(s, shards.size());
  }
  const std::string text = index.dump(2) + "\n";
  AtomicFile file((dir / kIndexFileName).string());
  file.write(text.data(), text.size());
  file.commit();
}

// "out/" and "out" name the same directory; its staging sibling needs the name without the slash.
fs::path directory_path(const std::string& dir) {
  fs::path path = fs::path(dir).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();
  check(!path.empty() && path.filename() != "." && path.filename() != "..", "save_checkpoint",
        "'{}' names no directory a checkpoint can be written to; give its path", dir);
  return path;
}

// Staging directories "<dir>.saving-<pid>" whose process is gone: what a crash mid-save left.
void remove_abandoned_staging(const fs::path& dir) {
  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  const std::string prefix = dir.filename().string() + ".saving-";
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(parent, error)) {
    const std::string name = entry.path().filename().string();
    const std::string pid = name.substr(std::min(prefix.size(), name.size()));
    if (!name.starts_with(prefix) || pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(pid_t(std::stol(pid)), 0) != 0 && errno == ESRCH) fs::remove_all(entry.path(), error);
  }
}

// Writes a checkpoint directory so that a crash at any moment leaves `dir` as it was or as the
// new save, never a mix of the two: shards and index are written into a sibling staging
// directory "<dir>.saving-<pid>", which then trades places with `dir` in one
// renameat2(RENAME_EXCHANGE). The other files of `dir` (config.json, tokenizer files) are
// hard-linked into the staging directory first, so they stay. Where the swap is impossible (a
// file system without RENAME_EXCHANGE, or `dir` holding subdirectories) the files move in one by
// one, shards first and the index last, as before: then only each file is atomic.
class CheckpointDirectoryWriter {
 public:
  CheckpointDirectoryWriter(const std::string& dir, std::vector<std::string> names, std::vector<uint64_t> sizes,
                            uint64_t max_shard_bytes)
      : dir_(directory_path(dir)),
        staging_(fmt::format("{}.saving-{}", dir_.string(), ::getpid())),
        names_(std::move(names)),
        sizes_(std::move(sizes)),
        shards_(plan_shards(sizes_, max_shard_bytes)) {}
  CheckpointDirectoryWriter(const CheckpointDirectoryWriter&) = delete;
  CheckpointDirectoryWriter& operator=(const CheckpointDirectoryWriter&) = delete;
  ~CheckpointDirectoryWriter() {
    std::error_code error;
    if (started_) fs::remove_all(staging_, error);  // unfinished, or the old checkpoint after the swap
  }

  const std::vector<std::vector<size_t>>& shards() const { return shards_; }

  void start() {
    std::error_code error;
    check(!fs::exists(dir_, error) || fs::is_directory(dir_, error), "save_checkpoint",
          "{}: exists and is not a directory", dir_.string());
    if (dir_.has_parent_path()) fs::create_directories(dir_.parent_path(), error);
    check(!error, "save_checkpoint", "{}: cannot create the directory: {}", dir_.parent_path().string(),
          error.message());
    remove_abandoned_staging(dir_);
    fs::remove_all(staging_, error);
    started_ = fs::create_directory(staging_, error);
    check(started_, "save_checkpoint", "{}: cannot create the directory: {}", staging_.string(), error.message());
  }
  void write_shard(size_t s, const NamedTensors& tensors, const Metadata& metadata) {
    write_safetensors((staging_ / shard_file_name(s, shards_.size())).string(), tensors, metadata);
  }
  void finish() {
    if (shards_.size() > 1) write_index(staging_, names_, sizes_, shards_);
    publish();
  }

 private:
  void publish();
  bool keep_other_files();
  void move_files_in();

  fs::path dir_, staging_;
  std::vector<std::string> names_;
  std::vector<uint64_t> sizes_;
  std::vector<std::vector<size_t>> shards_;
  bool started_ = false;
};

void CheckpointDirectoryWriter::publish() {
  const fs::path parent = dir_.has_parent_path() ? dir_.parent_path() : fs::path(".");
  std::error_code error;
  if (!fs::exists(dir_, error)) {
    check(::rename(staging_.c_str(), dir_.c_str()) == 0, "save_checkpoint", "cannot rename {} to {}: {}",
          staging_.string(), dir_.string(), std::strerror(errno));
    started_ = false;
    return sync_directory(parent);
  }
  if (keep_other_files() && ::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) == 0) {
    return sync_directory(parent);  // the destructor removes the old checkpoint, now at staging_
  }
  move_files_in();
}

// Links every file of dir_ that is not a checkpoint file into the staging directory; false (and
// nothing linked) when dir_ holds anything but regular files, which a swap would take away.
bool CheckpointDirectoryWriter::keep_other_files() {
  std::vector<fs::path> others;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_)) {
    if (!entry.is_regular_file() || entry.is_symlink()) return false;
    if (!is_checkpoint_file(entry.path().filename().string())) others.push_back(entry.path());
  }
  for (const fs::path& other : others) {
    std::error_code error;
    fs::create_hard_link(other, staging_ / other.filename(), error);
    if (error) fs::copy_file(other, staging_ / other.filename(), fs::copy_options::overwrite_existing);
  }
  return true;
}

// The fallback: each staged file renamed into dir_ (the index last), then the checkpoint files of
// an earlier save that this one did not write removed.
void CheckpointDirectoryWriter::move_files_in() {
  std::set<std::string> written;
  for (size_t s = 0; s <= shards_.size(); ++s) {
    const bool index = s == shards_.size();
    if (index && shards_.size() == 1) break;
    const std::string name = index ? std::string(kIndexFileName) : shard_file_name(s, shards_.size());
    check(::rename((staging_ / name).c_str(), (dir_ / name).c_str()) == 0, "save_checkpoint",
          "cannot move {} into {}: {}", name, dir_.string(), std::strerror(errno));
    written.insert(name);
  }
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    if (is_checkpoint_file(name) && !written.contains(name)) fs::remove(entry.path());
  }
  sync_directory(dir_);
}

// Gathering to the writer ------------------------------------------------------------------------

constexpr int kGatherTag = 0x5a7e;

// `placements` with the mesh dims from `first` on made Replicate: the layout that holds, on the
// ranks still gathering, once the dims from `first` on have been gathered.
Placements replicated_from(Placements placements, int64_t first) {
  for (size_t d = size_t(first); d < placements.size(); ++d) placements[d] = Replicate();
  return placements;
}

// Receives a piece from rank `source` of `comm` into the view `dst` (straight into it when it is
// contiguous, else through a buffer of the piece's size).
void receive_piece(Communicator& comm, int source, const Tensor& dst) {
  if (dst.is_contiguous()) {
    comm.recv(dst, source, kGatherTag);
    return;
  }
  Tensor piece = Tensor::empty(dst.shape(), dst.dtype(), dst.device());
  comm.recv(piece, source, kGatherTag);
  dst.copy_from(piece);
}

// Gathers mesh dim `d` (a Shard of tensor dim `dim`) to coordinate 0 of that dim: there, the
// region this rank holds grows by every peer's piece, laid side by side along `dim`; a peer sends
// its region and is done (returns an undefined tensor).
Tensor gather_mesh_dim(const DTensor& t, const Placements& placements, int64_t d, const Tensor& held) {
  const DeviceMesh& mesh = t.mesh();
  Communicator comm = mesh.comm(d);
  std::vector<int64_t> coordinate = mesh.coordinate();
  if (coordinate[size_t(d)] != 0) {
    if (held.numel() > 0) comm.send(held.contiguous(), 0, kGatherTag);
    return {};
  }
  const int64_t dim = placements[size_t(d)].dim();
  const Block target = local_block(t.shape(), mesh.shape(), coordinate, replicated_from(placements, d));
  Tensor region = Tensor::empty(target.shape, t.dtype(), held.device());
  for (int64_t peer = 0; peer < mesh.size(d); ++peer) {
    coordinate[size_t(d)] = peer;
    const Block piece = local_block(t.shape(), mesh.shape(), coordinate, replicated_from(placements, d + 1));
    const Tensor dst =
        region.narrow(dim, piece.offset[size_t(dim)] - target.offset[size_t(dim)], piece.shape[size_t(dim)]);
    if (peer == 0)
      dst.copy_from(held);
    else if (dst.numel() > 0)
      receive_piece(comm, int(peer), dst);
  }
  return region;
}

// The whole tensor on the rank at mesh coordinate 0; an undefined tensor on every other rank.
// Partial dims are reduced first (an all-reduce of the local block, which grows no rank's memory),
// then the mesh dims are gathered from the last to the first: along each, coordinate 0 receives
// its peers' pieces point to point and the peers drop out (a Replicate dim just drops the
// copies). On a 1-D mesh only the writer ever holds more than its own block; on an N-D mesh a
// rank gathering an inner dim holds its region of the outer dims' sharding, never the whole.
Tensor gather_to_first_rank(const DTensor& t) {
  Placements placements = normalize_placements(t.placements(), t.dim(), t.mesh().ndim(), "save_dtensors");
  DTensor reduced = t;
  if (std::any_of(placements.begin(), placements.end(), [](const Placement& p) { return p.is_partial(); })) {
    for (Placement& p : placements)
      if (p.is_partial()) p = Replicate();
    reduced = t.redistribute(placements);
  }
  Tensor held = reduced.to_local();
  const std::vector<int64_t>& coordinate = t.mesh().coordinate();
  for (int64_t d = t.mesh().ndim() - 1; d >= 0; --d) {
    if (placements[size_t(d)].is_shard()) {
      held = gather_mesh_dim(reduced, placements, d, held);
      if (!held.defined()) return held;
    } else if (coordinate[size_t(d)] != 0) {
      return {};  // a replica of what coordinate 0 of this dim holds
    }
  }
  return held;
}

}  // namespace

void write_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : tensors) {
    names.push_back(name);
    check(tensor.defined(), "write_safetensors", "{}: tensor '{}' is undefined", path, name);
  }
  check_names(names, "write_safetensors");

  // Largest elements first (stable), as the reference writer orders them: with no padding
  // allowed between tensors, this is what starts every tensor aligned to its element size.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return tensors[a].second.element_size() > tensors[b].second.element_size();
  });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i : order) {
    const Tensor& tensor = tensors[i].second;
    header[tensors[i].first] = {{"dtype", safetensors_dtype_name(tensor.dtype())},
                                {"shape", tensor.shape()},
                                {"data_offsets", {offset, offset + tensor.nbytes()}}};
    offset += tensor.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));

  AtomicFile file(path);
  file.write(length, sizeof length);
  file.write(text.data(), text.size());
  for (size_t i : order) {  // one host copy at a time (none for contiguous CPU tensors)
    const Tensor host = tensors[i].second.to(Device::cpu()).contiguous();
    file.write(host.data_ptr(), host.nbytes());
  }
  file.commit();
}

std::string shard_file_name(size_t index, size_t count) {
  if (count == 1) return kSingleFileName;
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

std::vector<std::vector<size_t>> plan_shards(const std::vector<uint64_t>& sizes, uint64_t max_shard_bytes) {
  check(max_shard_bytes > 0, "save_checkpoint", "max_shard_bytes must be positive, got 0");
  std::vector<std::vector<size_t>> shards(1);
  uint64_t current = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!shards.back().empty() && current + sizes[i] > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(i);
    current += sizes[i];
  }
  return shards;
}

void save_checkpoint(const std::string& dir, const NamedTensors& tensors, uint64_t max_shard_bytes,
                     const Metadata& metadata) {
  std::vector<std::string> names;
  std::vector<uint64_t> sizes;
  for (const auto& [name, tensor] : tensors) {
    names.push_back(name);
    sizes.push_back(tensor.defined() ? tensor.nbytes() : 0);
  }
  check_names(names, "save_checkpoint");
  CheckpointDirectoryWriter writer(dir, names, sizes, max_shard_bytes);
  writer.start();
  for (size_t s = 0; s < writer.shards().size(); ++s) {
    NamedTensors shard;
    for (size_t i : writer.shards()[s]) shard.push_back(tensors[i]);
    writer.write_shard(s, shard, with_format(metadata));
  }
  writer.finish();
}

void save_dtensors(const std::string& dir, const NamedDTensors& tensors, uint64_t max_shard_bytes,
                   const Metadata& metadata) {
  check(!tensors.empty(), "save_dtensors", "{}: no tensors to save", dir);
  const DeviceMesh& mesh = tensors.front().second.mesh();
  std::vector<std::string> names;
  std::vector<uint64_t> sizes;
  for (const auto& [name, tensor] : tensors) {
    check<MeshError>(tensor.mesh().ranks() == mesh.ranks(), "save_dtensors",
                     "tensor '{}' lives on {}, the first tensor on {}; all must share one mesh", name,
                     tensor.mesh().to_string(), mesh.to_string());
    names.push_back(name);
    sizes.push_back(uint64_t(shape_numel(tensor.shape())) * dtype_size(tensor.dtype()));
  }
  check_names(names, "save_dtensors");
  check<MeshError>(mesh.is_member(), "save_dtensors", "this rank is not a member of {}", mesh.to_string());
  const std::vector<int64_t>& coordinate = mesh.coordinate();
  const bool is_writer = std::all_of(coordinate.begin(), coordinate.end(), [](int64_t c) { return c == 0; });

  // Every rank takes part in every gather even after the writer failed, so nobody hangs; the
  // writer's outcome is announced at the end.
  CheckpointDirectoryWriter writer(dir, names, sizes, max_shard_bytes);
  std::exception_ptr failure;
  auto on_writer = [&](auto&& step) {
    if (!is_writer || failure) return;
    try {
      step();
    } catch (...) {
      failure = std::current_exception();
    }
  };
  on_writer([&] { writer.start(); });
  for (size_t s = 0; s < writer.shards().size(); ++s) {
    NamedTensors shard;
    for (size_t i : writer.shards()[s]) {
      Tensor full = gather_to_first_rank(tensors[i].second);
      if (is_writer) shard.emplace_back(names[i], std::move(full));
    }
    on_writer([&] { writer.write_shard(s, shard, with_format(metadata)); });
  }
  on_writer([&] { writer.finish(); });

  // Broadcasting the outcome from coordinate 0 along every mesh dim in turn reaches every rank
  // and doubles as the barrier: nobody returns before the writer is done.
  Tensor failed = Tensor::from_vector<int64_t>({failure ? 1 : 0}, {1});
  for (int64_t d = 0; d < mesh.ndim(); ++d) mesh.comm(d).broadcast(failed, 0);
  if (failure) std::rethrow_exception(failure);
  check(failed.item<int64_t>() == 0, "save_dtensors", "{}: the writing rank (world rank {}) failed; see its error", dir,
        mesh.ranks().front());
}

}  // namespace dtensor::io
