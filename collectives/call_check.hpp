// Collective fingerprints (DTENSOR_DEBUG=collectives): before each collective the ranks of the
// group exchange what they are about to call, with one small all_gather, and a mismatch becomes
// the same CommError on every rank naming each side's call and call site, instead of a hang or a
// silently wrong result (torch's TORCH_DISTRIBUTED_DEBUG=DETAIL). Off, it costs one test of a
// flag read once; mismatched collectives are then undefined, as in MPI.
#pragma once

#include "collectives/communicator.hpp"
#include "collectives/reduce_op.hpp"

#include <cstdint>
#include <source_location>
#include <span>
#include <string>

namespace dtensor::detail {

// What this rank is about to run. Fields that legitimately differ between ranks (the blocks of
// all_to_all_v, a non-root's unused buffer) are left at their defaults.
struct CollectiveCall {
  const char* op = "";  // the public operation, "all_gather_v"
  DType dtype = DType::U8;
  int64_t elements = -1;                 // -1: not compared
  std::span<const int64_t> counts = {};  // per-rank counts the caller passed (the same everywhere)
  int root = -1;
  int reduce = -1;  // a ReduceOp, -1 for none
  DeviceType device = DeviceType::CPU;
};

// Whether DTENSOR_DEBUG names "collectives" (read once per process), or what
// set_collective_checks said last.
bool collective_checks_enabled();
// Turns the checks on or off from here on. Every rank of a group must do the same at the same
// point of its program (bench_dispatch measures both in one run).
void set_collective_checks(bool on);

// "all_reduce(f32, 64 elements, sum) at file.cpp:12 (call 7 of the group)", as errors name a call.
std::string describe_call(const CollectiveCall& call, uint64_t sequence, const std::source_location& site);

// Exchanges `call` (the group's call number `sequence`, made at `site`) over `backend` and raises
// the same CommError on every rank when the ranks disagree. Collective over the group.
void check_same_collective(CommBackend& backend, uint64_t sequence, const CollectiveCall& call,
                           const std::source_location& site);

}  // namespace dtensor::detail
