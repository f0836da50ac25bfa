#include "collectives/call_check.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include "tensor/fnv_hash.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace dtensor::detail {

namespace {

// One rank's call as the bytes the group exchanges: fixed size, no pointers.
struct Record {
  uint64_t sequence;
  int64_t elements;
  uint64_t counts_hash;
  int32_t dtype, root, reduce, device;
  uint32_t line;
  char op[28];
  char file[96];  // the tail of the path, NUL-terminated
};
static_assert(sizeof(Record) == 168, "docs/design.md section 8 gives the record's size");

// Equal counts give equal hashes on every rank.
uint64_t hash_counts(std::span<const int64_t> counts) {
  Fnv1a h;
  h.add(uint64_t(counts.size()));
  for (int64_t c : counts) h.add(c);
  return h.value();
}

void copy_tail(char* dst, size_t capacity, const char* src) {
  const size_t n = std::strlen(src);
  const char* start = n < capacity ? src : src + (n - capacity + 1);
  std::strncpy(dst, start, capacity - 1);
  dst[capacity - 1] = '\0';
}

Record record_of(uint64_t sequence, const CollectiveCall& call, const std::source_location& site) {
  Record r{};
  r.sequence = sequence;
  r.elements = call.elements;
  r.counts_hash = call.counts.empty() ? 0 : hash_counts(call.counts);
  r.dtype = int32_t(call.dtype);
  r.root = call.root;
  r.reduce = call.reduce;
  r.device = int32_t(call.device);
  r.line = site.line();
  copy_tail(r.op, sizeof(r.op), call.op);
  copy_tail(r.file, sizeof(r.file), site.file_name());
  return r;
}

bool same_call(const Record& a, const Record& b) {
  return a.sequence == b.sequence && a.elements == b.elements && a.counts_hash == b.counts_hash && a.dtype == b.dtype &&
         a.root == b.root && a.reduce == b.reduce && a.device == b.device && std::strcmp(a.op, b.op) == 0;
}

std::string describe(const Record& r) {
  std::string what = fmt::format("{}({}", r.op, dtype_name(DType(r.dtype)));
  if (r.elements >= 0) what += fmt::format(", {} elements", r.elements);
  if (r.counts_hash != 0) what += fmt::format(", counts #{:08x}", uint32_t(r.counts_hash));
  if (r.root >= 0) what += fmt::format(", root {}", r.root);
  if (r.reduce >= 0) what += fmt::format(", {}", reduce_op_name(ReduceOp(r.reduce)));
  if (DeviceType(r.device) != DeviceType::CPU) what += ", on a device";
  return what + fmt::format(") at {}:{} (call {} of the group)", r.file, r.line, r.sequence);
}

// Every distinct call with the ranks that made it, in rank order: the same text on every rank.
std::string mismatch_message(const std::vector<Record>& records) {
  std::vector<std::pair<std::string, std::vector<int>>> calls;
  for (size_t rank = 0; rank < records.size(); ++rank) {
    const std::string what = describe(records[rank]);
    auto it = std::find_if(calls.begin(), calls.end(), [&](const auto& c) { return c.first == what; });
    if (it == calls.end()) it = calls.insert(calls.end(), {what, {}});
    it->second.push_back(int(rank));
  }
  std::vector<std::string> parts;
  for (const auto& [what, ranks] : calls)
    parts.push_back(fmt::format("rank{} {} called {}", ranks.size() > 1 ? "s" : "", fmt::join(ranks, ", "), what));
  return fmt::format("{}", fmt::join(parts, "; "));
}

}  // namespace

std::string describe_call(const CollectiveCall& call, uint64_t sequence, const std::source_location& site) {
  return describe(record_of(sequence, call, site));
}

namespace {

std::atomic<bool>& checks_on() {
  static std::atomic<bool> on = [] {
    const char* debug = std::getenv("DTENSOR_DEBUG");
    return debug != nullptr && std::string(debug).find("collectives") != std::string::npos;
  }();
  return on;
}

}  // namespace

bool collective_checks_enabled() { return checks_on().load(std::memory_order_relaxed); }

void set_collective_checks(bool on) { checks_on().store(on, std::memory_order_relaxed); }

void check_same_collective(CommBackend& backend, uint64_t sequence, const CollectiveCall& call,
                           const std::source_location& site) {
  const Record mine = record_of(sequence, call, site);
  const auto bytes = int64_t(sizeof(Record));
  Tensor in = Tensor::empty({bytes}, DType::U8);
  std::memcpy(in.data_ptr(), &mine, sizeof(Record));
  Tensor all = Tensor::empty({bytes * backend.size()}, DType::U8);
  const std::vector<int64_t> counts(size_t(backend.size()), bytes);
  backend.all_gather_v(in, all, counts, /*async=*/false);
  std::vector<Record> records(size_t(backend.size()));
  std::memcpy(records.data(), all.data_ptr(), records.size() * sizeof(Record));
  const bool agree =
      std::all_of(records.begin(), records.end(), [&](const Record& r) { return same_call(r, records[0]); });
  if (agree) return;
  fail<CommError>("collective check",
                  "the ranks of a group of {} called different collectives (DTENSOR_DEBUG=collectives): {}",
                  backend.size(), mismatch_message(records));
}

}  // namespace dtensor::detail
