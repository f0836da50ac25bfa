#include "collectives/mpi/mpi_survey.hpp"

#include "collectives/mpi/mpi_support.hpp"

#include <cstring>
#include <list>
#include <thread>

namespace dtensor::detail {

namespace {

constexpr int kQueryTag = 1;
constexpr int kAnswerTag = 2;
constexpr auto kPollInterval = std::chrono::milliseconds(10);

struct WireQuery {
  uint64_t group_hash;
  uint64_t sequence;
  uint64_t call_hash;
};

struct WireAnswer {
  int32_t arrived;
  char doing[1020];  // NUL-terminated
};

// Every MPI call here runs on the watchdog thread; a failure (a peer that died, say) only means
// an answer that does not come, so return codes are not raised.
class MpiSurvey final : public PeerSurvey {
 public:
  MpiSurvey() {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  }
  ~MpiSurvey() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized == 0) MPI_Comm_free(&comm_);
  }
  MpiSurvey(const MpiSurvey&) = delete;
  MpiSurvey& operator=(const MpiSurvey&) = delete;

  void serve(const SurveyResponder& respond) override;
  std::vector<std::optional<SurveyAnswer>> ask(std::span<const int> ranks, const SurveyQuery& query,
                                               std::chrono::milliseconds patience,
                                               const SurveyResponder& respond) override;

 private:
  template <typename T>
  void post(const T& message, int rank, int tag);
  void forget_sent();

  MPI_Comm comm_ = MPI_COMM_NULL;
  // Messages posted and not yet known to be delivered, with the buffers MPI reads.
  std::list<std::pair<MPI_Request, WireAnswer>> sent_answers_;
  std::list<std::pair<MPI_Request, WireQuery>> sent_queries_;
};

template <typename T>
void MpiSurvey::post(const T& message, int rank, int tag) {
  auto& sent = [&]() -> auto& {
    if constexpr (std::is_same_v<T, WireAnswer>)
      return sent_answers_;
    else
      return sent_queries_;
  }
  ();
  auto& [request, buffer] = sent.emplace_back(MPI_REQUEST_NULL, message);
  MPI_Isend(&buffer, int(sizeof(T)), MPI_BYTE, rank, tag, comm_, &request);
}

void MpiSurvey::forget_sent() {
  auto reap = [](auto& sent) {
    sent.remove_if([](auto& entry) {
      int done = 0;
      return entry.first == MPI_REQUEST_NULL ||
             (MPI_Test(&entry.first, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done);
    });
  };
  reap(sent_answers_);
  reap(sent_queries_);
}

void MpiSurvey::serve(const SurveyResponder& respond) {
  for (;;) {
    int pending = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, comm_, &pending, &status) != MPI_SUCCESS || !pending) break;
    WireQuery query{};
    MPI_Recv(&query, int(sizeof(query)), MPI_BYTE, status.MPI_SOURCE, kQueryTag, comm_, MPI_STATUS_IGNORE);
    const SurveyAnswer answer = respond({query.group_hash, query.sequence, query.call_hash});
    WireAnswer wire{};
    wire.arrived = answer.arrived ? 1 : 0;
    std::strncpy(wire.doing, answer.doing.c_str(), sizeof(wire.doing) - 1);
    post(wire, status.MPI_SOURCE, kAnswerTag);
  }
  forget_sent();
}

std::vector<std::optional<SurveyAnswer>> MpiSurvey::ask(std::span<const int> ranks, const SurveyQuery& query,
                                                        std::chrono::milliseconds patience,
                                                        const SurveyResponder& respond) {
  for (int rank : ranks) post(WireQuery{query.group_hash, query.sequence, query.call_hash}, rank, kQueryTag);
  std::vector<std::optional<SurveyAnswer>> answers(ranks.size());
  size_t answered = 0;
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (answered < ranks.size() && std::chrono::steady_clock::now() < deadline) {
    serve(respond);  // the others are asking too
    int pending = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kAnswerTag, comm_, &pending, &status) != MPI_SUCCESS || !pending) {
      std::this_thread::sleep_for(kPollInterval);
      continue;
    }
    WireAnswer wire{};
    MPI_Recv(&wire, int(sizeof(wire)), MPI_BYTE, status.MPI_SOURCE, kAnswerTag, comm_, MPI_STATUS_IGNORE);
    wire.doing[sizeof(wire.doing) - 1] = '\0';
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (ranks[i] != status.MPI_SOURCE || answers[i]) continue;
      answers[i] = SurveyAnswer{wire.arrived != 0, wire.doing};
      ++answered;
    }
  }
  return answers;
}

// Unregisters before the survey (and its communicator) goes.
struct Registration {
  std::unique_ptr<MpiSurvey> survey = std::make_unique<MpiSurvey>();
  Registration() { set_peer_survey(survey.get()); }
  ~Registration() { set_peer_survey(nullptr); }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
};

}  // namespace

std::shared_ptr<void> start_mpi_survey() {
  int provided = 0;
  if (collective_timeout_seconds() <= 0 || MPI_Query_thread(&provided) != MPI_SUCCESS ||
      provided != MPI_THREAD_MULTIPLE) {
    return nullptr;
  }
  return std::make_shared<Registration>();
}

}  // namespace dtensor::detail
