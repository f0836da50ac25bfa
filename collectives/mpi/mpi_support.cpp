#include "collectives/mpi/mpi_support.hpp"

#include "collectives/runtime.hpp"

#include <climits>
#include <mutex>

namespace dtensor::detail {

namespace {

// One message carries at most this many elements: well inside MPI's int count.
constexpr int64_t kMaxPieceElements = int64_t(1) << 30;

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "unknown MPI error";
  return std::string(text, size_t(length));
}

// MPI_ERR_IN_STATUS means the real error codes are in the statuses.
void check_completion(int rc, std::span<const MPI_Status> statuses, const char* call) {
  if (rc != MPI_ERR_IN_STATUS) return mpi_check(rc, call);
  for (const MPI_Status& status : statuses) mpi_check(status.MPI_ERROR, call);
}

}  // namespace

void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  fail<CommError>(call, "{} (MPI error {})", mpi_error_string(rc), rc);
}

MPI_Datatype mpi_datatype(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::BF16:
    case DType::F16:
      return MPI_UINT16_T;
    case DType::I32:
      return MPI_INT32_T;
    case DType::I64:
      return MPI_INT64_T;
    case DType::U8:
      return MPI_UINT8_T;
    case DType::I8:
      return MPI_INT8_T;
  }
  fail<DTypeError>("mpi_datatype", "unknown dtype code {}", int(dtype));
}

MPI_Op mpi_reduce_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg:
      return MPI_SUM;
    case ReduceOp::Max:
      return MPI_MAX;
    case ReduceOp::Min:
      return MPI_MIN;
    case ReduceOp::Prod:
      return MPI_PROD;
  }
  fail<ValueError>("mpi_reduce_op", "unknown reduce op code {}", int(op));
}

int mpi_int(int64_t value, const char* op, const char* what) {
  check<CommError>(value <= INT_MAX, op, "{} is {}, more than MPI's int limit {} for this operation", what, value,
                   INT_MAX);
  return int(value);
}

std::vector<int> mpi_ints(std::span<const int64_t> values, const char* op, const char* what) {
  std::vector<int> result(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    check<CommError>(values[i] <= INT_MAX, op, "{}[{}] is {}, more than MPI's int limit {} for this operation", what, i,
                     values[i], INT_MAX);
    result[i] = int(values[i]);
  }
  return result;
}

std::vector<int64_t> displacements(std::span<const int64_t> counts) {
  std::vector<int64_t> result(counts.size());
  int64_t offset = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    result[i] = offset;
    offset += counts[i];
  }
  return result;
}

void for_each_piece(int64_t numel, size_t element_size, const std::function<void(size_t, int)>& fn) {
  int64_t start = 0;
  do {
    const int64_t count = std::min(kMaxPieceElements, numel - start);
    fn(size_t(start) * element_size, int(count));
    start += count;
  } while (start < numel);
}

void mpi_wait_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses) {
  statuses.resize(requests.size());
  int rc = MPI_Waitall(int(requests.size()), requests.data(), statuses.data());
  check_completion(rc, statuses, "MPI_Waitall");
}

bool mpi_test_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses) {
  statuses.resize(requests.size());
  int done = 0;
  int rc = MPI_Testall(int(requests.size()), requests.data(), &done, statuses.data());
  check_completion(rc, statuses, "MPI_Testall");
  return done != 0;
}

bool may_wait_in_destructor(std::vector<Tensor> buffers, std::vector<std::vector<int>> int_arrays) {
  if (std::uncaught_exceptions() == 0) return true;
  static std::mutex mutex;
  // Never released: MPI may still read or write them.
  static std::vector<Tensor> abandoned_buffers;
  static std::vector<std::vector<int>> abandoned_arrays;
  std::lock_guard<std::mutex> lock(mutex);
  abandoned_buffers.insert(abandoned_buffers.end(), buffers.begin(), buffers.end());
  for (std::vector<int>& array : int_arrays) abandoned_arrays.push_back(std::move(array));
  return false;
}

void abort_from_destructor(const std::exception& error) {
  abort_job(fmt::format("an unfinished collective failed while its handle was destroyed: {}", error.what()));
}

RequestWork::RequestWork(std::vector<MPI_Request> requests, std::vector<Tensor> keep_alive,
                         std::vector<std::vector<int>> int_arrays, Finish finish)
    : requests_(std::move(requests)),
      keep_alive_(std::move(keep_alive)),
      int_arrays_(std::move(int_arrays)),
      finish_(std::move(finish)) {}

RequestWork::~RequestWork() {
  if (done_ || error_ || !may_wait_in_destructor(keep_alive_, std::move(int_arrays_))) return;
  try {
    complete(true);
  } catch (const std::exception& e) {
    abort_from_destructor(e);
  }
}

bool RequestWork::complete(bool block) {
  if (error_) std::rethrow_exception(error_);
  if (done_) return true;
  try {
    if (block) {
      mpi_wait_all(requests_, statuses_);
    } else if (!mpi_test_all(requests_, statuses_)) {
      return false;
    }
    done_ = true;
    if (finish_) finish_(statuses_);
  } catch (...) {
    error_ = std::current_exception();
    throw;
  }
  return true;
}

}  // namespace dtensor::detail
