#include "collectives/comm_recorder.hpp"

#include <algorithm>

namespace dtensor {

namespace {
thread_local std::vector<CommRecorder*> active_recorders;
}

CommRecorder::CommRecorder() { active_recorders.push_back(this); }

CommRecorder::~CommRecorder() {
  active_recorders.erase(std::remove(active_recorders.begin(), active_recorders.end(), this), active_recorders.end());
}

void CommRecorder::notify(const Call& call) {
  for (CommRecorder* r : active_recorders) r->calls_.push_back(call);
}

uint64_t CommRecorder::count(CollectiveKind kind) const {
  return uint64_t(std::count_if(calls_.begin(), calls_.end(), [&](const Call& c) { return c.kind == kind; }));
}

uint64_t CommRecorder::bytes(CollectiveKind kind) const {
  uint64_t total = 0;
  for (const Call& c : calls_) total += c.kind == kind ? c.bytes : 0;
  return total;
}

std::string CommRecorder::summary() const {
  std::string out;
  for (const Call& c : calls_) {
    out += fmt::format("{} on {} ranks: {} bytes\n", collective_name(c.kind), c.group_size, c.bytes);
  }
  return out;
}

}  // namespace dtensor
