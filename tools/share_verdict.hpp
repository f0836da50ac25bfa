// The verdict of a check that rank 0 alone ran (generate --check, train --check), for every rank:
//
//   const bool ok = tools::share_verdict(world, world.rank() == 0 && check_passed);
#pragma once

#include "collectives/communicator.hpp"

#include <chrono>
#include <thread>

namespace dtensor::tools {

// Every rank gets rank 0's verdict. The others wait without spinning, so on an oversubscribed
// machine rank 0's check runs at full speed.
inline bool share_verdict(Communicator& world, bool ok_on_root) {
  Tensor verdict = Tensor::full({1}, ok_on_root ? 1.0 : 0.0, DType::I32);
  Work work = world.broadcast(verdict, 0, CommMode::Async);
  while (!work.test()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return verdict.item<int32_t>() == 1;
}

}  // namespace dtensor::tools
