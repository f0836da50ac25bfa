#include "collectives/watchdog.hpp"

#include "collectives/runtime.hpp"
#include "tensor/fnv_hash.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

namespace dtensor::detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kDefaultTimeoutSeconds = 1800;
// How often the watchdog looks at the oldest wait and answers the other ranks' queries.
constexpr auto kTick = std::chrono::milliseconds(100);
// How long a timed-out rank waits for the others' answers before it ends the job without them.
constexpr auto kSurveyPatience = std::chrono::milliseconds(3000);
// A call on device tensors gets this much longer, so that the NCCL backend's own deadline (which
// aborts its communicator and raises CommError) comes first.
constexpr double kDeviceGraceSeconds = 5;

std::string world_ranks_text(const GroupMembers& group) {
  if (group.world_ranks.empty()) return "unknown members";
  if (int(group.world_ranks.size()) == group.world_size) return fmt::format("the world, {} ranks", group.world_size);
  return fmt::format("world ranks [{}]", fmt::join(group.world_ranks, ", "));
}

// A rank of the group, with its world rank where the two differ.
std::string rank_text(const GroupMembers& group, int rank) {
  const bool world = int(group.world_ranks.size()) == group.world_size;
  if (world || size_t(rank) >= group.world_ranks.size()) return fmt::format("rank {}", rank);
  return fmt::format("rank {} (world rank {})", rank, group.world_ranks[size_t(rank)]);
}

// The fields the ranks of one call agree on (those the fingerprints compare, but the counts).
uint64_t call_hash(const CollectiveCall& call) {
  Fnv1a h;
  for (const char* c = call.op; *c != '\0'; ++c) h.add(uint64_t(uint8_t(*c)));
  for (int64_t v : {int64_t(call.dtype), call.elements, int64_t(call.root), int64_t(call.reduce)}) h.add(v);
  return h.value();
}

double seconds_since(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// The process's waits, oldest first, and the thread that watches them. Never destroyed: the
// thread may still be running while static objects are destroyed at exit.
class Watchdog {
 public:
  static Watchdog& instance() {
    static Watchdog* watchdog = new Watchdog(collective_timeout_seconds());
    return *watchdog;
  }

  void add(PendingCall* node);
  void remove(PendingCall* node);
  void set_survey(PeerSurvey* survey) {
    std::lock_guard<std::mutex> lock(survey_mutex_);
    survey_ = survey;
  }

 private:
  explicit Watchdog(double timeout) : timeout_(timeout) {
    std::thread([this] { run(); }).detach();
  }

  [[noreturn]] void run();
  std::optional<PendingCall> expired_call();
  SurveyAnswer respond(const SurveyQuery& query);
  std::string timeout_message(const PendingCall& call);
  std::string peers_report(const PendingCall& call);

  const double timeout_;
  std::mutex mutex_;  // guards the list
  PendingCall* oldest_ = nullptr;
  PendingCall* newest_ = nullptr;
  std::mutex survey_mutex_;  // held while the survey is in use
  PeerSurvey* survey_ = nullptr;
};

void Watchdog::add(PendingCall* node) {
  std::lock_guard<std::mutex> lock(mutex_);
  node->prev = newest_;
  node->next = nullptr;
  (newest_ ? newest_->next : oldest_) = node;
  newest_ = node;
}

void Watchdog::remove(PendingCall* node) {
  std::lock_guard<std::mutex> lock(mutex_);
  (node->prev ? node->prev->next : oldest_) = node->next;
  (node->next ? node->next->prev : newest_) = node->prev;
}

// Nodes are added with the current time, so the oldest is the first to expire, except that a
// device call's deadline is later: every node is looked at.
std::optional<PendingCall> Watchdog::expired_call() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (PendingCall* node = oldest_; node != nullptr; node = node->next) {
    const double limit = timeout_ + (node->call.device == DeviceType::CPU ? 0 : kDeviceGraceSeconds);
    if (seconds_since(node->since) >= limit) return *node;
  }
  return std::nullopt;
}

SurveyAnswer Watchdog::respond(const SurveyQuery& query) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (PendingCall* node = oldest_; node != nullptr; node = node->next) {
    if (node->peer < 0 && node->sequence == query.sequence && node->group->hash == query.group_hash &&
        call_hash(node->call) == query.call_hash)
      return {true, "waiting in the same call"};
  }
  if (oldest_ == nullptr) return {false, "in no collective or point-to-point call (computing, or blocked elsewhere)"};
  return {false, fmt::format("waiting in {} for {:.1f} s", describe_pending(*oldest_), seconds_since(oldest_->since))};
}

void Watchdog::run() {
  for (;;) {
    std::this_thread::sleep_for(kTick);
    std::optional<PendingCall> expired = expired_call();
    if (expired) abort_job(timeout_message(*expired));
    std::lock_guard<std::mutex> lock(survey_mutex_);
    if (survey_) survey_->serve([this](const SurveyQuery& q) { return respond(q); });
  }
}

std::string Watchdog::timeout_message(const PendingCall& call) {
  return fmt::format("[timeout] {} waited {:.1f} s, more than DTENSOR_TIMEOUT ({} s); {}", describe_pending(call),
                     seconds_since(call.since), timeout_, peers_report(call));
}

// Which ranks the call waits for and what each is doing, as their watchdogs answer.
std::string Watchdog::peers_report(const PendingCall& call) {
  const GroupMembers& group = *call.group;
  const int me = error_rank();
  std::vector<int> ranks;  // in the group
  for (int r = 0; r < int(group.world_ranks.size()); ++r) {
    if (group.world_ranks[size_t(r)] != me && (call.peer < 0 || r == call.peer)) ranks.push_back(r);
  }
  std::lock_guard<std::mutex> lock(survey_mutex_);
  if (ranks.empty() || survey_ == nullptr) return "the other ranks could not be asked what they are doing";
  std::vector<int> world;
  for (int r : ranks) world.push_back(group.world_ranks[size_t(r)]);
  const auto answers = survey_->ask(world, {group.hash, call.sequence, call_hash(call.call)}, kSurveyPatience,
                                    [this](const SurveyQuery& q) { return respond(q); });
  std::vector<std::string> missing;
  std::vector<int> arrived;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (answers[i] && answers[i]->arrived) {
      arrived.push_back(ranks[i]);
      continue;
    }
    const std::string doing = answers[i] ? answers[i]->doing : "did not answer: lost, or not running dtensor";
    missing.push_back(fmt::format("{} ({})", rank_text(group, ranks[i]), doing));
  }
  if (call.peer >= 0) return fmt::format("the peer is {}", missing.empty() ? "in the matching call" : missing[0]);
  std::string report = missing.empty() ? "every rank has arrived (the transport itself is stuck)"
                                       : fmt::format("not arrived: {}", fmt::join(missing, "; "));
  if (!arrived.empty()) report += fmt::format("; arrived besides this rank: {}", fmt::join(arrived, ", "));
  return report;
}

std::mutex interned_mutex;
std::deque<GroupMembers> interned_groups;

GroupMembers group_members(std::vector<int> world_ranks, int world_size) {
  Fnv1a h;
  for (int r : world_ranks) h.add(r);
  return {std::move(world_ranks), h.value(), world_size};
}

}  // namespace

double parse_timeout(const char* text) {
  if (text == nullptr || *text == '\0') return kDefaultTimeoutSeconds;
  errno = 0;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  check<ValueError>(errno == 0 && *end == '\0' && std::isfinite(seconds) && seconds >= 0, "DTENSOR_TIMEOUT",
                    "DTENSOR_TIMEOUT is '{}', expected seconds as a number >= 0 (0: no timeout)", text);
  return seconds;
}

double collective_timeout_seconds() {
  static const double seconds = parse_timeout(std::getenv("DTENSOR_TIMEOUT"));
  return seconds;
}

std::string describe_pending(const PendingCall& call) {
  std::string what =
      call.peer >= 0 ? fmt::format("{}({}, {} elements, peer {}) at {}:{}", call.call.op, dtype_name(call.call.dtype),
                                   call.call.elements, call.peer, call.site.file_name(), call.site.line())
                     : describe_call(call.call, call.sequence, call.site);
  return what + fmt::format(" on a communicator of {}", world_ranks_text(*call.group));
}

WaitScope::WaitScope(const PendingCall& call) : node_(call) {
  if (call.group == nullptr || collective_timeout_seconds() <= 0) return;  // a group of one never waits
  node_.since = std::chrono::steady_clock::now();
  Watchdog::instance().add(&node_);
  registered_ = true;
}

WaitScope::~WaitScope() {
  if (registered_) Watchdog::instance().remove(&node_);
}

namespace {

// An async call's Work whose wait() is a watched wait of its own.
class WatchedWork final : public WorkImpl {
 public:
  WatchedWork(Work inner, const PendingCall& call) : inner_(std::move(inner)), call_(call) {}
  bool test() override { return inner_.test(); }
  void wait() override {
    WaitScope scope(call_);
    inner_.wait();
  }

 private:
  Work inner_;
  PendingCall call_;
};

}  // namespace

Work WaitScope::watch_later(Work work, bool async) const {
  if (!async || !registered_) return work;
  return Work(std::make_shared<WatchedWork>(std::move(work), node_));
}

const GroupMembers& intern_group(std::vector<int> world_ranks, int world_size) {
  GroupMembers group = group_members(std::move(world_ranks), world_size);
  std::lock_guard<std::mutex> lock(interned_mutex);
  for (const GroupMembers& known : interned_groups) {
    if (known.world_ranks == group.world_ranks && known.world_size == group.world_size) return known;
  }
  return interned_groups.emplace_back(std::move(group));
}

void set_peer_survey(PeerSurvey* survey) {
  if (collective_timeout_seconds() > 0) Watchdog::instance().set_survey(survey);
}

}  // namespace dtensor::detail
