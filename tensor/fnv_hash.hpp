// FNV-1a over 64-bit words. Unlike std::hash it is the same in every process, so ranks can compare
// hashes they computed apart (collective fingerprints, shape checks) as well as key caches.
//
//   Fnv1a h;
//   for (int64_t size : shape) h.add(size);
//   uint64_t fingerprint = h.value();
#pragma once

#include <cstdint>

namespace dtensor {

class Fnv1a {
 public:
  void add(uint64_t word) { value_ = (value_ ^ word) * 1099511628211ull; }
  void add(int64_t word) { add(uint64_t(word)); }
  void add(int word) { add(uint64_t(uint32_t(word))); }
  uint64_t value() const { return value_; }

 private:
  uint64_t value_ = 14695981039346656037ull;
};

}  // namespace dtensor
