// Timeouts (DTENSOR_TIMEOUT): a call that waits too long ends the job with what it waited for.
//
// Every collective and point-to-point call of a Communicator registers itself here for as long
// as it waits (a WaitScope on the caller's stack: a clock read and a list insert under a mutex,
// no allocation). One watchdog thread per process looks at the oldest waiting call a few times a
// second; once it has waited DTENSOR_TIMEOUT seconds (default 1800, 0 for never), the watchdog
// asks the other ranks of the group what they are doing (a PeerSurvey, which MPI provides over a
// communicator of its own, answered by their watchdog threads, so a rank busy computing still
// answers), then ends the job with one message: the call, the communicator, and which ranks have
// not arrived, each with what it is doing instead (c10d's watchdog does the same for NCCL).
// The waiting thread itself is blocked inside the transport and cannot be woken, so the job
// ends (abort_job) rather than the call throwing.
#pragma once

#include "collectives/call_check.hpp"
#include "collectives/communicator.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <source_location>
#include <span>
#include <string>
#include <vector>

namespace dtensor::detail {

// The members of a group as ranks of the world, and a hash that names the group in surveys.
struct GroupMembers {
  std::vector<int> world_ranks;  // empty where the backend cannot say
  uint64_t hash = 0;
  int world_size = 0;
};
// The one record of these members, kept for the whole process (a pending call may outlive its
// Communicator in an async Work); there are as many as distinct groups, a handful.
const GroupMembers& intern_group(std::vector<int> world_ranks, int world_size);

// One thread's wait, as the watchdog and the survey see it. A node of the watchdog's list.
struct PendingCall {
  CollectiveCall call;  // `counts` is never read after the call started
  int peer = -1;        // send / recv: the other rank, in the group
  uint64_t sequence = 0;
  std::source_location site;
  const GroupMembers* group = nullptr;
  std::chrono::steady_clock::time_point since{};
  PendingCall* prev = nullptr;
  PendingCall* next = nullptr;
};

// DTENSOR_TIMEOUT as seconds: unset -> 1800, "0" -> none (returns 0). ValueError naming
// DTENSOR_TIMEOUT for anything but a number >= 0.
double parse_timeout(const char* text);
// parse_timeout(getenv("DTENSOR_TIMEOUT")), read once per process.
double collective_timeout_seconds();

// Registers `call` as this thread's wait from construction to destruction (not copyable: the
// watchdog holds its address). No-op when timeouts are off.
class WaitScope {
 public:
  explicit WaitScope(const PendingCall& call);
  ~WaitScope();
  WaitScope(const WaitScope&) = delete;
  WaitScope& operator=(const WaitScope&) = delete;

  // The Work of the call this scope covers: an async one's wait() is watched again later, a
  // blocking one (already complete) is returned as is.
  Work watch_later(Work work, bool async) const;

 private:
  PendingCall node_;
  bool registered_ = false;
};

// What one rank answers to "are you waiting in call `sequence` of group `group_hash`, the call
// whose fields hash to `call_hash`?" (a rank in a different call of the same number has not
// arrived: the ranks diverged).
struct SurveyQuery {
  uint64_t group_hash = 0;
  uint64_t sequence = 0;
  uint64_t call_hash = 0;
};
struct SurveyAnswer {
  bool arrived = false;  // waiting in that very call
  std::string doing;     // "waiting in all_gather(...) at x.cpp:12 ...", or "in no collective"
};
using SurveyResponder = std::function<SurveyAnswer(const SurveyQuery&)>;

// How the watchdog reaches the other ranks' watchdogs (collectives/mpi/mpi_survey.hpp).
class PeerSurvey {
 public:
  virtual ~PeerSurvey() = default;
  // Answers every query that has arrived, with `respond`.
  virtual void serve(const SurveyResponder& respond) = 0;
  // Asks each world rank of `ranks` (never this one), serving queries meanwhile, until all have
  // answered or `patience` has passed; a rank that did not answer gets nullopt.
  virtual std::vector<std::optional<SurveyAnswer>> ask(std::span<const int> ranks, const SurveyQuery& query,
                                                       std::chrono::milliseconds patience,
                                                       const SurveyResponder& respond) = 0;
};

// The survey the watchdog uses, or nullptr: unregistering waits until the watchdog has stopped
// using the old one, so its owner may then free what it communicates over.
void set_peer_survey(PeerSurvey* survey);

// The one-line description of a wait, as the timeout message gives it.
std::string describe_pending(const PendingCall& call);

}  // namespace dtensor::detail
