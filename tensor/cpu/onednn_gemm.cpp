#include "tensor/cpu/onednn_gemm.hpp"

#include "tensor/cpu/threads.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace dtensor::cpu {

namespace {

using dnnl::memory;

// oneDNN's limit on the rank of a matmul operand.
constexpr size_t kMaxDims = 12;
// Primitives kept; the least recently used beyond this are dropped (attention adds a shape per
// block of queries and key count, so long prompts of many lengths would grow the cache forever).
constexpr size_t kCacheCapacity = 1024;

std::optional<memory::data_type> onednn_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return memory::data_type::f32;
    case DType::BF16:
      return memory::data_type::bf16;
    case DType::F16:
      return memory::data_type::f16;
    default:
      return std::nullopt;
  }
}

// t's dims and strides padded on the left to `rank` dims. A broadcast batch dim (stride 0) becomes
// size 1, which oneDNN broadcasts itself.
struct Layout {
  memory::dims dims, strides;
};
Layout layout_of(const Tensor& t, size_t rank) {
  Layout l{memory::dims(rank, 1), memory::dims(rank, 0)};
  const size_t lead = rank - size_t(t.dim());
  for (size_t d = 0; d < size_t(t.dim()); ++d) {
    const bool batch = d + 2 < size_t(t.dim());
    const bool broadcast = batch && t.strides()[d] == 0;
    l.dims[lead + d] = broadcast ? 1 : t.shape()[d];
    l.strides[lead + d] = broadcast ? 0 : t.strides()[d];
  }
  // Padded and size-1 dims: any stride is valid, oneDNN wants one consistent with a dense layout.
  for (size_t d = rank; d-- > 0;) {
    if (l.dims[d] != 1) continue;
    l.strides[d] = d + 1 < rank ? l.strides[d + 1] * l.dims[d + 1] : 1;
  }
  return l;
}

struct Product {
  Layout a, b, out, bias;
  memory::data_type a_type, b_type, out_type, bias_type;
  bool has_bias;
};

std::optional<Product> describe(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
  const size_t rank = size_t(out.dim());
  const auto a_type = onednn_type(a.dtype()), b_type = onednn_type(b.dtype()), out_type = onednn_type(out.dtype());
  if (rank > kMaxDims || !a_type || !b_type || !out_type) return std::nullopt;
  Product p{layout_of(a, rank), layout_of(b, rank),     layout_of(out, rank), {}, *a_type, *b_type,
            *out_type,          memory::data_type::f32, bias.defined()};
  if (p.has_bias) {
    const auto bias_type = onednn_type(bias.dtype());
    if (!bias_type) return std::nullopt;
    p.bias_type = *bias_type;
    p.bias = {memory::dims(rank, 1), memory::dims(rank, 1)};
    p.bias.dims.back() = bias.numel();
    p.bias.strides[rank - 2] = bias.numel();
  }
  return p;
}

// The cache key: every number that shapes the primitive.
std::vector<int64_t> key_of(const Product& p) {
  std::vector<int64_t> key = {int64_t(p.a_type),    int64_t(p.b_type),   int64_t(p.out_type),
                              int64_t(p.bias_type), int64_t(p.has_bias), int64_t(p.out.dims.size())};
  for (const Layout* l : {&p.a, &p.b, &p.out, &p.bias}) {
    key.insert(key.end(), l->dims.begin(), l->dims.end());
    key.insert(key.end(), l->strides.begin(), l->strides.end());
  }
  return key;
}

struct KeyHash {
  size_t operator()(const std::vector<int64_t>& key) const {
    size_t h = key.size();
    for (int64_t v : key) h ^= std::hash<int64_t>()(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
  }
};

struct Entry {
  std::optional<dnnl::matmul> primitive;  // empty: oneDNN has no kernel for this product
  std::string impl;
  std::list<std::vector<int64_t>>::iterator age;
};

class PrimitiveCache {
 public:
  PrimitiveCache() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) { kernel_threads(); }

  // The cached entry of p, created on first use. The reference stays valid until the next call.
  const Entry& lookup(const Product& p) {
    std::vector<int64_t> key = key_of(p);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      ages_.splice(ages_.begin(), ages_, it->second.age);
      return it->second;
    }
    if (entries_.size() >= kCacheCapacity) {
      entries_.erase(ages_.back());
      ages_.pop_back();
    }
    ages_.push_front(key);
    ++created;
    Entry entry = create(p);
    entry.age = ages_.begin();
    return entries_.emplace(std::move(key), std::move(entry)).first->second;
  }

  void run(const Entry& e, const Product& p, const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, memory(desc(p.a, p.a_type), engine_, a.data_ptr())},
        {DNNL_ARG_WEIGHTS, memory(desc(p.b, p.b_type), engine_, b.data_ptr())},
        {DNNL_ARG_DST, memory(desc(p.out, p.out_type), engine_, out.data_ptr())},
    };
    if (p.has_bias) args.emplace(DNNL_ARG_BIAS, memory(desc(p.bias, p.bias_type), engine_, bias.data_ptr()));
    e.primitive->execute(stream_, args);
    stream_.wait();
  }

  std::mutex mutex;
  int64_t created = 0;

 private:
  static memory::desc desc(const Layout& l, memory::data_type type) { return memory::desc(l.dims, type, l.strides); }

  Entry create(const Product& p) {
    try {
      const dnnl::matmul::desc d =
          p.has_bias ? dnnl::matmul::desc(desc(p.a, p.a_type), desc(p.b, p.b_type), desc(p.bias, p.bias_type),
                                          desc(p.out, p.out_type))
                     : dnnl::matmul::desc(desc(p.a, p.a_type), desc(p.b, p.b_type), desc(p.out, p.out_type));
      const dnnl::matmul::primitive_desc pd(d, engine_);
      return Entry{dnnl::matmul(pd), pd.impl_info_str(), {}};
    } catch (const dnnl::error&) {  // no implementation of these types / layouts on this host
      return Entry{std::nullopt, "none", {}};
    }
  }

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::unordered_map<std::vector<int64_t>, Entry, KeyHash> entries_;
  std::list<std::vector<int64_t>> ages_;  // most recently used first
};

PrimitiveCache& cache() {
  static PrimitiveCache instance;
  return instance;
}

}  // namespace

bool onednn_matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
  const std::optional<Product> p = describe(a, b, bias, out);
  if (!p) return false;
  PrimitiveCache& c = cache();
  std::lock_guard lock(c.mutex);
  const Entry& e = c.lookup(*p);
  if (!e.primitive) return false;
  c.run(e, *p, a, b, bias, out);
  return true;
}

std::string onednn_matmul_impl(const Tensor& a, const Tensor& b, const Tensor& out) {
  const std::optional<Product> p = describe(a, b, Tensor(), out);
  if (!p) return "none";
  PrimitiveCache& c = cache();
  std::lock_guard lock(c.mutex);
  return c.lookup(*p).impl;
}

int64_t onednn_primitives_created() {
  PrimitiveCache& c = cache();
  std::lock_guard lock(c.mutex);
  return c.created;
}

}  // namespace dtensor::cpu
