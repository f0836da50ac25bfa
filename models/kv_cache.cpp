#include "models/kv_cache.hpp"

#include <algorithm>

namespace dtensor::models {

void KVCache::reserve(int64_t tokens) {
  reserved_ = std::max(reserved_, tokens);
  if (keys_.defined() && tokens > capacity()) grow_to(tokens, keys_);
}

void KVCache::grow_to(int64_t capacity, const Tensor& like) {
  Shape shape = like.shape();
  shape[0] = capacity;
  Tensor keys = Tensor::empty(shape, like.dtype(), like.device());
  Tensor values = Tensor::empty(shape, like.dtype(), like.device());
  if (length_ > 0) {
    keys.narrow(0, 0, length_).copy_from(keys_.narrow(0, 0, length_));
    values.narrow(0, 0, length_).copy_from(values_.narrow(0, 0, length_));
  }
  keys_ = std::move(keys);
  values_ = std::move(values);
}

void KVCache::truncate(int64_t length) {
  check<ValueError>(length >= 0 && length <= length_, "KVCache::truncate", "length {} is outside [0, {}]", length,
                    length_);
  length_ = length;
}

std::pair<Tensor, Tensor> KVCache::append(const Tensor& k, const Tensor& v) {
  const char* op = "KVCache::append";
  check<ShapeError>(k.dim() == 3 && k.shape() == v.shape(), op,
                    "k {} and v {} must be the same [tokens, heads, head_dim]", shape_str(k.shape()),
                    shape_str(v.shape()));
  check<DTypeError>(k.dtype() == v.dtype(), op, "k is {}, v is {}", k.dtype(), v.dtype());
  if (keys_.defined()) {
    check<ShapeError>(k.size(1) == keys_.size(1) && k.size(2) == keys_.size(2) && k.dtype() == keys_.dtype(), op,
                      "new keys {} {} do not match the cached [*, {}, {}] {}", shape_str(k.shape()), k.dtype(),
                      keys_.size(1), keys_.size(2), keys_.dtype());
  }
  const int64_t needed = length_ + k.size(0);
  // New buffers when full, or when the model moved to another device (the cached prefix moves along).
  if (needed > capacity() || (keys_.defined() && keys_.device() != k.device()))
    grow_to(std::max({needed, 2 * capacity(), reserved_}), k);
  keys_.narrow(0, length_, k.size(0)).copy_from(k);
  values_.narrow(0, length_, v.size(0)).copy_from(v);
  length_ = needed;
  return {keys_.narrow(0, 0, length_), values_.narrow(0, 0, length_)};
}

}  // namespace dtensor::models
