// Writing safetensors files and Hugging Face checkpoint directories, atomically.
//
// Every file is written to `<path>.tmp.<pid>`, fsync'ed and renamed over `path`, so a reader
// sees the old file or the new one, never a torn one. A checkpoint directory is written whole into
// a sibling "<dir>.saving-<pid>" and then trades places with `dir` in one atomic rename, so a
// crash at any moment leaves the previous checkpoint, values and all, or the new one; the other
// files of `dir` (config.json, tokenizer files) stay, and the next save removes what a crash left.
// (Where the file system cannot swap directories, or `dir` holds subdirectories, the files move
// in one at a time, the index last, and only each file is atomic.)
//
//   save_checkpoint("out/", {{"embed.weight", w}, {"norm.weight", g}});         // one process
//   save_dtensors("out/", {{"lm_head.weight", sharded}}, 2ull << 30);         // collective
#pragma once

#include "dtensor/dtensor.hpp"
#include "tensor/tensor.hpp"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dtensor::io {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using NamedDTensors = std::vector<std::pair<std::string, DTensor>>;
using Metadata = std::map<std::string, std::string>;

// Hugging Face's default shard bound ("5GB" in save_pretrained).
inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000;

// One safetensors file holding `tensors` (any device; copied to the host one at a time as needed),
// with "__metadata__" when `metadata` is not empty. The data is laid out largest element size
// first, in the given order within one size, so every tensor starts aligned to its element. ValueError for an empty,
// repeated or reserved ("__metadata__") name, or when the file cannot be written (naming path and reason).
void write_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});

// The file names of a checkpoint of `count` shards: "model.safetensors" for one,
// "model-00001-of-00003.safetensors", ... otherwise.
std::string shard_file_name(size_t index, size_t count);
// Splits tensors of the given byte sizes, in order, into shards of at most `max_shard_bytes`
// (a tensor larger than the bound gets a shard of its own). Returns tensor indices per shard.
std::vector<std::vector<size_t>> plan_shards(const std::vector<uint64_t>& sizes, uint64_t max_shard_bytes);

// Writes `dir` (created if needed) as Hugging Face's save_pretrained does: one model.safetensors
// when everything fits in one shard, otherwise shards plus model.safetensors.index.json with
// {"metadata": {"total_size": bytes}, "weight_map": {...}}. Each file's metadata is `metadata`
// plus "format": "pt" (which transformers' loader checks) unless `metadata` sets "format".
void save_checkpoint(const std::string& dir, const NamedTensors& tensors,
                     uint64_t max_shard_bytes = kDefaultMaxShardBytes, const Metadata& metadata = {});

// The same for DTensors, collective over their (common) mesh: each tensor in turn is gathered to
// the rank at mesh coordinate 0 only (point to point; the other ranks never hold the full tensor,
// only their block, or on an N-D mesh at most their region of the outer dims' sharding), which
// writes each shard as soon as it is complete, so it holds at most one shard of full tensors.
// Returns on every rank once the files exist; if the writing rank fails, it rethrows its error
// and every other rank throws a ValueError.
void save_dtensors(const std::string& dir, const NamedDTensors& tensors,
                   uint64_t max_shard_bytes = kDefaultMaxShardBytes, const Metadata& metadata = {});

}  // namespace dtensor::io
