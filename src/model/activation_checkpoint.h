// Activation checkpointing for one layer (training): the forward runs without keeping its
// intermediate activations; the backward reruns it with gradients on (the same dropout masks:
// the random generator's state is replayed) and back-propagates through the rerun.
// libtorch has no C++ checkpoint helper, so this is a hand-made autograd node.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace icae {

// y = body(x), differentiable in x and in `params` (tensors body reads that need gradients).
at::Tensor checkpointed_layer(const at::Tensor& x, const std::vector<at::Tensor>& params, at::Generator* generator,
                              at::Device device, std::function<at::Tensor(const at::Tensor&)> body);

}  // namespace icae
