// Hand-written backward functions (torch::autograd::Node) made and wired the one way this
// project does it: the node owns what its backward needs, its edges lead to the inputs that
// want gradients, and the output records it as its history.
#pragma once
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <memory>
#include <vector>

namespace icae {

template <typename NodeT>
std::shared_ptr<NodeT> make_backward_node() {
  return std::shared_ptr<NodeT>(new NodeT(), torch::autograd::deleteNode);
}

// output's gradient flows through `node` to `inputs` (in the order node->apply returns them).
inline void attach_backward(const std::shared_ptr<torch::autograd::Node>& node, const std::vector<at::Tensor>& inputs,
                            at::Tensor& output) {
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  torch::autograd::set_history(output, node);
}

}  // namespace icae
