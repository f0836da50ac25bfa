// The reductions collectives and Partial placements understand. Kept apart from
// communicator.hpp so pure layers (placements/) can name them without the communication API.
#pragma once

#include <cstdint>
#include <string_view>

namespace dtensor {

enum class ReduceOp : uint8_t { Sum, Avg, Max, Min, Prod };
std::string_view reduce_op_name(ReduceOp op);  // "sum", "avg", ...

}  // namespace dtensor
