// Gradient clipping by the global 2-norm, as torch.nn.utils.clip_grad_norm_ (docs/design.md
// section 14).
#pragma once

#include "nn/module.hpp"
#include "optim/optimizer.hpp"

namespace dtensor::optim {

// The 2-norm of all the parameters' gradients together, each element of each logical gradient
// counted once, computed in f64; then, when coef = max_norm / (norm + 1e-6) is below 1, every
// gradient is multiplied by coef in place. Returns the norm before clipping, the same on every
// rank. Parameters without a gradient are skipped; one given twice (tied weights) counts once.
//
// A DTensor gradient's sum of squares counts only on the ranks whose mesh coordinate is 0 on every
// mesh dim where it is Replicate, so a replicated parameter counts once and a sharded one block by
// block; plain tensors count as replicated over the mesh. One all_reduce of one f64 then covers
// every parameter (one per mesh dim instead on a multi-dim mesh that is not the whole world, which
// has no single communicator). Without a DTensor parameter nothing is communicated.
//
// Collective over the mesh. ValueError naming max_norm unless positive; ValueError naming the
// parameter for a Partial gradient (a leaf's is reduced by the engine, so this is misuse) or a
// parameter on another mesh than the first DTensor's.
double clip_grad_norm(const NamedParameters& params, double max_norm);

// The same for the parameters of `model` (named as model.named_parameters() names them, or copies
// laid out as them: bf16 training's f32 masters) split by a tensor-parallel plan: a plain tensor
// counts the rows its strategy says this rank is the first to hold (nn::Strategy::plain_share:
// local blocks, head-granular splits, packed chunks), and without a DTensor parameter the sum runs
// over the plan's mesh.
double clip_grad_norm(nn::Module& model, const NamedParameters& params, double max_norm);

}  // namespace dtensor::optim
