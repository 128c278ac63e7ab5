#include "activation_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include "icae/util/backward_node.h"

namespace icae {

namespace {

at::Generator resolve_generator(at::Generator* given, at::Device device) {
  if (given) return *given;
  return at::globalContext().defaultGenerator(device);
}

struct CheckpointBackward : torch::autograd::Node {
  std::function<at::Tensor(const at::Tensor&)> body;
  at::Tensor input;                 // x, detached
  std::vector<at::Tensor> params;   // those that require grad, in next-edge order after x
  bool input_needs_grad = false;
  at::Generator generator;
  at::Tensor rng_state;             // generator state before the forward

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    at::Tensor x = input.detach().requires_grad_(input_needs_grad);
    at::Tensor y;
    {
      // Replay the forward's random stream, then put the generator back where it was.
      at::Tensor now = generator.get_state();
      generator.set_state(rng_state);
      at::AutoGradMode grad_on(true);
      y = body(x);
      generator.set_state(now);
    }
    std::vector<at::Tensor> wrt;
    if (input_needs_grad) wrt.push_back(x);
    for (const auto& p : params) wrt.push_back(p);
    auto g = torch::autograd::grad({y}, wrt, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    return g;
  }
};

}  // namespace

at::Tensor checkpointed_layer(const at::Tensor& x, const std::vector<at::Tensor>& params, at::Generator* gen,
                              at::Device device, std::function<at::Tensor(const at::Tensor&)> body) {
  std::vector<at::Tensor> trainable;
  for (const auto& p : params)
    if (p.requires_grad()) trainable.push_back(p);
  const bool x_grad = x.requires_grad();
  if (!x_grad && trainable.empty()) return body(x);
  at::Generator g = resolve_generator(gen, device);
  at::Tensor state = g.get_state();
  at::Tensor y;
  {
    at::NoGradGuard no_grad;
    y = body(x);
  }
  auto node = make_backward_node<CheckpointBackward>();
  node->body = std::move(body);
  node->input = x.detach();
  node->params = trainable;
  node->input_needs_grad = x_grad;
  node->generator = g;
  node->rng_state = state;
  std::vector<at::Tensor> edges_of;
  if (x_grad) edges_of.push_back(x);
  for (const auto& p : trainable) edges_of.push_back(p);
  attach_backward(node, edges_of, y);
  return y;
}

}  // namespace icae
