#include "models/activation_checkpoint.hpp"

#include "autograd/node.hpp"
#include "dtensor/autograd/node.hpp"

namespace dtensor::models {

namespace ag = dtensor::autograd;

namespace {

bool requires_grad(const nn::Value& v) {
  if (!v.defined()) return false;
  return v.is_distributed() ? ag::requires_grad(v.dtensor()) : ag::requires_grad(v.tensor());
}

ag::Edge gradient_edge(const nn::Value& v) {
  return v.is_distributed() ? ag::gradient_edge(v.dtensor()) : ag::gradient_edge(v.tensor());
}

nn::Value detached(const nn::Value& v) {
  return v.is_distributed() ? nn::Value(ag::detach(v.dtensor())) : nn::Value(ag::detach(v.tensor()));
}

// `v` (detached) as output 0 of `node`.
nn::Value output_of(const std::shared_ptr<ag::Node>& node, const nn::Value& v) {
  if (v.is_distributed()) {
    DTensor out = ag::detach(v.dtensor());
    ag::attach(node, out, 0);
    return out;
  }
  Tensor out = ag::detach(v.tensor());
  ag::attach(node, out, 0);
  return out;
}

// Grad mode on for the recomputation (the engine runs backwards with it off), restored after.
class EnableGrad {
 public:
  EnableGrad() : previous_(ag::grad_mode_enabled()) { ag::set_grad_mode_enabled(true); }
  ~EnableGrad() { ag::set_grad_mode_enabled(previous_); }
  EnableGrad(const EnableGrad&) = delete;
  EnableGrad& operator=(const EnableGrad&) = delete;

 private:
  bool previous_;
};

// The recomputed input's producer: it keeps the gradient that reaches it, whatever its kind
// (Tensor or DTensor), as the engine summed it over every use of the input.
class CaptureGradient final : public ag::Node {
 public:
  CaptureGradient() : Node({}, 1) {}
  const char* name() const override { return "checkpoint input"; }
  ag::Gradients apply(const ag::Gradients& output_grads) override {
    gradient_ = output_grads[0];
    return {};
  }
  const ag::Gradient& gradient() const { return gradient_; }

 private:
  ag::Gradient gradient_;
};

// The random draw counts of every module of a subtree, in named_modules order.
class RandomCalls {
 public:
  explicit RandomCalls(nn::Module& root) : root_(&root), modules_(root.named_modules()) {
    for (const auto& [name, module] : modules_) calls_.push_back(module->random_calls());
  }
  nn::Module& root() const { return *root_; }
  void restore() const {
    for (size_t i = 0; i < modules_.size(); ++i) modules_[i].second->set_random_calls(calls_[i]);
  }

 private:
  nn::Module* root_;
  std::vector<std::pair<std::string, nn::Module*>> modules_;
  std::vector<uint64_t> calls_;
};

class CheckpointNode final : public ag::Node {
 public:
  CheckpointNode(const nn::Value& input, CheckpointBody body, RandomCalls before)
      : Node({gradient_edge(input)}, 1), input_(detached(input)), body_(std::move(body)), before_(std::move(before)) {}

  const char* name() const override { return "checkpoint"; }

  ag::Gradients apply(const ag::Gradients& output_grads) override {
    if (!output_grads[0].defined()) return {ag::Gradient()};
    check<AutogradError>(input_.defined(), "backward",
                         "checkpoint's saved input was freed by an earlier backward through this graph; pass "
                         "retain_graph = true to that backward to run backward through it again");
    auto capture = std::make_shared<CaptureGradient>();
    // The recomputed input sends its gradient to `capture` only where the caller's input wants one.
    const nn::Value x = next_edges()[0].node ? output_of(capture, input_) : input_;
    nn::Value y;
    {
      // The recomputation draws what the first forward drew; the counts reached since are kept.
      const RandomCalls since(before_.root());
      before_.restore();
      EnableGrad recording;
      y = body_(x);
      since.restore();
    }
    const ag::Edge root = gradient_edge(y);
    if (root.node) ag::run_backward(root, output_grads[0], /*retain_graph=*/false);
    return {capture->gradient()};
  }

  void release_saved() override { input_ = nn::Value(); }

 private:
  nn::Value input_;  // detached: the node keeps the values, not the graph that made them
  CheckpointBody body_;
  RandomCalls before_;  // the draw counts the first forward started from
};

}  // namespace

bool wants_gradient(const nn::Value& x, nn::Module& module) {
  if (!ag::grad_mode_enabled()) return false;
  if (requires_grad(x)) return true;
  for (const auto& [name, parameter] : module.named_parameters()) {
    if (requires_grad(*parameter)) return true;
  }
  return false;
}

nn::Value checkpointed(const nn::Value& x, nn::Module& module, CheckpointBody body) {
  if (!wants_gradient(x, module)) return body(x);
  RandomCalls before(module);
  nn::Value y;
  {
    ag::NoGradGuard not_recorded;
    y = body(x);
  }
  return output_of(std::make_shared<CheckpointNode>(x, std::move(body), std::move(before)), y);
}

}  // namespace dtensor::models
