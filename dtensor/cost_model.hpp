// Time estimates for the collectives a redistribute can use: latency + moved bytes / bandwidth.
//
// Bandwidths are bus bandwidths in the nccl-tests sense (bytes each rank moves per second after
// the collective's (k-1)/k or 2(k-1)/k factor), so one number per collective covers every group
// size. The defaults are `make bench-collectives` medians on the development machine (2 ranks,
// f32): latency from the 64 KiB row, bus bandwidth from the 64 MiB row. `CostModel::from_file`
// reads a JSON file with the same fields ({"all_gather": {"latency_us": .., "busbw_gbps": ..}, ...,
// "memory_gbps": ..}) to use another machine's numbers; DTENSOR_COST_MODEL names that file.
#pragma once

#include "collectives/communicator.hpp"

#include <string>

namespace dtensor {

struct CollectiveCost {
  double latency_us = 0;
  double busbw_gbps = 1;  // GB/s = 1e9 bytes/s
};

struct CostModel {
  CollectiveCost all_gather{8.6, 4.1};
  CollectiveCost all_reduce{20.8, 3.0};
  CollectiveCost reduce_scatter{8.3, 2.7};
  CollectiveCost all_to_all{10.1, 3.9};
  double memory_gbps = 8.0;  // local copies (packing, zero-filling): a 64 MiB memcpy took ~8 ms

  // Estimated microseconds for one collective of `kind` over `group` ranks; `bytes` follows
  // the Communicator counters' convention (output of all_gather, input of reduce_scatter, ...).
  double collective_us(CollectiveKind kind, int64_t bytes, int64_t group) const;
  double copy_us(int64_t bytes) const { return double(bytes) / (memory_gbps * 1e3); }

  static CostModel from_file(const std::string& path);
  // The model in use: from the file named by DTENSOR_COST_MODEL if set, else the defaults.
  static const CostModel& current();
};

}  // namespace dtensor
