// The graph nodes of DTensor's own methods (dtensor/dtensor.cpp). A method runs its data movement
// untracked and, when its input carries autograd state, hands the result here; each function
// returns `out` unchanged unless the input requires a gradient and grad mode is on. The free
// functions autograd::redistribute / from_local / to_local / full_tensor are the methods.
#pragma once

#include "dtensor/dtensor.hpp"

namespace dtensor::autograd {

// Backward: the gradient redistributed back to source's placements, a Partial read as Replicate.
DTensor record_redistribute(const DTensor& source, DTensor out);
// Backward: the same, then this rank's block.
DTensor record_from_local(const Tensor& local, DTensor out);
// Backward: the local gradient wrapped with source's mesh and global shape, and with
// `grad_placements` (source's placements when empty).
Tensor record_to_local(const DTensor& source, Tensor out, const Placements& grad_placements = {});

}  // namespace dtensor::autograd
