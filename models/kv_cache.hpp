// The keys and values one attention layer has seen, for the KV heads this rank holds.
//
// Buffers [capacity, kv_heads, head_dim] grow geometrically (or to a reserved size), so a decode
// step appends in place instead of reallocating; the views handed out cover the filled prefix.
//
//   KVCache cache;
//   cache.reserve(prompt_length + new_tokens);
//   auto [keys, values] = cache.append(k, v);   // k, v [S, kv_heads, D] -> [length, kv_heads, D]
#pragma once

#include "tensor/tensor.hpp"

#include <utility>

namespace dtensor::models {

class KVCache {
 public:
  // Makes room for `tokens` positions in all (at the next append if nothing is cached yet).
  void reserve(int64_t tokens);
  // Appends k and v [S, kv_heads, head_dim] (ShapeError when they differ from each other or from
  // what is cached); returns views of every cached key and value.
  std::pair<Tensor, Tensor> append(const Tensor& k, const Tensor& v);
  int64_t length() const { return length_; }
  int64_t capacity() const { return keys_.defined() ? keys_.size(0) : 0; }
  // Forgets the positions; the buffers stay for the next sequence.
  void clear() { length_ = 0; }
  // Keeps only the first `length` positions (ValueError beyond the cached length).
  void truncate(int64_t length);

 private:
  void grow_to(int64_t capacity, const Tensor& like);

  Tensor keys_, values_;  // [capacity, kv_heads, head_dim]
  int64_t length_ = 0;
  int64_t reserved_ = 0;
};

}  // namespace dtensor::models
