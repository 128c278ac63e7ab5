// Named tensors, as checkpoints hold them: what the file readers return and the model is built
// from. Its own header so the model needs no file-format code to name the type.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <unordered_map>

namespace icae {

using TensorMap = std::unordered_map<std::string, at::Tensor>;

}  // namespace icae
