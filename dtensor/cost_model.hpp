// Time estimates for the collectives a redistribute can use: latency + moved bytes / bandwidth.
//
// Bandwidths are bus bandwidths in the nccl-tests sense (bytes each rank moves per second after
// the collective's (k-1)/k or 2(k-1)/k factor), so one number per collective covers every group
// size. The defaults were measured on the development machine with `make bench-collectives`;
// `CostModel::from_file` reads a JSON file with the same fields to use another machine's numbers.
#pragma once

#include "collectives/communicator.hpp"

#include <string>

namespace dtensor {

struct CollectiveCost {
  double latency_us = 0;
  double busbw_gbps = 1;  // GB/s = 1e9 bytes/s
};

struct CostModel {
  CollectiveCost all_gather{20, 5.0};
  CollectiveCost all_reduce{30, 3.0};
  CollectiveCost reduce_scatter{25, 3.0};
  CollectiveCost all_to_all{20, 5.0};
  double memory_gbps = 8.0;  // local copies (packing, zero-filling)

  // Estimated microseconds for one collective of `kind` over `group` ranks; `bytes` follows
  // the Communicator counters' convention (output of all_gather, input of reduce_scatter, ...).
  double collective_us(CollectiveKind kind, int64_t bytes, int64_t group) const;
  double copy_us(int64_t bytes) const { return double(bytes) / (memory_gbps * 1e3); }

  static CostModel from_file(const std::string& path);
  // The model in use: from the file named by DTENSOR_COST_MODEL if set, else the defaults.
  static const CostModel& current();
};

}  // namespace dtensor
