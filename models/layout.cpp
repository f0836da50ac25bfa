#include "models/layout.hpp"

#include "dtensor/ops.hpp"
#include "nn/strategy.hpp"
#include "tensor/ops.hpp"

namespace dtensor::models {

Tensor whole(const nn::Value& x) { return nn::replicated_plain(x).tensor("models::whole"); }

nn::Value add_residual(const nn::Value& residual, const nn::Value& update) {
  if (!residual.is_distributed()) return add(residual.tensor(), whole(update));
  const DTensor& r = residual.dtensor();
  const DTensor u = update.is_distributed()
                        ? update.dtensor()
                        : DTensor::from_local(update.tensor("residual update"), r.mesh(),
                                              Placements(size_t(r.mesh().ndim()), Replicate()), r.shape());
  return add(r, u.redistribute(r.placements()));
}

}  // namespace dtensor::models
