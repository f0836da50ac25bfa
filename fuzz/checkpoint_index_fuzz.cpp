// Fuzzes Checkpoint::open of a directory whose model.safetensors.index.json is the input, beside
// two fixed valid shards, so the weight map's names and files are checked against real headers.
#include "fuzz/fuzz_util.hpp"
#include "io/checkpoint.hpp"

#include <algorithm>

namespace {

using namespace dtensor;

const char* const kShardNames[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};

// A safetensors file of the given header JSON followed by `data_bytes` zero bytes.
std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((header.size() >> (8 * i)) & 0xff);
  return bytes + header + std::string(data_bytes, '\0');
}

// The shards corpus/checkpoint_index's indexes name: tensors a, b in the first, c in the second.
void write_shards() {
  fuzz::write_scratch_file(kShardNames[0],
                           safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                             R"("b":{"dtype":"I64","shape":[1,1],"data_offsets":[8,16]}})",
                                             16));
  fuzz::write_scratch_file(kShardNames[1],
                           safetensors_bytes(R"({"c":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},)"
                                             R"("__metadata__":{"format":"pt"}})",
                                             8));
}

// An index that opens maps only tensors its shards hold, and every one of them reads.
void check_opened(const io::Checkpoint& checkpoint) {
  for (const std::string& file : checkpoint.files()) {
    FUZZ_CHECK(std::find(std::begin(kShardNames), std::end(kShardNames), file) != std::end(kShardNames));
  }
  for (const std::string& name : checkpoint.names()) {
    FUZZ_CHECK(checkpoint.contains(name) && checkpoint.file_of(name).contains(name));
    const Tensor tensor = checkpoint.read(name);
    FUZZ_CHECK(tensor.shape() == checkpoint.info(name).shape);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  write_shards();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::write_scratch_file(io::kIndexFileName, fuzz::as_text(data, size));
  fuzz::expect_typed_errors([] { check_opened(io::Checkpoint::open(fuzz::scratch_dir().string())); });
  return 0;
}
