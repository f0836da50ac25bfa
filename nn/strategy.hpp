// Parallel strategies and their registry.
//
// A strategy is a thin policy over the DTensor API for one module on a 1-D tensor-parallel mesh:
// (a) partition: this rank's part of a parameter, read from the full checkpoint tensor box by box
//     (never the whole tensor unless the part is the whole);
// (b) prepare_input: turn the module's input into the layout its forward expects;
// (c) prepare_output: turn the forward's result into the layout the next module expects.
// Built-in strategies (nn/strategies.cpp) follow the table of docs/design.md section 5; users add
// their own under a new name:
//
//   StrategyRegistry::global().add("my_colwise", std::make_shared<MyColwise>());
//   plan.rules.push_back({"layers.*.mlp.up_proj", "my_colwise"});
#pragma once

#include "io/tensor_source.hpp"
#include "nn/module.hpp"

#include <functional>
#include <map>

namespace dtensor::nn {

// Where a parameter's plain value on this rank lies in the full parameter (Strategy::plain_share):
// rows [local, local + count) along `dim` of the value are rows [global, global + count) of the
// full tensor. Only the runs this rank is the first to hold are listed (a KV head that several
// ranks hold belongs to the lowest), so a sum over ranks meets every element once.
struct PlainRun {
  int64_t global = 0, local = 0, count = 0;
};
struct PlainShare {
  bool whole = true;  // the value is the full tensor, which belongs to the mesh's first rank
  int64_t dim = 0;
  std::vector<PlainRun> runs;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  // This rank's value of `module`'s parameter `param` (full shape source.shape) on `mesh`.
  virtual Value partition(const Module& module, const std::string& param, const io::TensorSource& source,
                          const DeviceMesh& mesh) const = 0;
  // Refuses a plan this strategy cannot carry out on `module` (named `name`, its dotted path) on
  // `mesh` with a typed error naming the module; apply_tp_plan asks every strategy of a plan
  // before it loads anything. The default accepts everything.
  virtual void check_plan(const Module& /*module*/, const std::string& /*name*/, const DeviceMesh& /*mesh*/) const {}
  virtual Value prepare_input(const Value& x, const Module& /*module*/, const DeviceMesh& /*mesh*/) const { return x; }
  virtual Value prepare_output(const Value& y, const Module& /*module*/, const DeviceMesh& /*mesh*/) const { return y; }
  // Whether prepare_output leaves this rank's block of the output's last dim (a plain tensor)
  // rather than the whole output: colwise, local_colwise, packed_colwise. A parent whose
  // computation follows that split (attention on this rank's heads) asks it when the plan is applied.
  virtual bool leaves_output_split() const { return false; }
  // Where this rank's value of `param`, when partition made it a plain tensor, lies in the full
  // parameter: what a gradient norm must count once and what gathering the whole weight must
  // place (a DTensor says it with its placements). The default: the value is the whole tensor.
  virtual PlainShare plain_share(const Module& /*module*/, const std::string& /*param*/,
                                 const DeviceMesh& /*mesh*/) const {
    return {};
  }
  // Whether this rank's value of `param` takes a gradient (Module::requires_grad_ asks). False for
  // a value held only to keep shapes alike: the zero bias of the ranks after the first where only
  // the first adds it to the partial sums; its gradient there would be the whole bias's, and an
  // optimizer applying it would make the bias count once per rank.
  virtual bool trains_here(const Module& /*module*/, const std::string& /*param*/, const DeviceMesh& /*mesh*/) const {
    return true;
  }
};

class StrategyRegistry {
 public:
  // The registry tp_plans resolve names in; it starts with the built-in strategies.
  static StrategyRegistry& global();

  // ValueError when the name is taken (replacing a strategy silently would change plans).
  void add(const std::string& name, std::shared_ptr<const Strategy> strategy);
  // ValueError naming the strategy and listing the known names when there is none.
  std::shared_ptr<const Strategy> get(const std::string& name) const;
  bool contains(const std::string& name) const { return strategies_.count(name) != 0; }
  std::vector<std::string> names() const;

 private:
  std::map<std::string, std::shared_ptr<const Strategy>> strategies_;
};

// Partition helpers for strategies -------------------------------------------------------------

// The DTensor holding this rank's block of the source under `placements` (one box read).
DTensor read_sharded(const io::TensorSource& source, const DeviceMesh& mesh, const Placements& placements);
// This rank's block under `placements` as a plain tensor (for the local_* strategies).
Tensor read_local_block(const io::TensorSource& source, const DeviceMesh& mesh, const Placements& placements);
// The whole tensor on the mesh's first rank, zeros elsewhere: a bias added to partial sums, so
// that it is added once.
Tensor read_on_first_rank(const io::TensorSource& source, const DeviceMesh& mesh);
// Whether this rank is the one read_on_first_rank gives the tensor to.
bool is_first_rank(const DeviceMesh& mesh);
// The plain share of the parameter `name` (dotted, under `model`) as its module's strategy gives it,
// the whole tensor without one; ValueError naming the parameter when no module holds it.
PlainShare plain_share_of(const Module& model, const std::string& name);
// The mesh the plan split `model` over (that of its first module with a strategy), or null.
const DeviceMesh* plan_mesh(Module& model);
// The plain share of read_local_block(source, mesh, {Shard(dim)}) on a 1-D mesh.
PlainShare block_share(const Shape& full, int64_t dim, const DeviceMesh& mesh);

// Layout helpers for hooks ----------------------------------------------------------------------

// The input as a plain tensor every rank holds whole (a plain input is taken as replicated), for
// computing the same on every rank: the gradient is taken as the same on every rank.
Value replicated_plain(const Value& x);
// The same for a module whose ranks compute different parts from it (colwise by heads, packed,
// experts): its gradient is the sum of the ranks' (one all-reduce in backward, Megatron's f;
// nothing when the input needs no gradient).
Value replicated_for_split(const Value& x, const DeviceMesh& mesh);
// This rank's copy of a replicated DTensor, used differently on each rank: its gradient comes back
// P(sum) (autograd::to_local with Partial grad placements).
Tensor diverging_local(const DTensor& replicated);
// This rank's plain partial sum -> the full sum on every rank (one all-reduce).
Tensor all_reduce_partial(const Tensor& partial, const DeviceMesh& mesh);

}  // namespace dtensor::nn
