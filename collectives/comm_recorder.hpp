// CommRecorder: a scoped record of every collective this thread starts, on any communicator,
// while it is alive (a debug mode in the spirit of PyTorch's CommDebugMode). Tests use it to
// assert the exact collectives a redistribute ran; recorders nest.
//
//   CommRecorder rec;
//   x.redistribute({Replicate()});
//   rec.calls()  // -> {{AllGather, bytes, group size, group id}}
#pragma once

#include "collectives/communicator.hpp"

#include <string>
#include <vector>

namespace dtensor {

class CommRecorder {
 public:
  struct Call {
    CollectiveKind kind;
    uint64_t bytes;  // the counters' convention (see communicator.hpp)
    int group_size;
    const void* group;  // Communicator::id() of the group it ran on
  };

  CommRecorder();
  ~CommRecorder();
  CommRecorder(const CommRecorder&) = delete;
  CommRecorder& operator=(const CommRecorder&) = delete;

  const std::vector<Call>& calls() const { return calls_; }
  uint64_t count(CollectiveKind kind) const;
  uint64_t bytes(CollectiveKind kind) const;
  std::string summary() const;  // one line per call

  // Called by Communicator for every operation it counts.
  static void notify(const Call& call);

 private:
  std::vector<Call> calls_;
};

}  // namespace dtensor
