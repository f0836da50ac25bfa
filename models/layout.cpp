#include "models/layout.hpp"

#include "autograd/ops.hpp"
#include "dtensor/autograd.hpp"
#include "nn/strategy.hpp"

namespace dtensor::models {

Tensor whole(const nn::Value& x) { return nn::replicated_plain(x).tensor("models::whole"); }

nn::Value add_residual(const nn::Value& residual, const nn::Value& update) {
  if (!residual.is_distributed()) return autograd::add(residual.tensor(), whole(update));
  const DTensor& r = residual.dtensor();
  const DTensor u = update.is_distributed()
                        ? update.dtensor()
                        : DTensor::from_local(update.tensor("residual update"), r.mesh(),
                                              Placements(size_t(r.mesh().ndim()), Replicate()), r.shape());
  return autograd::add(r, u.redistribute(r.placements()));
}

}  // namespace dtensor::models
