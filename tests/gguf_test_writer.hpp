// A small GGUF writer for tests: metadata of any value type (raw values for malformed files),
// tensors with their raw ggml bytes, and the layout knobs (version, alignment, offsets) a test
// needs to build a broken file on purpose.
//
//   GgufWriter w;
//   w.add_string("general.architecture", "llama");
//   w.add_tensor("w", io::GgmlType::F32, {3, 4}, bytes_of(values));   // our shape: ggml ne [4, 3]
//   write_file(path, w.bytes());
#pragma once

#include "io/gguf.hpp"

#include <cstring>
#include <string>
#include <vector>

namespace gguf_test {

using dtensor::Shape;
using dtensor::io::GgmlType;
using dtensor::io::GgufValueType;

template <typename T>
std::string le(T value) {
  std::string out(sizeof(T), '\0');
  std::memcpy(out.data(), &value, sizeof(T));
  return out;
}

inline std::string gguf_string(const std::string& text) { return le<uint64_t>(text.size()) + text; }

struct GgufWriter {
  struct Tensor {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> ne;  // ggml order (innermost first)
    std::string data;
    int64_t offset = -1;  // relative to the data section; -1: the next aligned place
  };
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  uint64_t alignment = 32;  // what the writer pads to (add general.alignment to change the reader's)
  std::string kv;
  uint64_t kv_count = 0;
  std::vector<Tensor> tensors;

  // A key, its value type and the value's encoded bytes.
  void add_raw(const std::string& key, GgufValueType type, const std::string& value) {
    kv += gguf_string(key) + le<uint32_t>(uint32_t(type)) + value;
    ++kv_count;
  }
  void add_string(const std::string& key, const std::string& text) {
    add_raw(key, GgufValueType::STRING, gguf_string(text));
  }
  void add_u32(const std::string& key, uint32_t value) { add_raw(key, GgufValueType::U32, le(value)); }
  void add_f32(const std::string& key, float value) { add_raw(key, GgufValueType::F32, le(value)); }
  void add_string_array(const std::string& key, const std::vector<std::string>& items) {
    std::string value = le<uint32_t>(uint32_t(GgufValueType::STRING)) + le<uint64_t>(items.size());
    for (const std::string& item : items) value += gguf_string(item);
    add_raw(key, GgufValueType::ARRAY, value);
  }
  // `shape` is ours (row-major); ggml's ne is its reverse.
  void add_tensor(const std::string& name, GgmlType type, const Shape& shape, const std::string& data,
                  int64_t offset = -1) {
    add_tensor_ne(name, uint32_t(type), std::vector<uint64_t>(shape.rbegin(), shape.rend()), data, offset);
  }
  void add_tensor_ne(const std::string& name, uint32_t type, std::vector<uint64_t> ne, const std::string& data,
                     int64_t offset = -1) {
    tensors.push_back({name, type, std::move(ne), data, offset});
  }

  static uint64_t align(uint64_t at, uint64_t to) { return (at + to - 1) / to * to; }

  std::string bytes() const {
    std::string header = le(magic) + le(version) + le<uint64_t>(tensors.size()) + le(kv_count) + kv;
    std::string data;
    std::vector<uint64_t> offsets;
    for (const Tensor& t : tensors) {
      const uint64_t at = t.offset >= 0 ? uint64_t(t.offset) : align(data.size(), alignment);
      if (data.size() < at + t.data.size()) data.resize(at + t.data.size(), '\0');
      std::memcpy(data.data() + at, t.data.data(), t.data.size());
      offsets.push_back(at);
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      header += gguf_string(t.name) + le<uint32_t>(uint32_t(t.ne.size()));
      for (uint64_t n : t.ne) header += le(n);
      header += le(t.type) + le(offsets[i]);
    }
    header.resize(align(header.size(), alignment), '\0');
    return header + data;
  }
};

}  // namespace gguf_test
