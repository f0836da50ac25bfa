// A program's set-up phase (reading config.json, the plan, the checkpoint, the inputs) run on every
// rank, ending the job cleanly when it fails:
//
//   std::optional<Prepared> p = tools::report_on_every_rank(world, [&] { return prepare(options, mesh); });
//   if (!p) return 1;
//
// The set-up must fail at the same point on every rank that fails (its checks read the same files
// and flags everywhere, or are agreed over the group, as from_local's), so no rank is left waiting
// in a collective. Then the lowest failing rank prints "error: <message>" and every rank gets
// nullopt: one message, a non-zero exit on every rank, and no MPI abort.
#pragma once

#include "collectives/communicator.hpp"

#include <fmt/format.h>

#include <exception>
#include <optional>
#include <string>

namespace dtensor::tools {

template <typename F>
auto report_on_every_rank(Communicator& world, F&& setup) -> std::optional<decltype(setup())> {
  std::optional<decltype(setup())> result;
  std::string error;
  try {
    result = setup();
  } catch (const std::exception& e) {
    error = e.what();
  }
  Tensor first_failing = Tensor::full({1}, error.empty() ? world.size() : world.rank(), DType::I32);
  world.all_reduce(first_failing, ReduceOp::Min);
  if (first_failing.item<int32_t>() == world.size()) return result;
  if (first_failing.item<int32_t>() == world.rank()) fmt::print(stderr, "error: {}\n", error);
  return std::nullopt;
}

}  // namespace dtensor::tools
