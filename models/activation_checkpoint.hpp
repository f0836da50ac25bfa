// Activation checkpointing (torch.utils.checkpoint, the reentrant form), for decoder layers.
//
//   nn::Value y = checkpointed(x, layer, [&](const nn::Value& in) { return layer_body(in); });
//
// When a gradient is wanted (grad mode on, and x or a parameter of `module` requires one), `body`
// runs once without recording and its output becomes the output of one graph node that keeps only
// x. In the backward that node runs `body` again on x with recording on, backpropagates the
// arriving gradient through the graph it just recorded (the parameters of `module` accumulate
// their gradients there, as without checkpointing) and passes x's gradient on. Both forwards run
// the same kernels on the same values, so the gradients equal those of an uncheckpointed forward
// bit for bit; the price is one more forward of the body. The modules of `module`'s subtree that
// draw random numbers (nn::Dropout) are rewound for the recomputation (Module::random_calls), so
// it draws exactly what the first forward drew, and set forward again after it. Otherwise `body`
// simply runs. `body` must own (capture by value) everything it reads besides x and the modules:
// it runs again in the backward, after the caller has returned.
#pragma once

#include "nn/module.hpp"

#include <functional>

namespace dtensor::models {

using CheckpointBody = std::function<nn::Value(const nn::Value&)>;

nn::Value checkpointed(const nn::Value& x, nn::Module& module, CheckpointBody body);

// Whether a forward of `module` on x would record: grad mode on and x or a loaded parameter of
// the subtree requires a gradient.
bool wants_gradient(const nn::Value& x, nn::Module& module);

}  // namespace dtensor::models
