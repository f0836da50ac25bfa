#include "tensor/error.hpp"

#include <atomic>

namespace dtensor {

namespace {
std::atomic<int> g_rank{-1};

std::string with_rank(const std::string& message) {
  int rank = g_rank.load();
  return rank < 0 ? message + " [rank ?]" : fmt::format("{} [rank {}]", message, rank);
}
}  // namespace

Error::Error(const std::string& message) : std::runtime_error(with_rank(message)) {}

void set_error_rank(int rank) { g_rank.store(rank); }
int error_rank() { return g_rank.load(); }

}  // namespace dtensor
