// How the decoder hands values between modules whose strategies leave different layouts
// (internal to models/).
//
// Under a plain TP plan the residual stream is a plain tensor every rank holds whole; under a
// sequence-parallel plan it is a DTensor split on the sequence dim. Attention and the MLP take
// the whole sequence (gathered once per block), and their outputs come back plain and whole
// (rowwise) or split on the sequence (rowwise_to_sequence).
#pragma once

#include "nn/value.hpp"

namespace dtensor::models {

// The whole tensor as a plain one: a plain value as it is, a DTensor gathered to Replicate.
Tensor whole(const nn::Value& x);

// residual + update in the residual's layout. A plain update beside a DTensor residual is taken
// as the whole value and sliced locally (no communication); a DTensor update beside a plain
// residual is gathered.
nn::Value add_residual(const nn::Value& residual, const nn::Value& update);

}  // namespace dtensor::models
